import type { ClientBase, Pool } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import { isCitus } from '../context/citus-dialect.ts';
import { enterContext } from '../context/enter-context.ts';
import { notifyTenantChanged } from '../control/change-feed.ts';
import type { TenantRegistry } from '../control/tenant-registry.ts';
import { listTenantTables, type TenantTableRef } from '../control/tenant-tables.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { qualified } from '../sql.ts';
import { assertMovable, withMoveLock } from './move-lock.ts';
import { copyableColumns, type MovedTable, primaryKey, tableChecksum } from './tenant-copy.ts';

/** Options of `tenantry.moveTenantShard()` (`tenantry tenants move <t> --to dedicated-shard|node`). */
export interface ShardMoveOptions {
  /** `dedicated-shard`: the tenant's rows get shards of their own; `node`: and those go to `node`. */
  readonly to: 'dedicated-shard' | 'node';
  /** The destination node as `host:port`, as Citus knows it (`pg_dist_node`); for `to: 'node'`. */
  readonly node?: string;
  /** Recorded in the audit log; default `system`. */
  readonly actor?: string;
  /** Longest wait for in-flight writes to finish once the tenant is frozen (default 30 s). */
  readonly drainTimeoutMs?: number;
}

/** Where a tenant's rows are on the cluster: a shard of the co-located tenant tables, on a node. */
export interface ShardPlace {
  readonly shardId: string;
  readonly node: string;
  /** The shard holds this tenant only (its hash range is one value). */
  readonly dedicated: boolean;
}

/** What a shard move did. */
export interface ShardMoveReport {
  readonly tenantId: string;
  readonly from: ShardPlace;
  readonly to: ShardPlace;
  /** Rows and checksum of every tenant table, the same before and after. */
  readonly tables: readonly MovedTable[];
  /** How long the tenant's writes were refused (`TENANT_MOVING`); reads went on throughout. */
  readonly frozenMs: number;
  readonly durationMs: number;
}

/** What the shard mover needs from `Tenantry`. */
export interface ShardMoverDeps {
  readonly admin: Pool;
  readonly config: ResolvedConfig;
  readonly contextKey: Buffer;
  readonly tenants: TenantRegistry;
}

/**
 * Tenant operations that Citus makes possible on the pool tier: isolate a tenant to shards
 * of its own (`isolate_tenant_to_new_shard`, co-located tables with it) and move those to
 * another node (`citus_move_shard_placement`), with the verification of every move:
 *
 * 1. the tenant is frozen (its transactions become read-only: writes get the retryable
 *    `TENANT_MOVING`, reads go on) and in-flight writers are waited for;
 * 2. the row count and checksum of each tenant table are taken in its maintenance context;
 * 3. Citus splits the shard and moves the tenant's new shards, copying with writes
 *    blocked (`block_writes`): Citus's logical mode would replicate as the tables' owner,
 *    which PostgreSQL refuses for tables with FORCEd row-level security. The other tenants
 *    of the split shard wait (their writes are delayed, not refused) while it is split;
 * 4. counts and checksums are taken again and must match; then the tenant is thawed, with an
 *    audit entry in the same transaction.
 *
 * The write freeze is the time from 1 to 4, reported as `frozenMs`.
 */
export class CitusShardMover {
  readonly #deps: ShardMoverDeps;

  constructor(deps: ShardMoverDeps) {
    this.#deps = deps;
  }

  async move(ref: string, options: ShardMoveOptions): Promise<ShardMoveReport> {
    const deps = this.#deps;
    const started = Date.now();
    if (!isCitus(deps.config.dialect)) {
      throw new TenantryError('USAGE_ERROR', "moving a tenant's shard needs dialect 'citus'");
    }
    if (!options || !['dedicated-shard', 'node'].includes(options.to)) {
      throw new TenantryError('INVALID_INPUT', 'to: must be dedicated-shard or node');
    }
    const tenant = await deps.tenants.get(ref);
    if (tenant.tier !== 'pool') {
      throw new TenantryError('INVALID_TENANT_STATE', 'only a pool-tier tenant has rows in distributed tables');
    }
    assertMovable(tenant);
    const target = options.to === 'node' ? await this.#node(options.node) : undefined;
    const lock = await deps.admin.connect();
    try {
      return await withMoveLock(lock, tenant.id, async () => {
        const tables = await this.#tables(lock);
        const anchor = tables[0];
        if (!anchor) throw new TenantryError('INVALID_TENANT_STATE', 'there is no distributed tenant table');
        const from = await this.placeOf(lock, anchor, tenant.id);
        let frozenAt = 0;
        try {
          frozenAt = Date.now();
          await this.#setFrozen(lock, tenant.id, true);
          await this.#drain(lock, tenant.id, options.drainTimeoutMs ?? 30_000);
          const before = await this.#checksums(tenant.id, tables);
          let place = from;
          if (!place.dedicated) {
            await lock.query(
              // block_writes: the logical mode would replicate into the new shards as the
              // tables' owner, which PostgreSQL refuses for tables with FORCEd row-level
              // security. The other tenants of the split shard wait (not fail) meanwhile.
              `SELECT isolate_tenant_to_new_shard($1::regclass, $2::uuid, 'CASCADE', shard_transfer_mode => 'block_writes')`,
              [qualified(anchor.schema, anchor.table), tenant.id],
            );
            place = await this.placeOf(lock, anchor, tenant.id);
          }
          if (target && place.node !== target.name) {
            const [host, port] = splitNode(place.node);
            await lock.query(
              `SELECT citus_move_shard_placement($1::int8, $2, $3, $4, $5, shard_transfer_mode => 'block_writes')`,
              [place.shardId, host, port, target.host, target.port],
            );
            place = await this.placeOf(lock, anchor, tenant.id);
          }
          const after = await this.#checksums(tenant.id, tables);
          for (const [i, b] of before.entries()) {
            const a = after[i];
            if (!a || a.rows !== b.rows || a.checksum !== b.checksum) {
              throw new TenantryError(
                'INVALID_TENANT_STATE',
                `verification failed for ${b.table} after the shard move`,
              );
            }
          }
          await this.#thaw(lock, tenant.id, options.actor ?? 'system', from, place, before);
          const frozenMs = Date.now() - frozenAt;
          return Object.freeze({
            tenantId: tenant.id,
            from,
            to: place,
            tables: before,
            frozenMs,
            durationMs: Date.now() - started,
          });
        } catch (error) {
          if (frozenAt) await this.#setFrozen(lock, tenant.id, false).catch(() => {});
          throw error;
        }
      });
    } finally {
      lock.release();
    }
  }

  /** Where `tenantId`'s rows of the co-located tenant tables are (the shard of `anchor`). */
  async placeOf(client: ClientBase, anchor: TenantTableRef, tenantId: string): Promise<ShardPlace> {
    const { rows } = await client.query<{ shard: string; node: string; dedicated: boolean }>(
      `SELECT s.shardid::text AS shard, p.nodename || ':' || p.nodeport AS node,
              s.shardminvalue = s.shardmaxvalue AS dedicated
         FROM pg_dist_shard s JOIN pg_dist_shard_placement p USING (shardid)
        WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2::uuid)
        LIMIT 1`,
      [qualified(anchor.schema, anchor.table), tenantId],
    );
    const row = rows[0];
    if (!row) throw new TenantryError('INTERNAL', 'the tenant has no shard placement');
    return { shardId: row.shard, node: row.node, dedicated: row.dedicated };
  }

  /** The distributed tenant tables of the shared schema, parents first. */
  async #tables(client: ClientBase): Promise<TenantTableRef[]> {
    const all = (await listTenantTables(client, [this.#deps.config.tenantSchema])).reverse();
    const { rows } = await client.query<{ oid: string }>(
      "SELECT logicalrelid::oid::text AS oid FROM pg_dist_partition WHERE partmethod = 'h'",
    );
    const distributed = new Set(rows.map((r) => r.oid));
    const out: TenantTableRef[] = [];
    for (const t of all) {
      const { rows: o } = await client.query<{ oid: string }>('SELECT $1::regclass::oid::text AS oid', [
        qualified(t.schema, t.table),
      ]);
      if (distributed.has(o[0]?.oid as string)) out.push(t);
    }
    return out;
  }

  async #node(node: string | undefined): Promise<{ name: string; host: string; port: number }> {
    if (typeof node !== 'string' || !/^[^:\s]+:\d{1,5}$/.test(node)) {
      throw new TenantryError('INVALID_INPUT', 'node: give the destination as host:port');
    }
    const [host, port] = splitNode(node);
    const { rowCount } = await this.#deps.admin.query(
      "SELECT 1 FROM pg_dist_node WHERE nodename = $1 AND nodeport = $2 AND noderole = 'primary' AND isactive",
      [host, port],
    );
    if (!rowCount) throw new TenantryError('INVALID_INPUT', `node: ${node} is not an active node of the cluster`);
    return { name: node, host, port };
  }

  async #setFrozen(client: ClientBase, tenantId: string, frozen: boolean): Promise<void> {
    await client.query('UPDATE tenantry.tenants SET frozen = $2, updated_at = now() WHERE id = $1', [tenantId, frozen]);
    await notifyTenantChanged(client, tenantId);
  }

  /** Waits for every tenant transaction that began before the freeze (they hold the lock shared). */
  async #drain(client: ClientBase, tenantId: string, timeoutMs: number): Promise<void> {
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
      await client.query("SELECT pg_advisory_xact_lock(hashtextextended('tenantry:tenant:' || $1, 0))", [tenantId]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if ((error as { code?: string }).code !== '55P03') throw error;
      throw new TenantryError('INVALID_TENANT_STATE', 'in-flight writes did not finish in time; nothing was moved', {
        cause: error,
      });
    }
  }

  /** Row count and checksum of each table, read in the tenant's maintenance context (one snapshot). */
  async #checksums(tenantId: string, tables: readonly TenantTableRef[]): Promise<MovedTable[]> {
    const { config, contextKey } = this.#deps;
    const client = await this.#deps.admin.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await enterContext(client, 'maintenance', tenantId, {
        contextKey,
        dialect: config.dialect,
        sharedSchema: config.tenantSchema,
        tokenTtlMs: config.contextTokenTtlMs,
        binding: 'session',
      });
      const out: MovedTable[] = [];
      for (const table of tables) {
        const columns = await copyableColumns(client, table);
        const key = await primaryKey(client, table);
        const sum = await tableChecksum(client, qualified(table.schema, table.table), columns, key, tenantId);
        out.push({ table: table.table, ...sum });
      }
      await client.query('COMMIT');
      return out;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  /** Unfreezes the tenant and records the move, in one control-plane transaction. */
  async #thaw(
    client: ClientBase,
    tenantId: string,
    actor: string,
    from: ShardPlace,
    to: ShardPlace,
    tables: readonly MovedTable[],
  ): Promise<void> {
    try {
      await client.query('BEGIN');
      await client.query('UPDATE tenantry.tenants SET frozen = false, updated_at = now() WHERE id = $1', [tenantId]);
      await notifyTenantChanged(client, tenantId);
      await writeAudit(client, {
        actor,
        tenantId,
        action: 'tenant.shard_moved',
        details: { from, to, tables: tables.map((t) => ({ table: t.table, rows: t.rows })) },
      });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }
}

function splitNode(node: string): [string, number] {
  const at = node.lastIndexOf(':');
  return [node.slice(0, at), Number(node.slice(at + 1))];
}
