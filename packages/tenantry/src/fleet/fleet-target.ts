import type { ClientBase, Pool, PoolClient, QueryResult } from 'pg';
import {
  applyNonTransactionalMigration,
  type MigrationReport,
  type MigrationTarget,
  openRunSql,
  runOpenedMigrations,
} from '../migrate/runner.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { quoteLiteral } from '../sql.ts';
import { recordProgressSql, sharedTargetSql, type TargetState } from '../tiers/targets.ts';
import type { FleetDeps, FleetPlan, FleetTarget } from './fleet-plan.ts';

/** What migrating one target needs from its run: the run's own pool, the plan, the lock timeout. */
export interface TargetRun {
  readonly deps: FleetDeps;
  readonly pool: Pool;
  readonly plan: FleetPlan;
  readonly lockTimeoutMs: number;
}

/**
 * Migrates one target; 'skipped' when it turned out to be at head, gone or retiring. A
 * `transaction: false` migration is run after the transactional ones before it committed,
 * outside a transaction, and then the rest in a new one.
 */
export async function migrateTarget(run: TargetRun, entry: FleetTarget): Promise<'migrated' | 'skipped'> {
  let outcome = await migrateInTransaction(run, entry);
  while (outcome !== 'migrated' && outcome !== 'skipped') {
    const { deferred, target, inMain } = outcome;
    const migration = run.deps.config.migrations.find((m) => m.id === deferred) as TenantMigration;
    const conn = inMain
      ? await run.pool.connect().then((c) => ({ client: c, release: async () => c.release() }))
      : await run.deps.provisioner.adminConnection(
          await run.deps.placements.resolve(entry.placementId),
          entry.databaseName,
        );
    try {
      await applyNonTransactionalMigration(conn.client, target, migration);
    } finally {
      await conn.release();
    }
    outcome = await migrateInTransaction(run, entry);
    if (outcome === 'skipped') return 'migrated'; // the non-transactional one was the last
  }
  return outcome;
}

type InTransactionOutcome = 'migrated' | 'skipped' | { deferred: string; target: MigrationTarget; inMain: boolean };

/**
 * One transaction on one target. In the main database that is three round trips plus the
 * migrations' own statements: the preamble (row lock, lock timeout, role, search path,
 * advisory lock, ledger read and ledger rows: {@link openRunSql}) in one batch, the
 * migrations, and the epilogue (progress and `COMMIT`) in one batch. Each batch is a
 * simple query: PostgreSQL runs its statements in order and stops at the first error,
 * which leaves the transaction aborted, and it is rolled back.
 */
async function migrateInTransaction(run: TargetRun, entry: FleetTarget): Promise<InTransactionOutcome> {
  const { config, placements, provisioner } = run.deps;
  const { head, version } = run.plan;
  const placement = await placements.resolve(entry.placementId);
  const inMain = placement.url === undefined && entry.databaseName === null;
  const target: MigrationTarget = {
    chain: 'tenant',
    target: entry.target,
    schema: entry.schemaName,
    ownerRole: config.roles.owner,
    runtimeRole: config.roles.runtime,
    dialect: config.dialect,
    migrations: config.migrations,
    // A schema-tier copy's policies accept only its own tenant; the shared tables and a
    // tenant database's accept tenants outside the schema tier.
    place: entry.kind === 'schema' ? entry.schemaName : '',
    // A live target: a `transaction: false` migration runs after this commit, outside it.
    nonTransactional: 'defer',
  };
  const main: PoolClient = await run.pool.connect();
  let failure: unknown;
  try {
    // The row lock first, then the migration lock: the order placeSchema() takes them in
    // when it claims a warm schema (its SKIP LOCKED then passes over this one).
    const opened = (await main.query(
      `BEGIN; SET LOCAL lock_timeout = ${run.lockTimeoutMs};
       SELECT applied_count, state FROM tenantry.targets WHERE id = ${quoteLiteral(entry.target)} FOR UPDATE;
       ${inMain ? openRunSql(target) : 'SELECT 1'}`,
    )) as unknown as QueryResult[];
    const row = (opened[2] as QueryResult<{ applied_count: number; state: TargetState }>).rows[0];
    const stale = row
      ? (row.state !== 'active' && row.state !== 'warm') || row.applied_count >= head
      : entry.kind !== 'shared';
    if (stale) {
      await main.query('ROLLBACK');
      return 'skipped';
    }
    // Progress is recorded in the same uncommitted transaction as the migrations (in the
    // main database): it commits with them or not at all. It runs as the admin (the control
    // plane is not the owner role's): after RESET ROLE in the main database, or, for another
    // database, after the migrations committed there.
    const progressSql = (report: MigrationReport) => {
      const count = report.deferred ? config.migrations.findIndex((m) => m.id === report.deferred) : head;
      const at = count === head ? version : (config.migrations[count - 1]?.id ?? null);
      return entry.kind === 'shared'
        ? sharedTargetSql(config.tenantSchema, count, at)
        : recordProgressSql(entry.target, count, at);
    };
    let report: MigrationReport;
    if (inMain) {
      report = await runOpenedMigrations(main, target, opened);
    } else {
      // A connection of its own, closed at once: CREATE DATABASE … TEMPLATE refuses to
      // copy a template anyone is connected to. Its commit comes first; a kill before ours
      // leaves the count behind, and the next run finds nothing to apply there.
      const conn = await provisioner.adminConnection(placement, entry.databaseName);
      try {
        report = await migrateElsewhere(conn.client, target, entry.kind === 'database', run.lockTimeoutMs);
      } finally {
        await conn.release();
      }
    }
    await main.query(`${inMain ? 'RESET ROLE;' : ''} ${progressSql(report)}; COMMIT`);
    return report.deferred ? { deferred: report.deferred, target, inMain } : 'migrated';
  } catch (error) {
    failure = error;
    await main.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    // After an error the connection may be broken or mid-protocol: drop it, not reuse it.
    main.release(failure === undefined ? undefined : true);
  }
}

/**
 * Migrates a target in a database of its own (tenant database, template) in one
 * transaction there: the opening in one round trip, the migrations, `COMMIT`. A tenant
 * database copied from a template starts with the template's ledger rows, recorded under
 * the template's target id: they are adopted first (in the same transaction), or the copy
 * would look unmigrated and replay its first migration.
 */
async function migrateElsewhere(
  client: ClientBase,
  target: MigrationTarget,
  copiedFromTemplate: boolean,
  lockTimeoutMs: number,
): Promise<MigrationReport> {
  const id = quoteLiteral(target.target);
  const adopt = copiedFromTemplate
    ? `UPDATE tenantry.migrations l SET target = ${id}
        WHERE l.chain = 'tenant' AND l.target LIKE 'template/%'
          AND NOT EXISTS (SELECT 1 FROM tenantry.migrations o WHERE o.chain = 'tenant' AND o.target = ${id} AND o.id = l.id);`
    : '';
  try {
    // A connection of this run's own: the session-level lock timeout ends with it.
    const opened = (await client.query(
      `SET lock_timeout = ${lockTimeoutMs}; BEGIN; ${adopt} ${openRunSql(target)}`,
    )) as unknown as QueryResult[];
    const report = await runOpenedMigrations(client, target, opened);
    await client.query('COMMIT');
    return report;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
