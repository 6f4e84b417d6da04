import { Kysely } from 'kysely';
import { currentTransaction } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import { TenantFilterPlugin } from './tenant-filter-plugin.ts';
import { TenantTransactionDialect } from './transaction-driver.ts';

/**
 * The Kysely instance of tenant transactions (`tx.db`): it runs on the current async
 * context's tenant transaction, and adds `tenant_id = <the transaction's tenant>` to every
 * query on a tenant table (the explicit predicate Citus routes by; RLS filters anyway).
 *
 * @param isTenantTable - whether `schema.table` is a tenant table (see `TenantTableSet`).
 */
export function createTenantKysely<DB>(
  isTenantTable: (table: string, schema: string | undefined) => boolean,
): Kysely<DB> {
  return new Kysely<DB>({
    dialect: new TenantTransactionDialect(),
    plugins: [
      new TenantFilterPlugin({
        isTenantTable,
        tenantId: () => {
          const tx = currentTransaction();
          if (!tx) throw new TenantryError('NO_TENANT_TRANSACTION');
          return tx.tenant.id;
        },
      }),
    ],
  });
}
