import { Kysely } from 'kysely';
import { currentTransaction, tryGetTenant } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import { TenantFilterPlugin } from './tenant-filter-plugin.ts';
import { TenantTransactionDialect } from './transaction-driver.ts';

/**
 * The Kysely instance of tenant work (`tx.db`, `tenantry.db`): it runs on the current async
 * context's tenant transaction, and adds `tenant_id = <the tenant>` to every query on a
 * tenant table (the explicit predicate Citus routes by; RLS filters anyway). Compiled inside
 * a tenant context, a query can also be passed to `tenantry.query()` (one round trip).
 *
 * @param isTenantTable - whether `schema.table` is a tenant table (see `TenantTableSet`).
 * @example
 * ```ts
 * const db = createTenantKysely<DB>((table) => table === 'items');
 * const query = withTenant(acme, () => db.selectFrom('items').selectAll().compile());
 * ```
 */
export function createTenantKysely<DB>(
  isTenantTable: (table: string, schema: string | undefined) => boolean,
): Kysely<DB> {
  return new Kysely<DB>({
    dialect: new TenantTransactionDialect(),
    plugins: [
      new TenantFilterPlugin({
        isTenantTable,
        // Inside a transaction, its tenant; compiling ahead for `tenantry.query()`, the
        // context's. A query compiled for one tenant and run for another finds nothing: the
        // predicate names the first, row-level security the second.
        tenantId: () => {
          const tenant = currentTransaction()?.tenant ?? tryGetTenant();
          if (!tenant) {
            throw new TenantryError(
              'NO_TENANT_TRANSACTION',
              'run it in tenantry.transaction(), or compile it inside a tenant context for tenantry.query()',
            );
          }
          return tenant.id;
        },
      }),
    ],
  });
}
