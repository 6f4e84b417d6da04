import type { Pool } from 'pg';
import type { TenantContext } from '../context/tenant-context.ts';
import type { TenantPurge } from '../control/tenant-placer.ts';
import { contextOf, type TenantRecord } from '../control/tenant-record.ts';
import { listTenantTables, purgeStatements } from '../control/tenant-tables.ts';
import { TenantRouter } from '../transaction/connection-router.ts';
import type { PoolMap } from '../transaction/pool-map.ts';
import type { TenantTransaction } from '../transaction/tenant-transaction.ts';
import type { Provisioner } from './provisioner.ts';

/** Runs Tenantry's own work on a tenant in any status (a maintenance transaction). */
export type MaintenanceRunner = <T>(tenant: TenantContext, fn: (tx: TenantTransaction) => Promise<T>) => Promise<T>;

/** What the purger is built from. */
export interface TenantPurgerDeps {
  readonly admin: Pool;
  /** Schema of the shared tables (pool tier). */
  readonly sharedSchema: string;
  readonly poolMap: PoolMap;
  readonly provisioner: Provisioner;
  readonly maintenance: MaintenanceRunner;
}

/**
 * What deleting a tenant removes: a schema- or database-tier tenant's schema or database as
 * a whole (its pool closed first); a pool-tier tenant's rows, table by table in foreign-key
 * order, inside one maintenance transaction of that tenant (RLS scopes every `DELETE`).
 */
export class TenantPurger implements TenantPurge {
  readonly #deps: TenantPurgerDeps;

  constructor(deps: TenantPurgerDeps) {
    this.#deps = deps;
  }

  async purge(tenant: TenantRecord): Promise<Record<string, number>> {
    const { admin, sharedSchema, poolMap, provisioner, maintenance } = this.#deps;
    if (tenant.tier !== 'pool') {
      if (tenant.databaseName) await poolMap.closePool(TenantRouter.key(tenant.placementId, tenant.databaseName));
      await provisioner.dropTenantTargets(tenant.id);
      return {};
    }
    const tables = await listTenantTables(admin, [sharedSchema]);
    const statements = purgeStatements(tables);
    return maintenance(contextOf(tenant), async (tx) => {
      const deleted: Record<string, number> = {};
      // Triggers may write to a table already emptied (a usage counter, say): go again
      // until a pass deletes nothing, a bounded number of times.
      for (let pass = 0; pass < 3; pass++) {
        let removed = 0;
        for (const [i, statement] of statements.entries()) {
          const t = tables[i] as { schema: string; table: string };
          const n = (await tx.query(statement, [tenant.id])).rowCount;
          deleted[`${t.schema}.${t.table}`] = (deleted[`${t.schema}.${t.table}`] ?? 0) + n;
          removed += n;
        }
        if (removed === 0) break;
      }
      return deleted;
    });
  }
}
