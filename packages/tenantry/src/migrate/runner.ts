import type { ClientBase, QueryResult } from 'pg';
import type { ContextDialect } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { MigrationContext, TenantMigration } from '../schema/migration.ts';
import { tenantTableSql } from '../schema/tenant-table.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';

/**
 * Which chain a migration belongs to: Tenantry's own control plane, the slice of it a
 * satellite database holds, or the application's tenant tables.
 */
export type MigrationChain = 'control' | 'satellite' | 'tenant';

/** What one run did to one target. */
export interface MigrationReport {
  readonly chain: MigrationChain;
  readonly target: string;
  readonly applied: readonly string[];
  /**
   * Set when the run stopped before a `transaction: false` migration (with
   * `nonTransactional: 'defer'`): its id. Run it with {@link applyNonTransactionalMigration}
   * once this transaction has committed, then go on.
   */
  readonly deferred?: string;
}

/** Where and what {@link applyMigrations} applies. */
export interface MigrationTarget {
  readonly chain: MigrationChain;
  /** Ledger key of the target: `shared`, or a schema or database target's id. */
  readonly target: string;
  /** Schema the target's tables live in (`search_path` is set to it). */
  readonly schema: string;
  readonly ownerRole: string;
  readonly runtimeRole: string;
  readonly dialect: ContextDialect;
  readonly migrations: readonly TenantMigration[];
  /**
   * Which copy of the tenant tables this target is, for the policies `tenantTable()`
   * creates: the schema of a schema-tier target, `''` for the shared tables and tenant
   * databases. Omitted (the control plane's chains), policies accept any verified tenant.
   */
  readonly place?: string;
  /**
   * What an in-transaction run does with a `transaction: false` migration: `inline` runs
   * it in the transaction (`m.inTransaction` true; right for a target being created), `defer`
   * stops before it and reports it in {@link MigrationReport.deferred} (a live target).
   * Default `inline`; {@link applyMigrations} defers and runs it outside the transaction itself.
   */
  readonly nonTransactional?: 'inline' | 'defer';
}

/**
 * Applies the pending migrations of one chain to one target, all in one transaction as
 * the owner role, under a per-target advisory lock: concurrent runs serialize, a failure
 * rolls the whole target back, and a killed run leaves nothing half-applied. The ledger
 * row is inserted before the migration runs, so two runners that slipped past the lock
 * would collide on its primary key instead of applying twice.
 *
 * A `transaction: false` migration splits the run: what comes before it commits, it runs
 * outside a transaction ({@link applyNonTransactionalMigration}), and the rest goes on in
 * a new transaction.
 */
export async function applyMigrations(client: ClientBase, options: MigrationTarget): Promise<MigrationReport> {
  const applied: string[] = [];
  for (;;) {
    await client.query('BEGIN');
    let report: MigrationReport;
    try {
      report = await applyPendingMigrations(client, { ...options, nonTransactional: 'defer' });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
    applied.push(...report.applied);
    if (report.deferred === undefined) break;
    const migration = options.migrations.find((m) => m.id === report.deferred) as TenantMigration;
    if (await applyNonTransactionalMigration(client, options, migration)) applied.push(migration.id);
  }
  return Object.freeze({ chain: options.chain, target: options.target, applied: Object.freeze(applied) });
}

/**
 * The body of {@link applyMigrations}, inside a transaction the caller opened (so that
 * provisioning can create a schema, migrate it and record it in one commit). Leaves
 * `ROLE` and `search_path` changed until the transaction ends. Its bookkeeping is one
 * round trip ({@link openRunSql}) before the migrations' own statements.
 */
export async function applyPendingMigrations(client: ClientBase, options: MigrationTarget): Promise<MigrationReport> {
  const opened = (await client.query(openRunSql(options))) as unknown as QueryResult[];
  return runOpenedMigrations(client, options, opened);
}

/**
 * The opening of a run as one batch of statements, sent in one round trip (a simple-query
 * batch runs its statements in order and stops at the first error, which aborts the
 * caller's transaction): the owner role and the target's `search_path`, the per-target
 * advisory lock, the ledger read, and the ledger rows of the migrations this transaction
 * will apply, inserted before they run, so two runners that slipped past the lock would
 * collide on the primary key instead of applying twice. A caller may put statements of its
 * own before it in the same batch (the fleet runner its row lock); pass the batch's results
 * to {@link runOpenedMigrations}.
 *
 * @example
 * ```ts
 * const results = await client.query(`BEGIN; ${openRunSql(target)}`);
 * const report = await runOpenedMigrations(client, target, results);
 * ```
 */
export function openRunSql(options: MigrationTarget): string {
  const { chain, target, schema, ownerRole, migrations } = options;
  const defer = options.nonTransactional === 'defer';
  const ids = `ARRAY[${migrations.map((m) => quoteLiteral(m.id)).join(', ')}]::text[]`;
  const stops = `ARRAY[${migrations.map((m) => String(defer && m.transaction === false)).join(', ')}]::boolean[]`;
  const ledger = `SELECT id FROM tenantry.migrations WHERE chain = ${quoteLiteral(chain)} AND target = ${quoteLiteral(target)}`;
  // What this transaction applies: the pending migrations in order, up to the first one
  // that must run outside a transaction (deferred: it runs after this commit).
  // A cluster's settings for DDL (the dialect's), after the role and before the lock.
  const settings = (options.dialect.migrationSettings ?? []).map((setting) => `${setting};\n`).join('');
  return `SET LOCAL ROLE ${quoteIdent(ownerRole)};
SET LOCAL search_path = ${quoteIdent(schema)}, pg_catalog;
${settings}SELECT pg_advisory_xact_lock(hashtext(${quoteLiteral(`tenantry:migrate:${chain}:${target}`)}));
${ledger};
INSERT INTO tenantry.migrations (chain, target, id)
SELECT ${quoteLiteral(chain)}, ${quoteLiteral(target)}, p.id
  FROM unnest(${ids}, ${stops}) WITH ORDINALITY AS p(id, stop, ord)
 WHERE p.id NOT IN (${ledger})
   AND p.ord < coalesce((SELECT min(q.ord) FROM unnest(${ids}, ${stops}) WITH ORDINALITY AS q(id, stop, ord)
                          WHERE q.stop AND q.id NOT IN (${ledger})), 2147483647)`;
}

/**
 * Runs the migrations a batch that ended with {@link openRunSql} opened: checks the ledger
 * it read (an applied migration that is no longer defined is `MIGRATION_CHANGED`), then
 * runs each pending `up()` in order, stopping before a deferred `transaction: false` one.
 */
export async function runOpenedMigrations(
  client: ClientBase,
  options: MigrationTarget,
  opened: readonly QueryResult[],
): Promise<MigrationReport> {
  const { chain, target, migrations } = options;
  // The ledger read is the batch's last statement but one (the last inserts the ledger rows).
  const read = opened.at(-2) as QueryResult<{ id: string }> | undefined;
  if (!read || !Array.isArray(read.rows))
    throw new TenantryError('INTERNAL', 'migration run opened without its ledger');
  const done = new Set(read.rows.map((r) => r.id));
  const known = new Set(migrations.map((m) => m.id));
  const removed = [...done].filter((id) => !known.has(id));
  if (removed.length > 0) {
    throw new TenantryError('MIGRATION_CHANGED', `applied but no longer defined: ${removed.join(', ')}`);
  }
  const context = migrationContext(client, options, true);
  const applied: string[] = [];
  for (const migration of migrations) {
    if (done.has(migration.id)) continue;
    if (migration.transaction === false && options.nonTransactional === 'defer') {
      return Object.freeze({ chain, target, applied: Object.freeze(applied), deferred: migration.id });
    }
    try {
      await migration.up(context);
    } catch (cause) {
      throw new TenantryError('MIGRATION_FAILED', `${chain} migration ${migration.id} on ${target}`, { cause });
    }
    applied.push(migration.id);
  }
  return Object.freeze({ chain, target, applied: Object.freeze(applied) });
}

/**
 * Runs one `transaction: false` migration of `options` outside any transaction, as the
 * owner role, under the target's migration lock (a session lock with the same key as the
 * transactional runs' one, so the two serialize). Every migration before it must be
 * applied. The ledger row is written after `up()` succeeds: a failure leaves the migration
 * pending (`MIGRATION_FAILED`), and the next run calls `up()` again — which is why it must
 * be idempotent (`m.createIndex()` drops the INVALID index a failed concurrent build
 * leaves, then builds it again). Returns false when another run applied it first.
 *
 * @example
 * ```ts
 * const report = await applyPendingMigrations(client, { ...target, nonTransactional: 'defer' });
 * await client.query('COMMIT');
 * if (report.deferred) await applyNonTransactionalMigration(client, target, migrationById(report.deferred));
 * ```
 */
export async function applyNonTransactionalMigration(
  client: ClientBase,
  options: MigrationTarget,
  migration: TenantMigration,
): Promise<boolean> {
  const { chain, target, schema, ownerRole, migrations } = options;
  const key = `tenantry:migrate:${chain}:${target}`;
  await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
  try {
    const { rows } = await client.query<{ id: string }>(
      'SELECT id FROM tenantry.migrations WHERE chain = $1 AND target = $2',
      [chain, target],
    );
    const done = new Set(rows.map((r) => r.id));
    if (done.has(migration.id)) return false;
    const before = migrations.slice(
      0,
      migrations.findIndex((m) => m.id === migration.id),
    );
    const missing = before.filter((m) => !done.has(m.id)).map((m) => m.id);
    if (missing.length > 0) {
      throw new TenantryError('USAGE_ERROR', `${migration.id} runs after ${missing.join(', ')}, which are not applied`);
    }
    await client.query(`SET ROLE ${quoteIdent(ownerRole)}`);
    await client.query(`SET search_path = ${quoteIdent(schema)}, pg_catalog`);
    try {
      await migration.up(migrationContext(client, options, false));
    } catch (cause) {
      throw new TenantryError(
        'MIGRATION_FAILED',
        `${chain} migration ${migration.id} on ${target} (outside a transaction: fix the cause and run again)`,
        { cause },
      );
    }
    await client.query('INSERT INTO tenantry.migrations (chain, target, id) VALUES ($1, $2, $3)', [
      chain,
      target,
      migration.id,
    ]);
    return true;
  } finally {
    await client.query('RESET ROLE; RESET search_path').catch(() => {});
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => {});
  }
}

/**
 * Where a migration context sends statements: `query` runs one now and returns its result;
 * `ddl` takes one whose result nobody reads (a declared table, an index in a transaction),
 * which a batching caller may hold for its next round trip ({@link applyChainToNewTarget}).
 */
interface StatementSink {
  query(text: string, values?: readonly unknown[]): Promise<QueryResult | QueryResult[]>;
  ddl(statements: readonly string[]): Promise<void>;
}

const direct = (client: ClientBase, oneByOne: boolean): StatementSink => ({
  query: (text, values) =>
    client.query(text, values ? [...values] : undefined) as unknown as Promise<QueryResult | QueryResult[]>,
  ddl: async (statements) => {
    // A distributing dialect (Citus) sends a DDL statement's text on to every node as it
    // came, and a node refuses a text of several statements ("cannot insert multiple
    // commands into a prepared statement"): one round trip each there.
    if (oneByOne) {
      for (const statement of statements) await client.query(statement);
      return;
    }
    // One round trip for a table, its policies, grants and indexes: they take no parameters.
    await client.query(statements.join(';\n'));
  },
});

/** What a migration's `up()` gets, on `client`, inside a transaction or not. */
function migrationContext(
  client: ClientBase,
  options: MigrationTarget,
  inTransaction: boolean,
  sink: StatementSink = direct(client, options.dialect.distributeTableSql !== undefined),
): MigrationContext {
  const { schema, runtimeRole, dialect, place } = options;
  return {
    schema,
    inTransaction,
    query: async (text, values) => {
      const result = await sink.query(text, values);
      return { rows: Array.isArray(result) ? [] : result.rows };
    },
    tenantTable: async (definition) => {
      await sink.ddl(
        tenantTableSql(definition, {
          runtimeRole,
          dialect,
          ...(place !== undefined ? { place } : {}),
        }),
      );
    },
    createIndex: async (index) => {
      const name = quoteIdent(index.name);
      const table = `${quoteIdent(schema)}.${quoteIdent(index.table)}`;
      const body = `${name} ON ${table} USING ${index.using ?? 'btree'} (${index.columns.join(', ')})${
        index.where ? ` WHERE ${index.where}` : ''
      }`;
      const unique = index.unique ? 'UNIQUE ' : '';
      if (inTransaction) {
        await sink.ddl([`CREATE ${unique}INDEX IF NOT EXISTS ${body}`]);
        return;
      }
      // A failed or cancelled concurrent build leaves the index behind, INVALID: IF NOT
      // EXISTS would then keep it. Drop it and build again.
      const { rowCount } = await client.query(
        `SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND NOT i.indisvalid`,
        [schema, index.name],
      );
      if (rowCount) await client.query(`DROP INDEX CONCURRENTLY ${quoteIdent(schema)}.${name}`);
      await client.query(`CREATE ${unique}INDEX CONCURRENTLY IF NOT EXISTS ${body}`);
    },
  };
}

/** Column name of the marker row that separates held statements' results from a query's. */
const BATCH_MARK = 'tenantry_batch_mark';

/**
 * Applies the whole chain to a target created in the caller's transaction (a new tenant
 * schema), sending its DDL in as few round trips as the migrations allow: `before` (the
 * statements creating the target), the opening (role, search path, every ledger row: the
 * ledger of a target nobody else can see yet is empty, so nothing is read and no lock is
 * taken), every declared table and index, and `after`, all in one batch. A migration's
 * `m.query()` returns rows, so it goes out when called, with what waits before it (one
 * round trip each); with values, after it. A failure in a batch names the migrations
 * whose statements it held. `transaction: false` migrations run inline.
 *
 * @example
 * ```ts
 * await applyChainToNewTarget(client, target, ['CREATE SCHEMA t_1 AUTHORIZATION app_owner'], `RESET ROLE; ${progress}`);
 * ```
 */
export async function applyChainToNewTarget(
  client: ClientBase,
  options: MigrationTarget,
  before: readonly string[],
  after: string,
): Promise<MigrationReport> {
  const { chain, target, schema, ownerRole, migrations } = options;
  const values = migrations.map((m) => `(${quoteLiteral(chain)}, ${quoteLiteral(target)}, ${quoteLiteral(m.id)})`);
  const held: string[] = [
    ...before,
    `SET LOCAL ROLE ${quoteIdent(ownerRole)}`,
    `SET LOCAL search_path = ${quoteIdent(schema)}, pg_catalog`,
    ...(values.length > 0 ? [`INSERT INTO tenantry.migrations (chain, target, id) VALUES ${values.join(', ')}`] : []),
  ];
  /** Migrations with statements in the batch, to name in an error. */
  const heldBy = new Set<string>();
  let current = '';
  const send = async (text: string, textValues?: readonly unknown[]) => {
    const names = [...new Set([...heldBy, current])].filter((id) => id !== '');
    try {
      let batch = text;
      if (held.length > 0 && textValues) await client.query(held.join(';\n'));
      // The held statements go first; a marker row tells where the caller's results begin.
      else if (held.length > 0) batch = `${held.join(';\n')};\nSELECT 1 AS ${BATCH_MARK};\n${text}`;
      held.length = 0;
      heldBy.clear();
      const result = (await client.query(batch, textValues ? [...textValues] : undefined)) as unknown as
        | QueryResult
        | QueryResult[];
      if (!Array.isArray(result) || batch === text) return result;
      const own = result.slice(result.findIndex((r) => r.fields?.[0]?.name === BATCH_MARK) + 1);
      return own.length === 1 ? (own[0] as QueryResult) : own;
    } catch (cause) {
      throw new TenantryError('MIGRATION_FAILED', `${chain} migration ${names.join(', ')} on ${target}`, { cause });
    }
  };
  const sink: StatementSink = {
    query: (text, queryValues) => send(text, queryValues),
    ddl: async (statements) => {
      held.push(...statements);
      heldBy.add(current);
    },
  };
  const context = migrationContext(client, options, true, sink);
  for (const migration of migrations) {
    current = migration.id;
    try {
      await migration.up(context);
    } catch (cause) {
      if (cause instanceof TenantryError && cause.code === 'MIGRATION_FAILED') throw cause;
      throw new TenantryError('MIGRATION_FAILED', `${chain} migration ${migration.id} on ${target}`, { cause });
    }
  }
  current = '';
  await send(after);
  return Object.freeze({ chain, target, applied: Object.freeze(migrations.map((m) => m.id)) });
}
