import type { ClientBase, Pool } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import { enterContext } from '../context/enter-context.ts';
import type { IsolationTier } from '../context/tenant-context.ts';
import { notifyTenantChanged } from '../control/change-feed.ts';
import type { PlacementRegistry, ResolvedPlacement } from '../control/placements.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import type { TenantRegistry } from '../control/tenant-registry.ts';
import { listTenantTables, purgeStatements } from '../control/tenant-tables.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { TenantRouter } from '../transaction/connection-router.ts';
import type { PoolMap } from '../transaction/pool-map.ts';
import type { AdminConnection } from './admin-connection.ts';
import { assertMovable, withMoveLock } from './move-lock.ts';
import type { Provisioner } from './provisioner.ts';
import { type TargetRecord, type TargetRow, toTarget } from './targets.ts';
import { copyTenantTable, type MovedTable } from './tenant-copy.ts';

/** Options of `tenantry.moveTenant()`. */
export interface MoveOptions {
  /** The tier to move to. */
  readonly to: IsolationTier;
  /** Destination placement name; default `shared`, `schemas` or `databases` by tier. */
  readonly placement?: string;
  /** Recorded in the audit log; default `system`. */
  readonly actor?: string;
  /** Longest wait for in-flight writes to finish once the tenant is frozen (default 30 s). */
  readonly drainTimeoutMs?: number;
  /** Rows per batch when copying (default 1,000). */
  readonly batchSize?: number;
}

/** What a move did. */
export interface MoveReport {
  readonly tenantId: string;
  readonly from: { readonly tier: IsolationTier; readonly placement: string };
  readonly to: { readonly tier: IsolationTier; readonly placement: string };
  readonly tables: readonly MovedTable[];
  /** How long the tenant was read-only. */
  readonly frozenMs: number;
  readonly durationMs: number;
}

/** Where a copy of a tenant's rows is: a database (an admin connection to it) and a schema in it. */
interface Side {
  readonly tier: IsolationTier;
  readonly placement: ResolvedPlacement;
  readonly database: string | null;
  readonly schema: string;
  /** The target holding it (`undefined`: the shared tables). */
  readonly target: TargetRecord | undefined;
}

/** What the mover needs from `Tenantry`. */
export interface TenantMoverDeps {
  readonly admin: Pool;
  readonly config: ResolvedConfig;
  readonly contextKey: Buffer;
  readonly tenants: TenantRegistry;
  readonly placements: PlacementRegistry;
  readonly provisioner: Provisioner;
  readonly poolMap: PoolMap;
}

const DEFAULT_PLACEMENT = { pool: 'shared', schema: 'schemas', database: 'databases' } as const;

/**
 * Moves a tenant between tiers and placements without losing or duplicating a write:
 *
 * 1. the destination is provisioned at head (a schema or a database; the shared tables
 *    for the pool tier);
 * 2. the tenant is **frozen**: `enter()` makes its new transactions read-only (writes fail
 *    with the retryable `TENANT_MOVING`), and the mover takes the tenant's advisory lock
 *    exclusively in the source database, which waits for every in-flight write to end;
 * 3. its rows are copied table by table, parents first, inside the tenant's verified
 *    maintenance context on both sides, then each table's row count and checksum are
 *    compared; any difference aborts the move and unfreezes the tenant;
 * 4. the switch is one control-plane transaction (placement, schema, database, unfrozen,
 *    audited, announced); a stale route to the old copy is refused by `enter()` there
 *    (`TENANT_MOVED`, or read-only until it is dropped);
 * 5. the old copy is removed.
 */
export class TenantMover {
  readonly #deps: TenantMoverDeps;

  constructor(deps: TenantMoverDeps) {
    this.#deps = deps;
  }

  async move(ref: string, options: MoveOptions): Promise<MoveReport> {
    const deps = this.#deps;
    const started = Date.now();
    if (!options || !['pool', 'schema', 'database'].includes(options.to)) {
      throw new TenantryError('INVALID_INPUT', 'to: must be pool, schema or database');
    }
    const batchSize = options.batchSize ?? 1000;
    const tenant = await deps.tenants.get(ref);
    assertMovable(tenant);
    const placement = await deps.placements
      .resolveByName(options.placement ?? DEFAULT_PLACEMENT[options.to])
      .catch(() => {
        throw new TenantryError('INVALID_INPUT', 'placement: no such placement');
      });
    if (placement.tier !== options.to) {
      throw new TenantryError('INVALID_INPUT', `placement: ${placement.name} is a ${placement.tier}-tier placement`);
    }
    if (placement.id === tenant.placementId && options.to === 'pool') {
      throw new TenantryError('INVALID_INPUT', 'the tenant is already there');
    }
    const lock = await deps.admin.connect();
    try {
      return await withMoveLock(lock, tenant.id, () => this.#move(tenant, placement, options, batchSize, started));
    } finally {
      lock.release();
    }
  }

  async #move(
    tenant: TenantRecord,
    placement: ResolvedPlacement,
    options: MoveOptions,
    batchSize: number,
    started: number,
  ): Promise<MoveReport> {
    const deps = this.#deps;
    const source = await this.#sourceOf(tenant);
    const destination = await this.#provision(tenant, placement, options.to);
    let frozenAt = 0;
    let switched = false;
    try {
      frozenAt = Date.now();
      await this.#setFrozen(tenant, true);
      await this.#drain(tenant, source, options.drainTimeoutMs ?? 30_000);
      const tables = await this.#copy(tenant, source, destination, batchSize);
      await this.#switch(tenant, source, destination, options.actor ?? 'system', tables);
      switched = true;
      const frozenMs = Date.now() - frozenAt;
      await this.#removeOld(tenant, source);
      return Object.freeze({
        tenantId: tenant.id,
        from: { tier: tenant.tier, placement: source.placement.name },
        to: { tier: options.to, placement: placement.name },
        tables,
        frozenMs,
        durationMs: Date.now() - started,
      });
    } catch (error) {
      if (!switched) {
        if (frozenAt) await this.#setFrozen(tenant, false).catch(() => {});
        if (destination.target) await deps.provisioner.dropTarget(destination.target.id).catch(() => {});
      }
      throw error;
    }
  }

  async #sourceOf(tenant: TenantRecord): Promise<Side> {
    const deps = this.#deps;
    const placement = await deps.placements.resolve(tenant.placementId);
    if (tenant.tier === 'pool') {
      return { tier: 'pool', placement, database: null, schema: deps.config.tenantSchema, target: undefined };
    }
    const { rows } = await deps.admin.query<{ id: string }>('SELECT id FROM tenantry.targets WHERE tenant_id = $1', [
      tenant.id,
    ]);
    const target = rows[0] ? await this.#target(rows[0].id) : undefined;
    if (!target) throw new TenantryError('INTERNAL', 'the tenant has no target row');
    return { tier: tenant.tier, placement, database: target.databaseName, schema: target.schemaName, target };
  }

  async #target(id: string): Promise<TargetRecord | undefined> {
    const { rows } = await this.#deps.admin.query<TargetRow>('SELECT * FROM tenantry.targets WHERE id = $1', [id]);
    return rows[0] ? toTarget(rows[0]) : undefined;
  }

  async #provision(tenant: TenantRecord, placement: ResolvedPlacement, tier: IsolationTier): Promise<Side> {
    const deps = this.#deps;
    if (tier === 'pool') {
      // The shared tables must have every table the tenant's rows are copied into.
      const shared = await this.#target('shared');
      if (!shared || shared.appliedCount < deps.provisioner.head) {
        throw new TenantryError(
          'INVALID_TENANT_STATE',
          'the shared tables are behind the tenant migrations: run `tenantry migrate` first',
        );
      }
      return { tier, placement, database: null, schema: deps.config.tenantSchema, target: undefined };
    }
    if (tier === 'schema') {
      const target = await deps.provisioner.reserveSchema(placement);
      return { tier, placement, database: null, schema: target.schemaName, target };
    }
    const placed = await deps.provisioner.createDatabase(tenant.id, placement, tenant.limits.statementTimeoutMs);
    const target = (await this.#target(placed.targetId)) as TargetRecord;
    return { tier, placement, database: target.databaseName, schema: target.schemaName, target };
  }

  /** Freezes or thaws the tenant where `enter()` reads it: the main row and its database's mirror. */
  async #setFrozen(tenant: TenantRecord, frozen: boolean): Promise<void> {
    const deps = this.#deps;
    await deps.admin.query('UPDATE tenantry.tenants SET frozen = $2, updated_at = now() WHERE id = $1', [
      tenant.id,
      frozen,
    ]);
    if (tenant.databaseName !== null) await deps.provisioner.syncMirror({ ...tenant, frozen });
    await notifyTenantChanged(deps.admin, tenant.id);
  }

  /** Waits, in the source database, for every tenant transaction that began before the freeze. */
  async #drain(tenant: TenantRecord, source: Side, timeoutMs: number): Promise<void> {
    const conn = await this.#connect(source);
    try {
      await conn.client.query('BEGIN');
      await conn.client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
      await conn.client.query("SELECT pg_advisory_xact_lock(hashtextextended('tenantry:tenant:' || $1, 0))", [
        tenant.id,
      ]);
      await conn.client.query('COMMIT');
    } catch (error) {
      await conn.client.query('ROLLBACK').catch(() => {});
      // 55P03 lock_not_available: the lock timeout; anything else keeps its own meaning.
      if ((error as { code?: string }).code !== '55P03') throw error;
      throw new TenantryError('INVALID_TENANT_STATE', 'in-flight writes did not finish in time; the move was undone', {
        cause: error,
      });
    } finally {
      await conn.release();
    }
  }

  #connect(side: Side): Promise<AdminConnection> {
    return this.#deps.provisioner.adminConnection(side.placement, side.database);
  }

  /** Enters the tenant's verified maintenance context on an admin connection (RLS applies to non-superusers). */
  async #enter(client: ClientBase, tenantId: string): Promise<void> {
    const { config, contextKey } = this.#deps;
    await enterContext(client, 'maintenance', tenantId, {
      contextKey,
      dialect: config.dialect,
      sharedSchema: config.tenantSchema,
      tokenTtlMs: config.contextTokenTtlMs,
      binding: 'session', // admin connections are direct
    });
  }

  async #copy(tenant: TenantRecord, source: Side, destination: Side, batchSize: number): Promise<MovedTable[]> {
    const src = await this.#connect(source);
    const dst = await this.#connect(destination);
    try {
      // Read-only only once the context is entered: a session's first enter() creates its
      // context registers, which a read-only transaction could not.
      await src.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await this.#enter(src.client, tenant.id);
      await src.client.query('SET TRANSACTION READ ONLY');
      await dst.client.query('BEGIN');
      await this.#enter(dst.client, tenant.id);
      // Children first in the listing: copy in reverse, parents before the rows pointing at them.
      const tables = (await listTenantTables(src.client, [source.schema])).reverse();
      const moved: MovedTable[] = [];
      for (const table of tables) {
        moved.push(await copyTenantTable(tenant.id, src.client, dst.client, table, destination.schema, batchSize));
      }
      await dst.client.query('COMMIT');
      await src.client.query('COMMIT');
      return moved;
    } catch (error) {
      await dst.client.query('ROLLBACK').catch(() => {});
      await src.client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await src.release();
      await dst.release();
    }
  }

  async #switch(
    tenant: TenantRecord,
    source: Side,
    destination: Side,
    actor: string,
    tables: readonly MovedTable[],
  ): Promise<void> {
    const deps = this.#deps;
    const client = await deps.admin.connect();
    try {
      await client.query('BEGIN');
      if (source.target) {
        await client.query(
          `UPDATE tenantry.targets SET state = 'retiring', tenant_id = NULL, updated_at = now() WHERE id = $1`,
          [source.target.id],
        );
      }
      if (destination.target) await deps.provisioner.activate(client, destination.target.id, tenant.id);
      await client.query(
        `UPDATE tenantry.tenants SET tier = $2, placement_id = $3, schema_name = $4, database_name = $5,
           data_here = $6, frozen = false, updated_at = now() WHERE id = $1`,
        [
          tenant.id,
          destination.tier,
          destination.placement.id,
          destination.tier === 'schema' ? destination.schema : null,
          destination.database,
          destination.database === null,
        ],
      );
      await notifyTenantChanged(client, tenant.id);
      await writeAudit(client, {
        actor,
        tenantId: tenant.id,
        action: 'tenant.moved',
        details: {
          from: { tier: source.tier, placement: source.placement.name },
          to: { tier: destination.tier, placement: destination.placement.name },
          tables: tables.map((t) => ({ table: t.table, rows: t.rows })),
        },
      });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
    if (destination.database !== null) {
      await deps.provisioner.syncMirror(await deps.tenants.get(tenant.id));
    }
  }

  /** Removes the old copy: the tenant's rows from the shared tables, or its old schema or database. */
  async #removeOld(tenant: TenantRecord, source: Side): Promise<void> {
    const deps = this.#deps;
    if (source.target) {
      if (source.database !== null) {
        // Stale routes there get TENANT_MOVED until the database is gone.
        const conn = await this.#connect(source);
        try {
          await conn.client.query('UPDATE tenantry.tenants SET data_here = false WHERE id = $1', [tenant.id]);
        } finally {
          await conn.release();
        }
        await deps.poolMap.closePool(TenantRouter.key(source.placement.id, source.database));
      }
      await deps.provisioner.dropTarget(source.target.id);
      return;
    }
    const conn = await this.#connect(source);
    try {
      await conn.client.query('BEGIN');
      await this.#enter(conn.client, tenant.id);
      const tables = await listTenantTables(conn.client, [source.schema]);
      for (const statement of purgeStatements(tables)) await conn.client.query(statement, [tenant.id]);
      await conn.client.query('COMMIT');
    } catch (error) {
      await conn.client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await conn.release();
    }
  }
}
