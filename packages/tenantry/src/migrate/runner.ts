import type { ClientBase } from 'pg';
import type { ContextDialect } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { MigrationContext, TenantMigration } from '../schema/migration.ts';
import { tenantTableSql } from '../schema/tenant-table.ts';
import { quoteIdent } from '../sql.ts';

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
 * `ROLE` and `search_path` changed until the transaction ends.
 */
export async function applyPendingMigrations(client: ClientBase, options: MigrationTarget): Promise<MigrationReport> {
  const { chain, target, schema, ownerRole, migrations } = options;
  await client.query(`SET LOCAL ROLE ${quoteIdent(ownerRole)}`);
  await client.query(`SET LOCAL search_path = ${quoteIdent(schema)}, pg_catalog`);
  for (const setting of options.dialect.migrationSettings ?? []) await client.query(setting);
  await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tenantry:migrate:${chain}:${target}`]);
  const { rows } = await client.query<{ id: string }>(
    'SELECT id FROM tenantry.migrations WHERE chain = $1 AND target = $2',
    [chain, target],
  );
  const done = new Set(rows.map((r) => r.id));
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
    await client.query('INSERT INTO tenantry.migrations (chain, target, id) VALUES ($1, $2, $3)', [
      chain,
      target,
      migration.id,
    ]);
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

/** What a migration's `up()` gets, on `client`, inside a transaction or not. */
function migrationContext(client: ClientBase, options: MigrationTarget, inTransaction: boolean): MigrationContext {
  const { schema, runtimeRole, dialect, place } = options;
  return {
    schema,
    inTransaction,
    query: async (text, values) => {
      const result = await client.query(text, values ? [...values] : undefined);
      return { rows: Array.isArray(result) ? [] : result.rows };
    },
    tenantTable: async (definition) => {
      const statements = tenantTableSql(definition, {
        runtimeRole,
        dialect,
        ...(place !== undefined ? { place } : {}),
      });
      for (const statement of statements) await client.query(statement);
    },
    createIndex: async (index) => {
      const name = quoteIdent(index.name);
      const table = `${quoteIdent(schema)}.${quoteIdent(index.table)}`;
      const body = `${name} ON ${table} USING ${index.using ?? 'btree'} (${index.columns.join(', ')})${
        index.where ? ` WHERE ${index.where}` : ''
      }`;
      const unique = index.unique ? 'UNIQUE ' : '';
      if (inTransaction) {
        await client.query(`CREATE ${unique}INDEX IF NOT EXISTS ${body}`);
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
