import { AsyncLocalStorage } from 'node:async_hooks';
import { TenantryError } from '../errors/catalog.ts';

/** Isolation tier of a tenant: where its rows live. See `docs/isolation-tiers.md`. */
export type IsolationTier = 'pool' | 'schema' | 'database';

/** Lifecycle status of a tenant. Only `active` tenants can do tenant work. */
export type TenantStatus = 'active' | 'suspended' | 'offboarding' | 'deleted';

/**
 * What the request path knows about the tenant it works for. It enters an
 * `AsyncLocalStorage` context (step 4 of the request path) and nothing reads tenant
 * data without it: there is never a default tenant.
 */
export interface TenantContext {
  /** The tenant's uuid: the value of `tenant_id` on its rows. */
  readonly id: string;
  readonly slug: string;
  readonly tier: IsolationTier;
  readonly plan: string;
  readonly status: TenantStatus;
  /** The placement holding its rows (routing); looked up when absent. */
  readonly placementId?: string | undefined;
  /** Its own database (database tier), on its placement's server. */
  readonly database?: string | null | undefined;
  /** Correlation id of the request or job doing the work, when there is one. */
  readonly requestId?: string | undefined;
}

const storage = new AsyncLocalStorage<TenantContext>();

/**
 * Runs `fn` with `tenant` as the current tenant. Contexts nest: the innermost wins, and
 * the outer one is back when `fn` settles.
 *
 * @example
 * ```ts
 * await withTenant(tenant, async () => {
 *   getTenant().id; // tenant.id
 * });
 * ```
 */
export function withTenant<T>(tenant: TenantContext, fn: () => T): T {
  if (!tenant || typeof tenant.id !== 'string') {
    throw new TenantryError('INVALID_INPUT', 'withTenant() needs a tenant with an id');
  }
  return storage.run(Object.freeze({ ...tenant }), fn);
}

/**
 * The current tenant, or `undefined` outside any tenant context.
 *
 * @example
 * ```ts
 * const tenant = tryGetTenant();
 * if (!tenant) return reply.code(400).send(...);
 * ```
 */
export function tryGetTenant(): TenantContext | undefined {
  return storage.getStore();
}

/**
 * The current tenant; throws `NO_TENANT_CONTEXT` outside any tenant context.
 *
 * @example
 * ```ts
 * const { id } = getTenant();
 * ```
 */
export function getTenant(): TenantContext {
  const tenant = storage.getStore();
  if (!tenant) throw new TenantryError('NO_TENANT_CONTEXT');
  return tenant;
}
