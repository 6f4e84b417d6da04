import { EventEmitter } from 'node:events';
import pg from 'pg';
import {
  type ContextTransaction,
  currentTransaction,
  type ResultShape,
  type TenantContext,
  tryGetTenant,
} from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { CompiledStatement, QueryResult } from './tenant-transaction.ts';

/** What the pool needs of `Tenantry`: tenant transactions, and one-statement ones in one round trip. */
export interface TenantWork {
  transaction<T>(tenant: TenantContext | string, fn: () => Promise<T>): Promise<T>;
  query(tenant: TenantContext, statement: CompiledStatement): Promise<QueryResult<never>>;
}

/** A pg query as ORM drivers pass it: text or a config, values in either place. */
type PgQueryInput = string | { text: string; values?: unknown[]; rowMode?: string; types?: pg.CustomTypesConfig };

/** The statement of a pg query call, with the result shape the caller asked for. */
interface Statement {
  readonly text: string;
  readonly values: readonly unknown[];
  readonly shape: ResultShape | undefined;
}

function statementOf(input: PgQueryInput, values: unknown): Statement {
  if (typeof input === 'string') return { text: input, values: Array.isArray(values) ? values : [], shape: undefined };
  const shape: ResultShape | undefined =
    input.rowMode === 'array' || input.types
      ? { ...(input.rowMode === 'array' ? { rowMode: 'array' as const } : {}), types: input.types }
      : undefined;
  return { text: input.text, values: Array.isArray(values) ? values : (input.values ?? []), shape };
}

/** The verb of a transaction-control statement (`begin`, `commit`, `rollback`), else undefined. */
function transactionVerb(text: string): 'begin' | 'commit' | 'rollback' | undefined {
  const match = /^\s*(begin|start\s+transaction|commit|end|rollback|abort)\b(?!\s+to\b)(?!\s+prepared\b)/i.exec(text);
  if (!match) return undefined;
  const verb = (match[1] ?? '').toLowerCase();
  if (verb === 'begin' || verb.startsWith('start')) return 'begin';
  return verb === 'commit' || verb === 'end' ? 'commit' : 'rollback';
}

function refuseTransactionControl(text: string): void {
  if (transactionVerb(text)) {
    throw new TenantryError(
      'USAGE_ERROR',
      'transaction control through a tenant connection: use the ORM’s transaction API (it nests as a savepoint)',
    );
  }
  if (/^\s*set\s+transaction\b/i.test(text)) {
    throw new TenantryError('USAGE_ERROR', 'isolation levels cannot be set on a tenant transaction');
  }
}

async function run(transaction: ContextTransaction, statement: Statement): Promise<pg.QueryResult> {
  return transaction.execute(statement.text, statement.values, statement.shape);
}

/** A tenant transaction opened for the ORM, and how to end it. */
interface OwnTransaction {
  readonly transaction: ContextTransaction;
  /** Settles when the runner has committed or rolled back. */
  readonly done: Promise<unknown>;
  end(commit: boolean): void;
}

let savepointSerial = 0;
/** Rejection reason of a transaction the ORM rolled back (not an error of the caller's). */
const ROLLED_BACK = Symbol('tenantry.rolledBack');

/**
 * The connection `TenantPgPool.connect()` lends an ORM for one of its transactions, bound
 * at that moment to the async context's tenant: inside an open tenant transaction, the
 * ORM's `BEGIN … COMMIT` becomes a savepoint of it; otherwise `BEGIN` opens a tenant
 * transaction of its own (held open until the ORM's `COMMIT` or `ROLLBACK`). Statements run
 * on that transaction whatever async context they are issued from, so an ORM that
 * schedules queries on its own (Prisma's batching) cannot move them to another tenant.
 */
class TenantPgClient extends EventEmitter {
  readonly #work: TenantWork;
  readonly #tenant: TenantContext;
  /** The enclosing tenant transaction, when the ORM's transaction nests in one. */
  readonly #outer: ContextTransaction | undefined;
  #savepoint: string | undefined;
  #own: OwnTransaction | undefined;
  #open = false;

  constructor(work: TenantWork, tenant: TenantContext, outer: ContextTransaction | undefined) {
    super();
    this.#work = work;
    this.#tenant = tenant;
    this.#outer = outer;
  }

  async query(input: PgQueryInput, values?: unknown): Promise<pg.QueryResult> {
    const statement = statementOf(input, values);
    const verb = transactionVerb(statement.text);
    if (verb === 'begin') return this.#begin(statement.text);
    if (verb) return this.#end(verb === 'commit');
    if (/^\s*set\s+transaction\b/i.test(statement.text)) refuseTransactionControl(statement.text);
    if (!this.#open)
      throw new TenantryError('NO_TENANT_TRANSACTION', 'the ORM’s transaction has not begun or has ended');
    const transaction = this.#outer ?? this.#own?.transaction;
    if (!transaction) throw new TenantryError('NO_TENANT_TRANSACTION');
    return run(transaction, statement);
  }

  async #begin(text: string): Promise<pg.QueryResult> {
    if (this.#open) throw new TenantryError('USAGE_ERROR', 'the ORM’s transaction has already begun');
    if (!/^\s*(begin|start\s+transaction)\s*;?\s*$/i.test(text)) {
      throw new TenantryError('USAGE_ERROR', 'isolation levels cannot be set on a tenant transaction');
    }
    if (this.#outer) {
      this.#savepoint = `tenantry_orm_${++savepointSerial}`;
      const result = await this.#outer.execute(`SAVEPOINT ${this.#savepoint}`);
      this.#open = true;
      return result;
    }
    // The tenant transaction runs until the ORM ends it; it opens (lazily, pipelined with
    // the first statement) in the runner, which also commits or rolls it back.
    let lend!: (handle: OwnTransaction) => void;
    const lent = new Promise<OwnTransaction>((resolve) => {
      lend = resolve;
    });
    const done = this.#work.transaction(this.#tenant, () => {
      const transaction = currentTransaction();
      if (!transaction) throw new TenantryError('NO_TENANT_TRANSACTION');
      return new Promise((commit, rollback) => {
        lend({ transaction, done, end: (ok) => (ok ? commit(undefined) : rollback(ROLLED_BACK)) });
      });
    });
    done.catch(() => {}); // awaited at the end; a failure before the callback surfaces below
    this.#own = await Promise.race([lent, done.then(() => Promise.reject(new TenantryError('NO_TENANT_TRANSACTION')))]);
    this.#open = true;
    return emptyResult('BEGIN');
  }

  async #end(commit: boolean): Promise<pg.QueryResult> {
    if (!this.#open) {
      // Rolling back what never began (a failed BEGIN) is the ORM's clean-up: nothing to do.
      if (!commit) return emptyResult('ROLLBACK');
      throw new TenantryError('NO_TENANT_TRANSACTION', 'the ORM’s transaction has not begun or has ended');
    }
    this.#open = false;
    if (this.#outer && this.#savepoint) {
      const name = this.#savepoint;
      if (!commit) await this.#outer.execute(`ROLLBACK TO SAVEPOINT ${name}`);
      await this.#outer.execute(`RELEASE SAVEPOINT ${name}`);
      return emptyResult(commit ? 'COMMIT' : 'ROLLBACK');
    }
    const own = this.#own;
    this.#own = undefined;
    if (!own) throw new TenantryError('NO_TENANT_TRANSACTION');
    own.end(commit);
    try {
      await own.done;
    } catch (error) {
      if (error !== ROLLED_BACK) throw error;
    }
    return emptyResult(commit ? 'COMMIT' : 'ROLLBACK');
  }

  /** Gives the connection back; a transaction the ORM left open is rolled back. */
  release(): void {
    if (this.#open) void this.#end(false).catch(() => {});
  }
}

function emptyResult(command: string): pg.QueryResult {
  return { command, rowCount: null, oid: 0, rows: [], fields: [] };
}

/**
 * A `pg.Pool` look-alike for ORM drivers (Drizzle's node-postgres driver, Prisma's pg
 * adapter) whose every statement runs in a tenant transaction of Tenantry:
 *
 * - `query()` inside `tenantry.transaction()` runs on that transaction; outside one, in a
 *   tenant context (`withTenant`, a request), it runs as a one-statement tenant transaction
 *   of that tenant (one round trip); with no tenant context it throws `NO_TENANT_CONTEXT`.
 * - `connect()` lends a connection for the ORM's own transaction (see `TenantPgClient`).
 *
 * It never opens a connection of its own: connections come from Tenantry's router, to the
 * shared pool, the tenant's schema or its database, through the runtime role. Transaction
 * control sent as a plain statement (`COMMIT` through a raw query) is refused, so it
 * cannot end the tenant transaction under the ORM.
 *
 * @example
 * ```ts
 * const pool = new TenantPgPool(tenantry);
 * await withTenant(acme, () => pool.query('SELECT count(*) FROM items'));
 * ```
 */
export class TenantPgPool extends pg.Pool {
  readonly #work: TenantWork;

  constructor(work: TenantWork) {
    // A pool that is never connected: its connect() and query() below replace pg's.
    super({ max: 1 });
    this.#work = work;
  }

  /** Runs `fn` in a tenant transaction of `tenant` (a slug, id or context); the pool's statements in `fn` run on it. */
  transaction<T>(tenant: TenantContext | string, fn: () => Promise<T>): Promise<T> {
    return this.#work.transaction(tenant, () => fn());
  }

  // biome-ignore lint/suspicious/noExplicitAny: pg's overloads; this one serves the promise form.
  override query(input: any, values?: any): any {
    return this.#query(input as PgQueryInput, values);
  }

  async #query(input: PgQueryInput, values: unknown): Promise<pg.QueryResult> {
    const statement = statementOf(input, values);
    refuseTransactionControl(statement.text);
    const transaction = currentTransaction();
    if (transaction) return run(transaction, statement);
    const tenant = tryGetTenant();
    if (!tenant) throw new TenantryError('NO_TENANT_CONTEXT');
    const result = await this.#work.query(tenant, {
      sql: statement.text,
      parameters: statement.values,
      shape: statement.shape,
    });
    return { command: '', oid: 0, rows: result.rows, rowCount: result.rowCount, fields: [...result.fields] };
  }

  // biome-ignore lint/suspicious/noExplicitAny: pg's overloads; this one serves the promise form.
  override connect(): any {
    const outer = currentTransaction();
    const tenant = outer?.tenant ?? tryGetTenant();
    if (!tenant) return Promise.reject(new TenantryError('NO_TENANT_CONTEXT'));
    return Promise.resolve(new TenantPgClient(this.#work, tenant, outer));
  }

  override async end(): Promise<void> {}
}
