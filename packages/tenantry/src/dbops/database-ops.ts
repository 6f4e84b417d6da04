import type { Pool } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import type { PlacementRegistry } from '../control/placements.ts';
import type { TenantRegistry } from '../control/tenant-registry.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { AdminConnection } from '../tiers/admin-connection.ts';
import type { Provisioner } from '../tiers/provisioner.ts';
import type { PoolMap } from '../transaction/pool-map.ts';
import { type DatabaseHealth, databaseHealth, type HealthThresholds } from './db-health.ts';
import { type DatabaseStats, databaseStats } from './db-stats.ts';
import { type FleetMaintenanceOptions, type FleetMaintenanceReport, maintainFleet } from './fleet-maintenance.ts';
import { adviseIndexes, type IndexAdvice, type IndexAdviceOptions } from './index-advice.ts';
import {
  type MaintenanceReport,
  type MaintenanceRequest,
  type MaintenanceTarget,
  runMaintenance,
} from './maintenance.ts';
import { type SlowQueryOptions, type SlowQueryReport, slowQueries } from './slow-queries.ts';

/** The parts of a `Tenantry` the database reports and maintenance use. */
export interface DatabaseOpsDeps {
  readonly config: ResolvedConfig;
  readonly admin: Pool;
  readonly poolMap: PoolMap;
  readonly placements: PlacementRegistry;
  readonly provisioner: Provisioner;
  readonly tenants: TenantRegistry;
}

/**
 * Database operations of an installation (`tenantry.dbops`): health, statistics, slow
 * statements and index advice on the main database, and audited, one-at-a-time,
 * cancellable maintenance on the shared tables, one tenant's schema or database, or the
 * whole fleet. See docs/operations.md#database-health-and-maintenance.
 *
 * @example
 * ```ts
 * const health = await tenantry.dbops.health();
 * await tenantry.dbops.maintain({ operation: 'vacuum', tables: ['items'], actor: 'cli:ops' });
 * await tenantry.dbops.maintainFleet({ operation: 'analyze', actor: 'cli:ops' }, { concurrency: 4 });
 * ```
 */
export class DatabaseOps {
  readonly #deps: DatabaseOpsDeps;

  constructor(deps: DatabaseOpsDeps) {
    this.#deps = deps;
  }

  /** See {@link databaseHealth}; includes the pool map's gauges. */
  health(thresholds?: HealthThresholds): Promise<DatabaseHealth> {
    return databaseHealth(this.#deps.admin, {
      poolMap: this.#deps.poolMap.stats(),
      ...(thresholds ? { thresholds } : {}),
    });
  }

  /** See {@link databaseStats}; default: the tenant schema. */
  stats(options: { schemas?: readonly string[] } = {}): Promise<DatabaseStats> {
    return databaseStats(this.#deps.admin, { schemas: options.schemas ?? [this.#deps.config.tenantSchema] });
  }

  /** See {@link slowQueries}. */
  slowQueries(options: SlowQueryOptions = {}): Promise<SlowQueryReport> {
    return slowQueries(this.#deps.admin, options);
  }

  /** See {@link adviseIndexes}; default search path: the tenant schema. */
  adviseIndexes(options: IndexAdviceOptions = {}): Promise<IndexAdvice> {
    return adviseIndexes(this.#deps.admin, { schemas: [this.#deps.config.tenantSchema], ...options });
  }

  /**
   * Runs a maintenance operation (see {@link runMaintenance}) on the shared tables, or on
   * the schema or database of `tenant` (id or slug; a pool-tier tenant's rows are in the
   * shared tables).
   */
  async maintain(request: MaintenanceRequest & { tenant?: string }): Promise<MaintenanceReport> {
    const { tenant, ...rest } = request;
    const { config, admin, placements, provisioner } = this.#deps;
    let target: MaintenanceTarget = { id: 'shared', schema: config.tenantSchema, tenantId: null, main: true };
    let connect = async (): Promise<AdminConnection> => {
      const client = await admin.connect();
      return { client, release: async () => client.release() };
    };
    if (tenant !== undefined) {
      const record = await this.#deps.tenants.get(tenant);
      const { rows } = await admin.query<{
        id: string;
        placement_id: string;
        database_name: string | null;
        schema_name: string;
      }>(
        `SELECT id, placement_id, database_name, schema_name FROM tenantry.targets
          WHERE tenant_id = $1 AND state = 'active' AND kind IN ('schema', 'database')`,
        [record.id],
      );
      const row = rows[0];
      if (!row) {
        throw new TenantryError(
          'INVALID_INPUT',
          `tenant ${record.slug} is in the pool tier: its rows are in the shared tables`,
        );
      }
      const placement = await placements.resolve(row.placement_id);
      target = {
        id: row.id,
        schema: row.schema_name,
        tenantId: record.id,
        main: placement.url === undefined && row.database_name === null,
      };
      connect = () => provisioner.adminConnection(placement, row.database_name);
    }
    return runMaintenance(
      { admin, connect, ownerRole: config.roles.owner, runtimeRole: config.roles.runtime },
      target,
      rest,
    );
  }

  /** See {@link maintainFleet}: every tenant schema and database, bounded concurrency. */
  maintainFleet(request: MaintenanceRequest, options: FleetMaintenanceOptions = {}): Promise<FleetMaintenanceReport> {
    const { config, admin, placements, provisioner } = this.#deps;
    return maintainFleet({ config, admin, placements, provisioner }, request, options);
  }
}
