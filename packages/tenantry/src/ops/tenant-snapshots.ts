import type { ClientBase, Pool } from 'pg';
import type { TenantContext } from '../context/tenant-context.ts';
import type { ResolvedPlacement } from '../control/placements.ts';
import { contextOf, type TenantRecord, type TenantRow, toRecord } from '../control/tenant-record.ts';
import { listTenantTables, type TenantTableRef } from '../control/tenant-tables.ts';
import { qualified, quoteIdent } from '../sql.ts';
import type { AdminConnection } from '../tiers/admin-connection.ts';
import type { TenantTransaction } from '../transaction/tenant-transaction.ts';

/** What the snapshot job is built from (`Tenantry` passes its parts). */
export interface SnapshotDeps {
  readonly admin: Pool;
  /** Schema of the shared tables (pool tier), also the tables' schema in tenant databases. */
  readonly sharedSchema: string;
  readonly placements: { resolve(id: string): Promise<ResolvedPlacement> };
  /** An admin connection to `database` on `placement`'s server. */
  connect(placement: ResolvedPlacement, database: string | null): Promise<AdminConnection>;
  /** A maintenance transaction of `tenant` (RLS scopes it; not counted as the tenant's usage). */
  maintenance<T>(tenant: TenantContext, fn: (tx: TenantTransaction<unknown>) => Promise<T>): Promise<T>;
}

/** One row of `tenantry.tenant_metrics`: a tenant measured at one time. */
export interface TenantSnapshot {
  readonly tenantId: string;
  readonly tier: string;
  /** Table name → the tenant's rows in it (`count(*)` in the tenant's context). */
  readonly tableRows: Readonly<Record<string, number>>;
  /** Bytes: exact for schema and database tiers, an estimate for the pool tier (see {@link storageExact}). */
  readonly storageBytes: number;
  /**
   * True for a tenant's own tables: the sum of their `pg_total_relation_size`. False for the
   * pool tier: each shared table's total size shared out by rows (size × tenant rows ÷ all rows).
   */
  readonly storageExact: boolean;
  readonly users: number;
  readonly transactions24h: number;
  readonly requests24h: number;
}

const SIZE_SQL = `SELECT coalesce(sum(pg_total_relation_size(format('%I.%I', s, t)::regclass)), 0)::int8 AS bytes
  FROM unnest($1::text[], $2::text[]) AS x(s, t)`;

async function sizeOf(client: ClientBase | Pool, tables: readonly TenantTableRef[]): Promise<number> {
  const { rows } = await client.query<{ bytes: string }>(SIZE_SQL, [
    tables.map((t) => t.schema),
    tables.map((t) => t.table),
  ]);
  return Number(rows[0]?.bytes ?? 0);
}

/**
 * Periodic per-tenant measurements (seed 001's `TenantMetrics`), written to
 * `tenantry.tenant_metrics` and to the day's metering row (`storage_bytes`): rows per
 * tenant table, storage, members, and the last 24 hours' transactions and requests.
 *
 * Rows are counted with `count(*)` inside a maintenance transaction of each tenant, so RLS
 * scopes the count whatever role the admin connection has; storage is read from the catalog
 * (`pg_total_relation_size`) of the server holding the tables. One tenant at a time: a
 * background job, not a request path.
 *
 * @example
 * ```ts
 * const taken = await tenantry.usage.snapshot(); // every tenant
 * await tenantry.usage.snapshot({ tenants: ['acme'] });
 * ```
 */
export class TenantSnapshots {
  readonly #deps: SnapshotDeps;

  constructor(deps: SnapshotDeps) {
    this.#deps = deps;
  }

  /** Measures `tenants` (ids or slugs; default every tenant not deleted) and stores the rows. */
  async take(options: { tenants?: readonly string[] } = {}): Promise<TenantSnapshot[]> {
    const { admin, sharedSchema } = this.#deps;
    const { rows } = await admin.query<TenantRow>(
      `SELECT * FROM tenantry.tenants
        WHERE status <> 'deleted' AND ($1::text[] IS NULL OR id::text = ANY($1) OR slug = ANY($1))
        ORDER BY id`,
      [options.tenants ? [...options.tenants] : null],
    );
    const tenants = rows.map(toRecord);
    const shared = await listTenantTables(admin, [sharedSchema]);
    const counted = new Map<string, Record<string, number>>();
    for (const tenant of tenants) counted.set(tenant.id, await this.#countRows(tenant, shared));
    // Pool tier: each shared table's size, shared out by rows. All rows of the table, not only
    // those of the tenants measured now: a partial run still gives every tenant its share.
    const poolShare = new Map<string, number>();
    if (tenants.some((t) => t.tier === 'pool')) {
      const { rows: sizes } = await admin.query<{ table: string; bytes: string; rows: string }>(
        `SELECT x.t AS table, pg_total_relation_size(format('%I.%I', x.s, x.t)::regclass)::int8 AS bytes,
                greatest(c.reltuples, 0)::int8 AS rows
           FROM unnest($1::text[], $2::text[]) AS x(s, t)
           JOIN pg_class c ON c.oid = format('%I.%I', x.s, x.t)::regclass`,
        [shared.map((t) => t.schema), shared.map((t) => t.table)],
      );
      const poolCounted = new Map([...counted].filter(([id]) => tenants.find((t) => t.id === id)?.tier === 'pool'));
      for (const s of sizes) {
        poolShare.set(
          s.table,
          Number(s.bytes) / Math.max(1, await this.#allRows(s.table, Number(s.rows), poolCounted, !options.tenants)),
        );
      }
    }
    const out: TenantSnapshot[] = [];
    for (const tenant of tenants) {
      const tableRows = counted.get(tenant.id) ?? {};
      let storageBytes: number;
      let storageExact = true;
      if (tenant.tier === 'pool') {
        storageExact = false;
        storageBytes = Math.round(
          Object.entries(tableRows).reduce((sum, [table, n]) => sum + n * (poolShare.get(table) ?? 0), 0),
        );
      } else {
        storageBytes = await this.#exactSize(tenant);
      }
      out.push({
        tenantId: tenant.id,
        tier: tenant.tier,
        tableRows,
        storageBytes,
        storageExact,
        ...(await this.#activity(tenant.id)),
      });
    }
    await this.#store(out);
    return out;
  }

  /**
   * All rows of a shared table: the sum of every tenant's count when every tenant was just
   * counted (exact, whatever the admin role may see), else `count(*)` as the admin (exact
   * when it bypasses RLS), else the planner's estimate.
   */
  async #allRows(
    table: string,
    estimate: number,
    counted: Map<string, Record<string, number>>,
    all: boolean,
  ): Promise<number> {
    if (all) {
      let sum = 0;
      for (const rows of counted.values()) sum += rows[table] ?? 0;
      return sum;
    }
    const { rows } = await this.#deps.admin.query<{ n: string }>(
      `SELECT count(*)::int8 AS n FROM ${qualified(this.#deps.sharedSchema, table)}`,
    );
    const n = Number(rows[0]?.n ?? 0);
    return n > 0 ? n : estimate;
  }

  /** `count(*)` of each tenant table, in one statement of a maintenance transaction of the tenant. */
  async #countRows(tenant: TenantRecord, shared: readonly TenantTableRef[]): Promise<Record<string, number>> {
    const names = [...new Set(shared.map((t) => t.table))];
    if (names.length === 0) return {};
    const select = names.map((n, i) => `(SELECT count(*) FROM ${quoteIdent(n)})::int8 AS c${i}`).join(', ');
    const row = await this.#deps.maintenance(contextOf(tenant), async (tx) => {
      const { rows } = await tx.query<Record<string, string>>(`SELECT ${select}`);
      return rows[0] ?? {};
    });
    return Object.fromEntries(names.map((n, i) => [n, Number(row[`c${i}`] ?? 0)]));
  }

  /** The sum of `pg_total_relation_size` of a schema- or database-tier tenant's own tables. */
  async #exactSize(tenant: TenantRecord): Promise<number> {
    if (tenant.tier === 'schema' && tenant.schemaName) {
      const placement = await this.#deps.placements.resolve(tenant.placementId);
      const conn = await this.#deps.connect(placement, null);
      try {
        return await sizeOf(conn.client, await listTenantTables(conn.client, [tenant.schemaName]));
      } finally {
        await conn.release();
      }
    }
    if (tenant.tier === 'database' && tenant.databaseName) {
      const placement = await this.#deps.placements.resolve(tenant.placementId);
      const conn = await this.#deps.connect(placement, tenant.databaseName);
      try {
        return await sizeOf(conn.client, await listTenantTables(conn.client, [this.#deps.sharedSchema]));
      } finally {
        await conn.release();
      }
    }
    return 0;
  }

  async #activity(tenantId: string): Promise<Pick<TenantSnapshot, 'users' | 'transactions24h' | 'requests24h'>> {
    const { rows } = await this.#deps.admin.query<{ users: number; transactions: string; requests: string }>(
      `SELECT (SELECT count(*)::int FROM tenantry.memberships WHERE tenant_id = $1) AS users,
              coalesce(sum(transactions), 0)::int8 AS transactions, coalesce(sum(requests), 0)::int8 AS requests
         FROM tenantry.tenant_usage_minutes WHERE tenant_id = $1 AND minute >= now() - interval '24 hours'`,
      [tenantId],
    );
    const r = rows[0];
    return {
      users: r?.users ?? 0,
      transactions24h: Number(r?.transactions ?? 0),
      requests24h: Number(r?.requests ?? 0),
    };
  }

  /** One statement: the snapshot rows, and today's metering rows' largest storage. */
  async #store(snapshots: readonly TenantSnapshot[]): Promise<void> {
    if (snapshots.length === 0) return;
    await this.#deps.admin.query(
      `WITH s AS (
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int8[], $5::bool[], $6::int[], $7::int8[], $8::int8[])
           AS s(tenant_id, tier, table_rows, storage_bytes, storage_exact, users, transactions_24h, requests_24h)
       ), metrics AS (
         INSERT INTO tenantry.tenant_metrics
           (tenant_id, tier, table_rows, storage_bytes, storage_exact, users, transactions_24h, requests_24h)
         SELECT s.* FROM s JOIN tenantry.tenants t ON t.id = s.tenant_id
       )
       INSERT INTO tenantry.tenant_usage_daily AS d (day, tenant_id, storage_bytes)
       SELECT (now() AT TIME ZONE 'UTC')::date, s.tenant_id, s.storage_bytes
         FROM s JOIN tenantry.tenants t ON t.id = s.tenant_id ORDER BY s.tenant_id
       ON CONFLICT (day, tenant_id) DO UPDATE
         SET storage_bytes = greatest(coalesce(d.storage_bytes, 0), excluded.storage_bytes)`,
      [
        snapshots.map((s) => s.tenantId),
        snapshots.map((s) => s.tier),
        snapshots.map((s) => JSON.stringify(s.tableRows)),
        snapshots.map((s) => s.storageBytes),
        snapshots.map((s) => s.storageExact),
        snapshots.map((s) => s.users),
        snapshots.map((s) => s.transactions24h),
        snapshots.map((s) => s.requests24h),
      ],
    );
  }
}
