import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { ClientBase, QueryResultRow } from 'pg';
import { requireActive } from '../admit/admission.ts';
import type { ContextDialect } from '../context/context-dialect.ts';
import type { ContextPurpose } from '../context/context-token.ts';
import { mintContextToken, newContextSecret } from '../context/context-token.ts';
import { backendPid, contextEntryValues } from '../context/enter-context.ts';
import { databaseKey, type KnownTenantStates } from '../context/known-tenant-states.ts';
import {
  type ContextTransaction,
  type ResultShape,
  runInTransaction,
  type TenantContext,
} from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import { TENANTRY_SQLSTATE, translatePgError } from '../errors/sqlstate.ts';
import { type PipelineResponse, pipelinedBegin, stageOf } from './pipelined-begin.ts';
import { type DeferredStatement, pipelinedCommit } from './pipelined-commit.ts';
import type { TenantUsage, UsageCounting } from './tenant-usage.ts';

/** A statement compiled ahead (a Kysely `CompiledQuery` fits): SQL text and its parameters. */
export interface CompiledStatement {
  readonly sql: string;
  readonly parameters: readonly unknown[];
  /** How pg should shape the result (rows as arrays, type parsers); pg's defaults when absent. */
  readonly shape?: ResultShape | undefined;
  /**
   * Prepare it once per connection, then only bind it (`tenantry.query()`,
   * `request.tenantQuery()`): PostgreSQL parses, rewrites (row-level security included) and
   * plans it once per server session instead of on every call. For statements whose SQL
   * text is fixed, the values in `parameters`: each distinct text stays prepared in the
   * session, up to 256 per connection (more are parsed each time).
   * `prepareTenantQuery()` sets it. Off behind a transaction-mode pooler
   * (`prepareContextStatement: false`), where a session's statements are not its own.
   */
  readonly prepare?: boolean | undefined;
}

/** Result of {@link TenantTransaction.query}. */
export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
  /** The result's columns (name, type oid), as pg describes them. */
  readonly fields: readonly pg.FieldDef[];
}

/**
 * One tenant transaction: a runtime-role connection inside `BEGIN … COMMIT` whose
 * session carries the verified context of {@link TenantTransaction.tenant}.
 *
 * @typeParam DB - the Kysely database interface of the application's tables.
 */
export interface TenantTransaction<DB = unknown> {
  readonly tenant: TenantContext;
  /**
   * Whether this transaction runs in the main database (where the control plane and the
   * outbox are), not in a tenant database or on another placement's server.
   */
  readonly inMainDatabase: boolean;
  /** Kysely bound to this transaction; queries on tenant tables get the tenant predicate added. */
  readonly db: Kysely<DB>;
  /** Raw SQL on this transaction. Row-level security still filters it. */
  query<R extends QueryResultRow = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>>;
  /**
   * Queues a statement to run just before `COMMIT`, in the same round trip (an audit entry:
   * `audit(tx, …)`). Its failure rolls the whole transaction back, and the transaction's
   * result is then that error. Queued statements run in order; none runs on rollback.
   *
   * @example
   * ```ts
   * tx.defer('SELECT tenantry_context.audit_append($1, $2, $3, $4, $5)', ['item.created', null, '{}', null, null]);
   * ```
   */
  defer(text: string, values?: readonly unknown[]): void;
}

/**
 * Name of the context statement prepared on a connection, kept on the pg client itself
 * (it lives and dies with the server session). A failed attempt clears it, and the next
 * one prepares under a fresh name, so a half-done Parse can never collide.
 */
const PREPARED = Symbol('tenantry.preparedEnter');
/** The one-time secret the last `enter()` stored on this connection's backend (session binding). */
const SECRET = Symbol('tenantry.contextSecret');
let preparedSerial = 0;
/**
 * Per process: behind a pooler that forwards named statements (PgBouncer < 1.21 in
 * transaction mode), two processes sharing a server connection must not pick the same name.
 */
const PREPARED_PREFIX = `tenantry_enter_${randomBytes(4).toString('hex')}_`;
/** Statements that `tenantry.query()` prepared on a connection: SQL text → name and state. */
const STATEMENTS = Symbol('tenantry.preparedStatements');
/** At most this many statements are prepared per connection; any other is parsed each time. */
const MAX_PREPARED_STATEMENTS = 256;
const STATEMENT_PREFIX = `tenantry_q_${randomBytes(4).toString('hex')}_`;
let statementSerial = 0;
/**
 * A statement's name on one connection. `ready`: the backend holds it (a pipeline that bound
 * it succeeded); until then every use sends `Close` and `Parse` under the same name, so a
 * Parse that a failed pipeline may have done leaves no second copy behind.
 */
interface PreparedNote {
  readonly name: string;
  ready: boolean;
}
type PreparingClient = ClientBase & {
  [PREPARED]?: string | undefined;
  [SECRET]?: string | undefined;
  [STATEMENTS]?: Map<string, PreparedNote>;
};

/** The name `statement` has (or now gets) on `client`, if it is to be prepared there. */
function preparedNote(
  deps: TransactionRunnerDeps,
  client: PreparingClient,
  statement: { text: string; prepare?: boolean } | undefined,
): PreparedNote | undefined {
  if (!statement?.prepare || !deps.prepareContextStatement) return undefined;
  let notes = client[STATEMENTS];
  if (!notes) {
    notes = new Map();
    client[STATEMENTS] = notes;
  }
  let note = notes.get(statement.text);
  if (!note && notes.size < MAX_PREPARED_STATEMENTS) {
    note = { name: `${STATEMENT_PREFIX}${++statementSerial}`, ready: false };
    notes.set(statement.text, note);
  }
  return note;
}

/** A runtime-role connection lent for one tenant transaction. */
export interface TenantConnection {
  readonly client: ClientBase;
  /** Whether the connection is to the main database (see {@link TenantTransaction.inMainDatabase}). */
  readonly inMainDatabase: boolean;
  /** Gives the connection back; with an error, it is destroyed instead of reused. */
  release(discard?: Error): void;
}

/** Where tenant transactions get their connections (the connection router). */
export interface ConnectionSource {
  /**
   * A runtime-role connection to where `tenant`'s rows live (the shared pool, the database
   * of its schema, or its own database through the pool map), already checked to be unable
   * to bypass RLS.
   */
  connect(tenant: TenantContext): Promise<TenantConnection>;
}

/** What the runner is built from: no `Tenantry` import, so no cycle. */
export interface TransactionRunnerDeps {
  readonly connections: ConnectionSource;
  readonly contextKey: Buffer;
  readonly dialect: ContextDialect;
  readonly tokenTtlMs: number;
  readonly db: Kysely<unknown>;
  /** Prepare the context statement once per connection (off behind poolers without prepared-statement support). */
  readonly prepareContextStatement: boolean;
  /** `pooler`: tokens carry pid 0, for a transaction-mode pooler (see `contextBinding`). */
  readonly contextBinding: 'session' | 'pooler';
  /** Schema of the shared tables: `search_path` of pool- and database-tier transactions. */
  readonly sharedSchema: string;
  /** Per-tenant usage accounting (`usage` option); absent: nothing is counted. */
  readonly usage?: UsageCounting | undefined;
  /**
   * The context statement sets `application_name` to `tenantry:<tenant id>` for the
   * transaction (`SET LOCAL`), so `pg_stat_activity` shows whose work a backend runs. It
   * rides in the statement of the opening pipeline: no extra round trip.
   */
  readonly applicationName?: boolean | undefined;
  /**
   * What `enter()` answered about tenants, per database, sent back so that PostgreSQL reads a
   * tenant's row only after a tenant's state changed there (session binding, tenant work).
   */
  readonly known?: KnownTenantStates | undefined;
}

/**
 * The context statement wrapped so that it also names the transaction's tenant in
 * `application_name` (transaction-local, like the context itself); it answers exactly what
 * the context statement answers. Built once per dialect.
 */
const NAMED_ENTER = new WeakMap<ContextDialect, string>();
function enterText(deps: TransactionRunnerDeps, parameters: number): string {
  if (!deps.applicationName) return deps.dialect.enterSql;
  let text = NAMED_ENTER.get(deps.dialect);
  if (text === undefined) {
    // In the WHERE clause, not the select list: the answer (row description and row) stays
    // the context statement's own. Order does not matter: if enter() refuses, the
    // transaction aborts and the transaction-local setting goes with it.
    // The tenant's id is the parameter after the context statement's own (a dialect's
    // statement always takes as many).
    text = `SELECT e.* FROM (${deps.dialect.enterSql}) e WHERE set_config('application_name', 'tenantry:' || $${parameters + 1}::uuid::text, true) IS NOT NULL`;
    NAMED_ENTER.set(deps.dialect, text);
  }
  return text;
}

/**
 * Sends `BEGIN`, the context statement and `statement` (and `COMMIT`, when asked) in one
 * round trip on `client`, choosing the entry token: the session's one-time secret when this
 * connection has one (no cryptography in PostgreSQL), else an HMAC-signed token. A refused
 * secret (the backend lost it: `DISCARD ALL`, a pooler, another client) is retried once with
 * a signed token; so is a prepared context statement that vanished or collides.
 */
async function openPipelined(
  deps: TransactionRunnerDeps,
  client: PreparingClient,
  tenant: TenantContext,
  purpose: ContextPurpose,
  request: {
    statement: { text: string; values?: readonly unknown[]; shape?: ResultShape; prepare?: boolean };
    commit?: boolean;
  },
): Promise<PipelineResponse> {
  for (let attempt = 0; ; attempt++) {
    const note = preparedNote(deps, client, request.statement);
    const session = deps.contextBinding === 'session';
    // A secret works once: forget it now, whatever happens, and keep the next on success.
    const secret = session && attempt === 0 ? client[SECRET] : undefined;
    client[SECRET] = undefined;
    const next = session ? newContextSecret() : null;
    const database = deps.known && secret !== undefined && purpose === 'work' ? databaseKey(client) : undefined;
    const values = contextEntryValues(deps.dialect, {
      purpose,
      tenantId: tenant.id,
      secret,
      known: database === undefined ? undefined : deps.known?.get(database, tenant.id),
      nextSecret: next,
      sharedSchema: deps.sharedSchema,
      signedToken: () =>
        mintContextToken(
          deps.contextKey,
          purpose,
          tenant.id,
          session ? backendPid(client) : 0,
          Date.now() + deps.tokenTtlMs,
        ),
    });
    const prepared = deps.prepareContextStatement ? client[PREPARED] : undefined;
    const name = deps.prepareContextStatement ? (prepared ?? `${PREPARED_PREFIX}${++preparedSerial}`) : undefined;
    try {
      const response = await pipelinedBegin(client, {
        begin: 'BEGIN',
        ...(deps.dialect.transactionBlock ? { explicit: true } : {}),
        enter: {
          text: enterText(deps, values.length),
          values: deps.applicationName ? [...values, tenant.id] : values,
          ...(name ? { name } : {}),
        },
        parseEnter: prepared === undefined,
        ...request,
        statement: note ? { ...request.statement, name: note.name, parse: !note.ready } : request.statement,
      });
      if (note) note.ready = true;
      if (name) client[PREPARED] = name;
      if (next !== null) client[SECRET] = next;
      if (database !== undefined) deps.known?.learn(database, tenant.id, response.enterValue);
      return response;
    } catch (error) {
      const stage = stageOf(error);
      if (database !== undefined && stage !== 'statement' && stage !== 'commit')
        deps.known?.forget(database, tenant.id);
      const code = (error as { code?: string }).code;
      if (stage === 'statement' || stage === 'commit') {
        if (name) client[PREPARED] = name;
        if (next !== null) client[SECRET] = next;
        // A statement prepared here before that the backend no longer has (DEALLOCATE,
        // DISCARD ALL by someone else), or whose result changed shape since (a migration
        // added a column to a `SELECT *`: "cached plan must not change result type"):
        // nothing ran, so prepare it again and retry once.
        const stale = code === '26000' || code === '0A000';
        if (!(note?.ready && stage === 'statement' && stale && attempt === 0)) throw error;
        note.ready = false;
        await client.query('ROLLBACK');
        continue;
      }
      client[PREPARED] = undefined;
      // The context statement vanished with whatever else the session had prepared.
      if (code === '26000') for (const n of client[STATEMENTS]?.values() ?? []) n.ready = false;
      const retry =
        attempt === 0 &&
        (code === '26000' || code === '42P05' || (secret !== undefined && code === TENANTRY_SQLSTATE.invalidContext));
      if (!retry) throw error;
      // The failed pipeline left the transaction aborted (or never opened): close it first.
      await client.query('ROLLBACK');
    }
  }
}

/**
 * Runs `fn` in a tenant transaction (step 5 of the request path).
 *
 * The transaction opens lazily: the first statement of `fn` travels with `BEGIN` and the
 * context statement in one pipelined round trip (a one-statement transaction costs two
 * round trips in all, with `COMMIT`), and `fn` that runs no statement costs none. If
 * PostgreSQL refuses the context (suspended tenant, forged or expired token), the
 * statement never runs. Any error rolls back; the connection goes back to the pool with
 * no tenant state (it only ever existed transaction-locally), and a connection whose
 * rollback failed is destroyed rather than reused.
 */
export async function runTenantTransaction<T, DB>(
  deps: TransactionRunnerDeps,
  tenant: TenantContext,
  purpose: ContextPurpose,
  fn: (tx: TenantTransaction<DB>) => Promise<T>,
): Promise<T> {
  // Known before any round trip; a stale 'active' is caught by PostgreSQL at BEGIN.
  if (purpose === 'work') requireActive(tenant.status);
  const connection = await deps.connections.connect(tenant);
  const client = connection.client as PreparingClient;
  let discard: Error | undefined;
  // Usage: one object per tenant, found once; two clock reads per statement, one per transaction.
  // Tenant work only: Tenantry's own maintenance (purges, moves, snapshots) is not the tenant's usage.
  const usage: TenantUsage | undefined = purpose === 'work' ? deps.usage?.of(tenant) : undefined;
  let opened = 0;
  let failed = true;
  /** The opening pipeline, once the first statement was issued. */
  let begun: Promise<pg.QueryResult> | undefined;
  /** Whether PostgreSQL accepted the context (the transaction is open on the server). */
  let entered = false;
  /** Statements to run with COMMIT (see {@link TenantTransaction.defer}). */
  const deferred: DeferredStatement[] = [];
  const rollback = async () => {
    await client.query('ROLLBACK').catch((e: Error) => {
      discard = e;
    });
  };
  const begin = async (first: {
    text: string;
    values?: readonly unknown[];
    shape?: ResultShape;
  }): Promise<pg.QueryResult> => {
    const { result } = await openPipelined(deps, client, tenant, purpose, { statement: first }).catch(
      async (error: unknown) => {
        if (stageOf(error) === 'statement') {
          // The context is in place; the application's statement failed, as it would alone.
          entered = true;
        } else {
          await rollback();
        }
        throw error;
      },
    );
    entered = true;
    return result as pg.QueryResult;
  };
  const state: ContextTransaction = {
    tenant,
    open: true,
    async execute(text, values, shape) {
      if (!state.open) throw new TenantryError('NO_TENANT_TRANSACTION', 'this transaction has ended');
      const started = usage ? performance.now() : 0;
      try {
        let result: pg.QueryResult;
        if (!begun) {
          opened = started;
          begun = begin({ text, ...(values ? { values } : {}), ...(shape ? { shape } : {}) });
          // Awaited just below; the no-op catch keeps a concurrent waiter's copy from
          // being reported as unhandled.
          begun.catch(() => {});
          result = await begun;
        } else {
          // Statements issued while the pipeline is in flight queue behind it on the
          // connection; a refused context fails them too.
          await begun.catch((error: unknown) => {
            if (stageOf(error) !== 'statement') throw error;
          });
          // Always the extended protocol: one statement per message, so injected text cannot
          // end the transaction and run more statements after it (see docs/security-model.md).
          result = await client.query({
            text,
            values: values ? [...values] : [],
            queryMode: 'extended',
            ...(shape?.rowMode ? { rowMode: shape.rowMode } : {}),
            ...(shape?.types ? { types: shape.types } : {}),
          } as pg.QueryConfig);
        }
        usage?.statement(result, text, performance.now() - started);
        return result;
      } catch (error) {
        throw translatePgError(error);
      }
    },
  };
  try {
    const tx: TenantTransaction<DB> = {
      tenant,
      inMainDatabase: connection.inMainDatabase,
      db: deps.db as Kysely<DB>,
      query: async <R extends QueryResultRow>(text: string, values?: readonly unknown[]) => {
        const result = await state.execute(text, values);
        return { rows: result.rows as R[], rowCount: result.rowCount ?? 0, fields: result.fields ?? [] };
      },
      defer: (text, values) => {
        if (!state.open) throw new TenantryError('NO_TENANT_TRANSACTION', 'this transaction has ended');
        deferred.push({ text, values });
      },
    };
    let result: T;
    try {
      result = await runInTransaction(state, () => fn(tx));
      // Only deferred statements: the first one opens the transaction, the rest go with COMMIT.
      const first = begun ? undefined : deferred.shift();
      if (first) await state.execute(first.text, first.values);
    } catch (error) {
      state.open = false;
      if (begun) await rollback();
      throw translatePgError(error);
    }
    state.open = false;
    if (!begun) return result; // no statement ran: nothing to commit
    if (!entered) {
      // The context was refused and the callback swallowed the error: nothing ran.
      throw new TenantryError('TRANSACTION_ABORTED');
    }
    try {
      const committed =
        deferred.length > 0
          ? await pipelinedCommit(client, deferred)
          : (await client.query('COMMIT')).command !== 'ROLLBACK';
      if (!committed) {
        throw new TenantryError('TRANSACTION_ABORTED');
      }
    } catch (error) {
      await rollback();
      throw error instanceof TenantryError ? error : translatePgError(error);
    }
    failed = false;
    return result;
  } finally {
    connection.release(discard);
    if (usage && begun) usage.transaction(performance.now() - opened, failed);
  }
}

/**
 * Runs one statement as a whole tenant transaction in one round trip: the context and
 * `text` go in a single pipeline with one Sync, without `BEGIN` or `COMMIT`: PostgreSQL runs
 * the messages up to a Sync as one implicit transaction and commits it there. It stops at
 * the first error, so a refused context runs nothing and a failed statement commits
 * nothing; either way the error surfaces as from {@link runTenantTransaction}.
 */
export async function runTenantQuery<R extends QueryResultRow>(
  deps: TransactionRunnerDeps,
  tenant: TenantContext,
  purpose: ContextPurpose,
  text: string,
  values?: readonly unknown[],
  shape?: ResultShape,
  prepare?: boolean,
): Promise<QueryResult<R>> {
  if (purpose === 'work') requireActive(tenant.status);
  const connection = await deps.connections.connect(tenant);
  const client = connection.client as PreparingClient;
  let discard: Error | undefined;
  // Tenant work only: Tenantry's own maintenance (purges, moves, snapshots) is not the tenant's usage.
  const usage: TenantUsage | undefined = purpose === 'work' ? deps.usage?.of(tenant) : undefined;
  const started = usage ? performance.now() : 0;
  let ended = 0;
  let failed = true;
  try {
    const statement = {
      text,
      ...(values ? { values } : {}),
      ...(shape ? { shape } : {}),
      ...(prepare ? { prepare } : {}),
    };
    const { result, committed } = await openPipelined(deps, client, tenant, purpose, { statement, commit: true });
    if (!committed) throw new TenantryError('TRANSACTION_ABORTED');
    failed = false;
    // The statement and COMMIT came back in one answer: one clock read for both.
    if (usage) {
      ended = performance.now();
      usage.statement(result, text, ended - started);
    }
    return { rows: (result?.rows ?? []) as R[], rowCount: result?.rowCount ?? 0, fields: result?.fields ?? [] };
  } catch (error) {
    // The pipeline ran as one implicit transaction, which PostgreSQL ended at its Sync
    // whatever stage failed; anything else may have left a transaction open: end it before
    // the connection goes back.
    if (!(error instanceof TenantryError) && stageOf(error) === undefined) {
      await client.query('ROLLBACK').catch((e: Error) => {
        discard = e;
      });
    }
    throw error instanceof TenantryError ? error : translatePgError(error);
  } finally {
    connection.release(discard);
    if (usage) usage.transaction((ended || performance.now()) - started, failed);
  }
}
