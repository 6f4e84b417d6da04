import type { ClientBase, Pool, PoolClient, QueryResult } from 'pg';
import { applyPendingMigrations, type MigrationTarget } from '../migrate/runner.ts';
import { recordProgress, type TargetState } from '../tiers/targets.ts';
import type { FleetDeps, FleetPlan, FleetTarget } from './fleet-plan.ts';

/** What migrating one target needs from its run: the run's own pool, the plan, the lock timeout. */
export interface TargetRun {
  readonly deps: FleetDeps;
  readonly pool: Pool;
  readonly plan: FleetPlan;
  readonly lockTimeoutMs: number;
}

/** Migrates one target; 'skipped' when it turned out to be at head, gone or retiring. */
export async function migrateTarget(run: TargetRun, entry: FleetTarget): Promise<'migrated' | 'skipped'> {
  const { config, placements, provisioner } = run.deps;
  const { head, version } = run.plan;
  const placement = await placements.resolve(entry.placementId);
  const main: PoolClient = await run.pool.connect();
  let failure: unknown;
  try {
    // The row lock first, then the migration lock: the order placeSchema() takes them in
    // when it claims a warm schema (its SKIP LOCKED then passes over this one). One round
    // trip for the three statements: a run's time is mostly round trips (bench/fleet.ts).
    const opened = (await main.query(
      `BEGIN; SET LOCAL lock_timeout = ${run.lockTimeoutMs};
       SELECT applied_count, state FROM tenantry.targets WHERE id = ${main.escapeLiteral(entry.target)} FOR UPDATE`,
    )) as unknown as QueryResult<{ applied_count: number; state: TargetState }>[];
    const row = opened[2]?.rows[0];
    const stale = row
      ? (row.state !== 'active' && row.state !== 'warm') || row.applied_count >= head
      : entry.kind !== 'shared';
    if (stale) {
      await main.query('ROLLBACK');
      return 'skipped';
    }
    // Progress is recorded before the migrations run, in the same uncommitted transaction:
    // it commits with them or not at all, and it runs as the admin (the control plane is
    // not the owner role's, which the migrations switch to until COMMIT).
    if (entry.kind === 'shared') await provisioner.ensureSharedTarget(main, head, version);
    else await recordProgress(main, entry.target, head, version);
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
    };
    if (placement.url === undefined && entry.databaseName === null) {
      await applyPendingMigrations(main, target);
    } else {
      // A connection of its own, closed at once: CREATE DATABASE … TEMPLATE refuses to
      // copy a template anyone is connected to. Its commit comes first; a kill before ours
      // leaves the count behind, and the next run finds nothing to apply there.
      const conn = await provisioner.adminConnection(placement, entry.databaseName);
      try {
        await migrateElsewhere(conn.client, target, entry.kind === 'database', run.lockTimeoutMs);
      } finally {
        await conn.release();
      }
    }
    await main.query('COMMIT');
    return 'migrated';
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
 * transaction there. A tenant database copied from a template starts with the template's
 * ledger rows, recorded under the template's target id: they are adopted first (in the
 * same transaction), or the copy would look unmigrated and replay its first migration.
 */
async function migrateElsewhere(
  client: ClientBase,
  target: MigrationTarget,
  copiedFromTemplate: boolean,
  lockTimeoutMs: number,
): Promise<void> {
  await client.query(`SET lock_timeout = ${lockTimeoutMs}; BEGIN`); // a connection of this run's own
  try {
    if (copiedFromTemplate) {
      await client.query(
        `UPDATE tenantry.migrations l SET target = $1
          WHERE l.chain = 'tenant' AND l.target LIKE 'template/%'
            AND NOT EXISTS (SELECT 1 FROM tenantry.migrations o WHERE o.chain = 'tenant' AND o.target = $1 AND o.id = l.id)`,
        [target.target],
      );
    }
    await applyPendingMigrations(client, target);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
