import { AsyncLocalStorage } from 'node:async_hooks';
import type { Kysely } from 'kysely';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import type { ContextPurpose } from '../context/context-token.ts';
import { mintContextToken } from '../context/context-token.ts';
import type { TenantContext } from '../context/tenant-context.ts';
import type { ContextDialect } from '../dialect/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { translatePgError } from '../errors/sqlstate.ts';
import { pipelinedBegin } from './pipelined-begin.ts';

/** Result of {@link TenantTransaction.query}. */
export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
}

/**
 * One tenant transaction: a runtime-role connection inside `BEGIN … COMMIT` whose
 * session carries the verified context of {@link TenantTransaction.tenant}.
 *
 * @typeParam DB - the Kysely database interface of the application's tables.
 */
export interface TenantTransaction<DB = unknown> {
  readonly tenant: TenantContext;
  /** Kysely bound to this transaction; queries on tenant tables get the tenant predicate added. */
  readonly db: Kysely<DB>;
  /** Raw SQL on this transaction. Row-level security still filters it. */
  query<R extends QueryResultRow = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>>;
}

/** The transaction the current async context runs in (what the Kysely driver reads). */
export interface ActiveTransaction {
  readonly tenant: TenantContext;
  readonly client: PoolClient;
  open: boolean;
}

const active = new AsyncLocalStorage<ActiveTransaction>();

/** The open transaction of the current async context, if any. */
export function currentTransaction(): ActiveTransaction | undefined {
  const tx = active.getStore();
  return tx?.open ? tx : undefined;
}

/** The server process id pg learnt at connect time (BackendKeyData). */
function backendPid(client: PoolClient): number {
  const pid = (client as unknown as { processID?: unknown }).processID;
  if (typeof pid !== 'number') throw new TenantryError('INTERNAL', 'the pg client did not report its backend pid');
  return pid;
}

/** What the runner needs from its owner: no `Tenantry` import, so no cycle. */
export interface TransactionRunnerDeps {
  readonly pool: Pool;
  readonly contextKey: Buffer;
  readonly dialect: ContextDialect;
  readonly tokenTtlMs: number;
  readonly db: Kysely<unknown>;
  /** Resolves once the runtime role is known to be unable to bypass RLS. */
  readonly ensureSafe: (client: PoolClient) => Promise<void>;
}

/**
 * Runs `fn` in a tenant transaction (step 5 of the request path). The context statement
 * rides with `BEGIN` in one round trip; any error rolls back; the connection goes back
 * to the pool with no tenant state (it only ever existed transaction-locally), and a
 * connection whose rollback failed is destroyed rather than reused.
 */
export async function runTenantTransaction<T, DB>(
  deps: TransactionRunnerDeps,
  tenant: TenantContext,
  purpose: ContextPurpose,
  fn: (tx: TenantTransaction<DB>) => Promise<T>,
): Promise<T> {
  const client = await deps.pool.connect();
  let discard: Error | undefined;
  try {
    await deps.ensureSafe(client);
    const token = mintContextToken(
      deps.contextKey,
      purpose,
      tenant.id,
      backendPid(client),
      Date.now() + deps.tokenTtlMs,
    );
    const state: ActiveTransaction = { tenant, client, open: true };
    try {
      await pipelinedBegin(client, deps.dialect.enterSql, [token]);
    } catch (error) {
      state.open = false;
      await client.query('ROLLBACK').catch((e: Error) => {
        discard = e;
      });
      throw translatePgError(error);
    }
    const tx: TenantTransaction<DB> = {
      tenant,
      db: deps.db as Kysely<DB>,
      query: async <R extends QueryResultRow>(text: string, values?: readonly unknown[]) => {
        if (!state.open) throw new TenantryError('NO_TENANT_TRANSACTION', 'this transaction has ended');
        try {
          const result = await client.query<R>(text, values ? [...values] : undefined);
          return { rows: result.rows, rowCount: result.rowCount ?? 0 };
        } catch (error) {
          throw translatePgError(error);
        }
      },
    };
    let result: T;
    try {
      result = await active.run(state, () => fn(tx));
    } catch (error) {
      state.open = false;
      await client.query('ROLLBACK').catch((e: Error) => {
        discard = e;
      });
      throw translatePgError(error);
    }
    state.open = false;
    try {
      const committed = await client.query('COMMIT');
      if (committed.command === 'ROLLBACK') {
        throw new TenantryError('TRANSACTION_ABORTED');
      }
    } catch (error) {
      await client.query('ROLLBACK').catch((e: Error) => {
        discard = e;
      });
      throw translatePgError(error);
    }
    return result;
  } finally {
    client.release(discard);
  }
}
