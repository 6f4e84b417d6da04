import type { PoolClient } from 'pg';
import type { TenantRecord } from '../control/tenant-record.ts';
import { TenantryError } from '../errors/catalog.ts';

/** Refuses to move a tenant that is on its way out (`INVALID_TENANT_STATE`). */
export function assertMovable(tenant: TenantRecord): void {
  if (tenant.status === 'deleted' || tenant.status === 'offboarding') {
    throw new TenantryError('INVALID_TENANT_STATE', `cannot move a tenant that is ${tenant.status}`);
  }
}

/**
 * Runs `fn` holding the tenant's move lock, a session advisory lock on `lock` (an admin
 * connection of the main database), so that one move of a tenant runs at a time, whichever
 * kind (between tiers, or a Citus shard move): a second one is refused with
 * `INVALID_TENANT_STATE` at once instead of waiting.
 *
 * @example
 * ```ts
 * return withMoveLock(lock, tenant.id, () => this.#move(tenant, lock));
 * ```
 */
export async function withMoveLock<T>(lock: PoolClient, tenantId: string, fn: () => Promise<T>): Promise<T> {
  const key = `tenantry:move:${tenantId}`;
  const { rows } = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [key]);
  if (!rows[0]?.ok) throw new TenantryError('INVALID_TENANT_STATE', 'a move of this tenant is already running');
  try {
    return await fn();
  } finally {
    await lock.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
  }
}
