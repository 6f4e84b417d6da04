import { integerOption } from '../config.ts';
import type { FleetDeps } from '../fleet/fleet-plan.ts';
import { eachLimited, FLEET_MAX_CONCURRENCY } from '../fleet/fleet-run.ts';
import {
  type MaintenanceReport,
  type MaintenanceRequest,
  type MaintenanceTarget,
  runMaintenance,
} from './maintenance.ts';

/** Options of {@link maintainFleet}. */
export interface FleetMaintenanceOptions {
  /** Targets worked on at once, each on a connection of its own (default 2, at most 64). */
  readonly concurrency?: number;
  /** Which tiers (default both): tenant schemas, tenant databases. */
  readonly tiers?: readonly ('schema' | 'database')[];
  /** Called after each target (and once before the first). */
  readonly onTarget?: (done: number, total: number, failed: number) => void;
}

/** What {@link maintainFleet} did. */
export interface FleetMaintenanceReport {
  readonly total: number;
  readonly completed: readonly MaintenanceReport[];
  readonly failed: readonly { readonly target: string; readonly error: string }[];
  /** Not started because the run was cancelled. */
  readonly skipped: number;
  readonly durationMs: number;
}

interface TargetRow {
  id: string;
  kind: 'schema' | 'database';
  tenant_id: string | null;
  placement_id: string;
  database_name: string | null;
  schema_name: string;
}

/**
 * Runs one maintenance operation on every active tenant schema and tenant database,
 * `concurrency` at a time (the fleet runner's concurrency model), each target under its
 * own lock and audited on its own (see {@link runMaintenance}). A failing target is
 * reported and the others go on; aborting `request.signal` cancels the running targets and
 * starts no more.
 *
 * @example
 * ```ts
 * const report = await maintainFleet(deps, { operation: 'analyze', actor: 'cli:ops' }, { concurrency: 4 });
 * for (const f of report.failed) console.error(f.target, f.error);
 * ```
 */
export async function maintainFleet(
  deps: FleetDeps,
  request: MaintenanceRequest,
  options: FleetMaintenanceOptions = {},
): Promise<FleetMaintenanceReport> {
  const started = performance.now();
  const concurrency = integerOption(options.concurrency, 2, 1, FLEET_MAX_CONCURRENCY, 'concurrency', 'INVALID_INPUT');
  const tiers = options.tiers?.length ? [...options.tiers] : ['schema', 'database'];
  const { rows } = await deps.admin.query<TargetRow>(
    `SELECT id, kind, tenant_id, placement_id, database_name, schema_name FROM tenantry.targets
      WHERE state = 'active' AND kind = ANY($1) ORDER BY id`,
    [tiers],
  );
  const completed: MaintenanceReport[] = [];
  const failed: { target: string; error: string }[] = [];
  let skipped = 0;
  options.onTarget?.(0, rows.length, 0);
  await eachLimited(rows, concurrency, async (row) => {
    if (request.signal?.aborted) {
      skipped++;
      return;
    }
    try {
      const placement = await deps.placements.resolve(row.placement_id);
      const main = placement.url === undefined && row.database_name === null;
      const target: MaintenanceTarget = { id: row.id, schema: row.schema_name, tenantId: row.tenant_id, main };
      const { onProgress: _, ...rest } = request; // per-target progress would interleave
      completed.push(
        await runMaintenance(
          {
            admin: deps.admin,
            connect: () => deps.provisioner.adminConnection(placement, row.database_name),
            ownerRole: deps.config.roles.owner,
            runtimeRole: deps.config.roles.runtime,
          },
          target,
          rest,
        ),
      );
    } catch (error) {
      failed.push({ target: row.id, error: (error as Error).message });
    }
    options.onTarget?.(completed.length + failed.length + skipped, rows.length, failed.length);
  });
  return Object.freeze({
    total: rows.length,
    completed: Object.freeze(completed),
    failed: Object.freeze(failed),
    skipped,
    durationMs: Math.round(performance.now() - started),
  });
}
