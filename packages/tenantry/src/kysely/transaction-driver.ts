import {
  type CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
} from 'kysely';
import { currentTransaction } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';

function refuseNestedTransaction(): never {
  throw new TenantryError(
    'USAGE_ERROR',
    'a tenant transaction is already open: nest work in it, or use savepoints through tx.query()',
  );
}

/**
 * Kysely driver whose connection is the tenant transaction of the current async context.
 * Used outside `tenantry.transaction()` it throws `NO_TENANT_TRANSACTION`, so a query can
 * never run on a connection that has no verified tenant context.
 */
class TransactionBoundDriver implements Driver {
  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const tx = currentTransaction();
    if (!tx) throw new TenantryError('NO_TENANT_TRANSACTION');
    return {
      async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
        const result = await tx.execute(compiled.sql, compiled.parameters);
        const { command, rowCount } = result;
        const affected = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
        return {
          rows: (result.rows ?? []) as R[],
          numAffectedRows: affected ? BigInt(rowCount ?? 0) : undefined,
        };
      },
      // biome-ignore lint/correctness/useYield: streaming is refused before the first row.
      async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
        throw new TenantryError(
          'USAGE_ERROR',
          'streaming is not supported inside tenant transactions yet; use limit/cursor pagination',
        );
      },
    };
  }

  beginTransaction = refuseNestedTransaction;
  commitTransaction = refuseNestedTransaction;
  rollbackTransaction = refuseNestedTransaction;
  async releaseConnection(): Promise<void> {}
  async destroy(): Promise<void> {}
}

/** The Kysely dialect behind `tx.db`: PostgreSQL SQL, connections from the current tenant transaction. */
export class TenantTransactionDialect implements Dialect {
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new TransactionBoundDriver();
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db);
  }
}
