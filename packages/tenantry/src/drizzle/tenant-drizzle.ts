import type { DrizzleConfig } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { TenantContext } from '../context/tenant-context.ts';
import { TenantPgPool, type TenantWork } from '../transaction/tenant-pg-pool.ts';

/** A Drizzle instance (node-postgres driver) whose statements run in tenant transactions. */
export type TenantDrizzle<TSchema extends Record<string, unknown> = Record<string, never>> = NodePgDatabase<TSchema> & {
  $client: TenantPgPool;
};

/**
 * A Drizzle instance for tenant work: every statement runs in a tenant transaction of
 * Tenantry, on the connection where the tenant's rows live (shared pool, its schema with
 * its `search_path`, or its own database), under the runtime role, so row-level security
 * filters it.
 *
 * - Inside `tenantry.transaction()` (or {@link withTenantDrizzle}) a statement runs on that
 *   transaction, and `db.transaction()` nests in it as a savepoint.
 * - In a tenant context without a transaction (`withTenant`, a request of the Fastify
 *   plugin), a statement is a one-statement tenant transaction (one round trip), and
 *   `db.transaction()` opens one tenant transaction for its callback.
 * - With no tenant context, a statement throws `NO_TENANT_CONTEXT`: there is no default tenant.
 *
 * Build it once (like `tenantry.db`) and use it from any request. Drizzle adds no
 * `tenant_id` predicate of its own: write `eq(items.tenantId, getTenant().id)` where an
 * explicit predicate matters (Citus routing); row-level security filters regardless.
 *
 * @param tenantry - the `Tenantry` instance (anything with its `transaction` and `query`).
 * @param config - Drizzle's options (`schema` for relational queries, `casing`, `logger`).
 * @example
 * ```ts
 * const db = createTenantDrizzle(tenantry, { schema });
 * const rows = await withTenant(acme, () => db.select().from(items));
 * await tenantry.transaction('acme', () => db.insert(items).values({ title: 'first' }));
 * ```
 */
export function createTenantDrizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  tenantry: TenantWork,
  config: DrizzleConfig<TSchema> = {},
): TenantDrizzle<TSchema> {
  return drizzle({ ...config, client: new TenantPgPool(tenantry) });
}

/**
 * Runs `fn` in one tenant transaction of `tenant` (a slug, id or tenant context), handing
 * it `db`: everything `fn` does through `db` (and through `tenantry`) commits or rolls back
 * together, and `db.transaction()` inside nests as a savepoint.
 *
 * @example
 * ```ts
 * const count = await withTenantDrizzle(db, 'acme', async (db) => {
 *   await db.insert(items).values({ title: 'first' });
 *   return db.$count(items);
 * });
 * ```
 */
export function withTenantDrizzle<T, TSchema extends Record<string, unknown>>(
  db: TenantDrizzle<TSchema>,
  tenant: TenantContext | string,
  fn: (db: TenantDrizzle<TSchema>) => Promise<T>,
): Promise<T> {
  return db.$client.transaction(tenant, () => fn(db));
}
