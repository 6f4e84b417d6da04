import type { TenantContext } from '../context/tenant-context.ts';
import { TenantPgPool, type TenantWork } from '../transaction/tenant-pg-pool.ts';

/**
 * The client to give Drizzle's node-postgres driver so that every statement runs in a
 * tenant transaction of Tenantry, on the connection where the tenant's rows live (shared
 * pool, its schema with its `search_path`, or its own database), under the runtime role,
 * so row-level security filters it:
 *
 * - inside `tenantry.transaction()` (or {@link withTenantDrizzle}) a statement runs on that
 *   transaction, and `db.transaction()` nests in it as a savepoint;
 * - in a tenant context without a transaction (`withTenant`, a request of the Fastify
 *   plugin), a statement is a one-statement tenant transaction (one round trip), and
 *   `db.transaction()` opens one tenant transaction for its callback;
 * - with no tenant context, a statement throws `NO_TENANT_CONTEXT`: there is no default tenant.
 *
 * Build the Drizzle instance once (like `tenantry.db`) and use it from any request. This
 * module names no Drizzle type (Drizzle's declarations do not pass a strict `skipLibCheck:
 * false` check), so the instance is the application's own `drizzle(...)` call, fully typed.
 *
 * @param tenantry - the `Tenantry` instance (anything with its `transaction` and `query`).
 * @example
 * ```ts
 * import { drizzle } from 'drizzle-orm/node-postgres';
 * const db = drizzle({ client: tenantDrizzleClient(tenantry), schema });
 * const rows = await withTenant(acme, () => db.select().from(items));
 * ```
 */
export function tenantDrizzleClient(tenantry: TenantWork): TenantPgPool {
  return new TenantPgPool(tenantry);
}

/**
 * Runs `fn` in one tenant transaction of `tenant` (a slug, id or tenant context), handing
 * it `db` (a Drizzle instance on {@link tenantDrizzleClient}): everything `fn` does through
 * `db` (and through `tenantry`) commits or rolls back together, and `db.transaction()`
 * inside nests as a savepoint.
 *
 * @example
 * ```ts
 * const count = await withTenantDrizzle(db, 'acme', async (db) => {
 *   await db.insert(items).values({ title: 'first' });
 *   return db.$count(items);
 * });
 * ```
 */
export function withTenantDrizzle<D extends { readonly $client: TenantPgPool }, T>(
  db: D,
  tenant: TenantContext | string,
  fn: (db: D) => Promise<T>,
): Promise<T> {
  return db.$client.transaction(tenant, () => fn(db));
}
