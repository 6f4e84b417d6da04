import { TenantryError } from '../errors/catalog.ts';

/** The countable limits of a tenant (`TenantRecord.limits`); `null` means unlimited. */
export interface QuotaLimits {
  readonly maxUsers: number | null;
  readonly maxStorageMb: number | null;
}

/** A quota a tenant's plan can cap. */
export type QuotaName = keyof QuotaLimits;

/** What the quota helpers read of a tenant: its `limits` (a `TenantRecord` fits). */
export interface QuotaHolder {
  readonly limits: QuotaLimits;
}

function count(value: number, what: string): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new TenantryError('USAGE_ERROR', `${what} must be a non-negative number`);
  }
  return value;
}

/**
 * How much of a quota is left given what the tenant already `used`: never below 0, and
 * `null` when the quota is unlimited.
 *
 * @example
 * ```ts
 * remainingQuota(tenant, 'maxUsers', await countUsers()); // e.g. 3, or null
 * ```
 */
export function remainingQuota(tenant: QuotaHolder, name: QuotaName, used: number): number | null {
  const limit = tenant.limits[name];
  if (limit === null || limit === undefined) return null;
  return Math.max(0, limit - count(used, 'used'));
}

/**
 * Throws `QUOTA_EXCEEDED` (409) when adding `adding` to `used` would go past the quota; an
 * unlimited (`null`) quota always passes. This is arithmetic only: count in the transaction
 * that adds, under a lock that serialises adders (e.g. the tenant's row `FOR UPDATE`), or two
 * concurrent requests can both see one unit left and both take it.
 *
 * @example
 * ```ts
 * requireQuota(tenant, 'maxUsers', currentUsers, 1);
 * await tx.insertInto('users').values(user).execute();
 * ```
 */
export function requireQuota(tenant: QuotaHolder, name: QuotaName, used: number, adding = 1): void {
  const limit = tenant.limits[name];
  if (limit === null || limit === undefined) return;
  const total = count(used, 'used') + count(adding, 'adding');
  if (total > limit) {
    throw new TenantryError('QUOTA_EXCEEDED', name, { details: { quota: name, limit, used } });
  }
}
