import type { Pool } from 'pg';
import { TenantryError } from '../errors/catalog.ts';
import { USAGE_MONTHS_AHEAD } from '../migrate/usage-migration.ts';
import { type ClusterTenantStats, citusTenantStats } from './citus-tenant-stats.ts';
import type { TenantSnapshot, TenantSnapshots } from './tenant-snapshots.ts';
import {
  FIGURES,
  type FigureRow,
  figures,
  USAGE_RANKINGS,
  type UsageFigures,
  type UsageRanking,
} from './usage-figures.ts';

export { USAGE_RANKINGS, type UsageFigures, type UsageRanking } from './usage-figures.ts';

import { USAGE_COLUMNS, type UsageMeter } from './usage-meter.ts';
import { scanTop, totalsTop } from './usage-top.ts';
import { advanceUsageWindows } from './usage-windows.ts';

/**
 * A tenant's usage over a window in equal buckets, oldest first, every bucket present (zero
 * when nothing ran): what charts and sparklines draw. Bucket `at` is its start, in Unix
 * seconds.
 */
export interface UsageSeries {
  readonly tenantId: string;
  readonly bucketSeconds: number;
  readonly at: readonly number[];
  readonly requests: readonly number[];
  readonly dbTimeMs: readonly number[];
  readonly transactions: readonly number[];
  readonly rowsRead: readonly number[];
  readonly rowsWritten: readonly number[];
  readonly errors: readonly number[];
}

const SERIES_COLUMNS = {
  requests: 'requests',
  dbTimeMs: 'db_time_ms',
  transactions: 'transactions',
  rowsRead: 'rows_read',
  rowsWritten: 'rows_written',
  errors: 'errors',
} as const;

/** One line of {@link UsageService.top}. */
export interface TopTenant extends UsageFigures {
  readonly tenantId: string;
  readonly slug: string;
  readonly tier: string;
  readonly plan: string;
}

/** One metering row of {@link UsageService.daily}: a tenant's day (UTC). */
export interface DailyUsage extends UsageFigures {
  readonly day: string;
  readonly tenantId: string;
  /** Largest storage measured that day (bytes); `null` when no snapshot ran. */
  readonly storageBytes: number | null;
  /** Members who made at least one request that day. */
  readonly activeUsers: number;
}

/** What {@link UsageService.performance} reports of one tenant. */
export interface TenantPerformance {
  readonly tenantId: string;
  readonly window: string;
  readonly usage: UsageFigures;
  /** The median, over the tenants active in the window, of each figure. */
  readonly medianTenant: UsageFigures;
  readonly tenantsActive: number;
  /** Its slowest statements in the window, from Tenantry's own accounting (see `source`). */
  readonly slowStatements: readonly { readonly sql: string; readonly maxMs: number; readonly minutes: number }[];
  readonly slowStatementsSource: string;
  /** Its snapshots over the last 30 days, oldest first. */
  readonly storageTrend: readonly { readonly at: string; readonly storageBytes: number; readonly rows: number }[];
  /** The median storage of the latest snapshot of every tenant. */
  readonly medianStorageBytes: number | null;
}

/**
 * The latest snapshot of tenant `t`: one probe of `tenant_metrics`' primary key per tenant,
 * so reading every tenant's latest costs one row per tenant however many snapshots are kept
 * (hourly for 90 days: ~2,000 each), where `DISTINCT ON (tenant_id)` reads them all.
 */
const LATEST_SNAPSHOT = `SELECT m.tier, m.storage_bytes FROM tenantry.tenant_metrics m
  WHERE m.tenant_id = t.id ORDER BY m.taken_at DESC LIMIT 1`;

const WINDOW = /^([1-9][0-9]{0,4})(m|h|d)$/;
const WINDOW_UNIT = { m: 'minutes', h: 'hours', d: 'days' } as const;
const MAX_WINDOW_MINUTES = 7 * 24 * 60;

/**
 * A window such as `15m`, `1h` or `7d` as an SQL interval; at most 7 days (the per-minute
 * buckets are kept a week). Throws `INVALID_INPUT` otherwise.
 *
 * @example
 * ```ts
 * parseWindow('15m'); // '15 minutes'
 * ```
 */
export function parseWindow(window: string): string {
  return readWindow(window).interval;
}

/** {@link parseWindow}, with the window's length in minutes. */
function readWindow(window: string): { interval: string; minutes: number } {
  const m = WINDOW.exec(window);
  if (!m)
    throw new TenantryError('INVALID_INPUT', `window must look like 15m, 1h or 7d (got ${JSON.stringify(window)})`);
  const n = Number(m[1]);
  const unit = m[2] as keyof typeof WINDOW_UNIT;
  const minutes = n * (unit === 'm' ? 1 : unit === 'h' ? 60 : 1440);
  if (minutes > MAX_WINDOW_MINUTES) throw new TenantryError('INVALID_INPUT', 'window is at most 7d');
  return { interval: `${n} ${WINDOW_UNIT[unit]}`, minutes };
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;
function day(value: string, name: string): string {
  if (
    !DAY.test(value) ||
    Number.isNaN(Date.parse(`${value}T00:00:00Z`)) ||
    new Date(`${value}T00:00:00Z`).toISOString().slice(0, 10) !== value
  ) {
    throw new TenantryError('INVALID_INPUT', `${name} must be a date YYYY-MM-DD`);
  }
  return value;
}

/** Columns of the CSV export, in order. */
export const USAGE_CSV_COLUMNS = [
  'day',
  'tenant_id',
  'requests',
  'status_2xx',
  'status_3xx',
  'status_4xx',
  'status_5xx',
  'bytes_in',
  'bytes_out',
  'api_key_requests',
  'transactions',
  'statements',
  'db_time_ms',
  'rows_read',
  'rows_written',
  'errors',
  'storage_bytes',
  'active_users',
] as const;

/**
 * Per-tenant usage and metering (`tenantry.usage`): the in-process {@link UsageMeter}, the
 * top-N over a window, the daily metering rows for billing (JSON or CSV), tenant snapshots
 * and the performance report of one tenant. Reads sum what every instance wrote.
 *
 * @example
 * ```ts
 * const top = await tenantry.usage.top({ by: 'time', window: '15m', limit: 10 });
 * const rows = await tenantry.usage.daily(acme.id, { from: '2026-12-01', to: '2026-12-31' });
 * ```
 */
export class UsageService {
  /** This process's counters (`null` when usage accounting is off). */
  readonly meter: UsageMeter | null;
  readonly #pool: Pool;
  readonly #snapshots: TenantSnapshots;

  constructor(pool: Pool, meter: UsageMeter | null, snapshots: TenantSnapshots) {
    this.#pool = pool;
    this.meter = meter;
    this.#snapshots = snapshots;
  }

  /**
   * On a Citus cluster, the `limit` busiest tenants by queries as Citus's
   * `citus_stat_tenants` counts them on the nodes (see docs/citus.md); empty where the view
   * is absent.
   *
   * @example
   * ```ts
   * const [busiest] = await tenantry.usage.cluster(5);
   * ```
   */
  cluster(limit = 100): Promise<ClusterTenantStats[]> {
    return citusTenantStats(this.#pool, Math.min(Math.max(1, Math.floor(limit)), 1000));
  }

  /**
   * The `limit` (default 10, at most 1000) tenants with the most `by` in the last `window`
   * (default `15m`), across every instance, ties by tenant id. This process's counters are
   * flushed first.
   *
   * The window runs from the start of the minute `window` ago to now. Windows `15m`, `1h`
   * (or `60m`) and `24h` (or `1d`, `1440m`) are read from running per-tenant totals that
   * every flush adds to and that lose the minutes leaving them (migration 0026): `limit`
   * rows of an index, whatever the number of tenants. Any other window sums the
   * per-minute rows in it, whose cost follows the tenants active in it. Both give the same
   * figures for the same rows.
   *
   * @example
   * ```ts
   * const [heaviest] = await tenantry.usage.top({ by: 'statements', window: '1h' });
   * ```
   */
  async top(options: { by?: UsageRanking; window?: string; limit?: number } = {}): Promise<TopTenant[]> {
    const by = options.by ?? 'time';
    if (!USAGE_RANKINGS.includes(by)) {
      throw new TenantryError('INVALID_INPUT', `by must be one of ${USAGE_RANKINGS.join(', ')}`);
    }
    const window = readWindow(options.window ?? '15m');
    const limit = options.limit ?? 10;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new TenantryError('INVALID_INPUT', 'limit is a whole number from 1 to 1000');
    }
    await this.meter?.flush();
    const rows =
      (await totalsTop(this.#pool, by, window.minutes, limit)) ??
      (await scanTop(this.#pool, by, window.interval, limit));
    return rows.map((r) => ({
      tenantId: String(r.tenant_id),
      slug: String(r.slug),
      tier: String(r.tier),
      plan: String(r.plan),
      ...figures(r),
    }));
  }

  /**
   * The daily metering rows of `tenantId` from `from` to `to` (UTC dates, inclusive; at most
   * 366 days), oldest first. This process's counters are flushed first.
   *
   * @example
   * ```ts
   * const days = await tenantry.usage.daily(acme.id, { from: '2026-12-01', to: '2026-12-07' });
   * ```
   */
  async daily(tenantId: string, range: { from: string; to: string }): Promise<DailyUsage[]> {
    const from = day(range.from, 'from');
    const to = day(range.to, 'to');
    if (from > to) throw new TenantryError('INVALID_INPUT', 'from must not be after to');
    if ((Date.parse(to) - Date.parse(from)) / 86_400_000 > 366) {
      throw new TenantryError('INVALID_INPUT', 'a usage export spans at most 366 days');
    }
    await this.meter?.flush();
    const { rows } = await this.#pool.query<FigureRow>(
      `SELECT to_char(d.day, 'YYYY-MM-DD') AS day, d.tenant_id, ${FIGURES}, max(d.storage_bytes)::float8 AS storage_bytes,
              (SELECT count(*)::int FROM tenantry.tenant_active_users a WHERE a.tenant_id = d.tenant_id AND a.day = d.day) AS active_users
         FROM tenantry.tenant_usage_daily d
        WHERE d.tenant_id = $1 AND d.day BETWEEN $2::date AND $3::date
        GROUP BY d.day, d.tenant_id ORDER BY d.day`,
      [tenantId, from, to],
    );
    return rows.map((r) => ({
      day: String(r.day),
      tenantId: String(r.tenant_id),
      ...figures(r),
      storageBytes: r.storage_bytes === null ? null : Number(r.storage_bytes),
      activeUsers: Number(r.active_users ?? 0),
    }));
  }

  /**
   * {@link daily} as CSV (RFC 4180, a header line, `\r\n` line ends; columns
   * {@link USAGE_CSV_COLUMNS}).
   *
   * @example
   * ```ts
   * await writeFile('acme-december.csv', tenantry.usage.toCsv(await tenantry.usage.daily(acme.id, range)));
   * ```
   */
  toCsv(rows: readonly DailyUsage[]): string {
    const value: Record<(typeof USAGE_CSV_COLUMNS)[number], (r: DailyUsage) => unknown> = {
      day: (r) => r.day,
      tenant_id: (r) => r.tenantId,
      requests: (r) => r.requests,
      status_2xx: (r) => r.status2xx,
      status_3xx: (r) => r.status3xx,
      status_4xx: (r) => r.status4xx,
      status_5xx: (r) => r.status5xx,
      bytes_in: (r) => r.bytesIn,
      bytes_out: (r) => r.bytesOut,
      api_key_requests: (r) => r.apiKeyRequests,
      transactions: (r) => r.transactions,
      statements: (r) => r.statements,
      db_time_ms: (r) => r.dbTimeMs,
      rows_read: (r) => r.rowsRead,
      rows_written: (r) => r.rowsWritten,
      errors: (r) => r.errors,
      storage_bytes: (r) => r.storageBytes ?? '',
      active_users: (r) => r.activeUsers,
    };
    const lines = [USAGE_CSV_COLUMNS.join(',')];
    for (const r of rows) lines.push(USAGE_CSV_COLUMNS.map((c) => String(value[c](r))).join(','));
    return `${lines.join('\r\n')}\r\n`;
  }

  /**
   * How `tenantId` fares over `window` (default `24h`) against the median tenant: its
   * figures, its slowest statements, its storage over the last 30 days.
   *
   * `pg_stat_statements` cannot say which tenant ran a statement (every tenant runs the same
   * text as the same role), so slow statements come from Tenantry's own accounting: the
   * slowest statement of each minute in which the tenant ran one.
   *
   * @example
   * ```ts
   * const report = await tenantry.usage.performance(acme.id, { window: '1h' });
   * ```
   */
  async performance(tenantId: string, options: { window?: string } = {}): Promise<TenantPerformance> {
    const window = options.window ?? '24h';
    const interval = parseWindow(window);
    await this.meter?.flush();
    const since = `u.minute >= date_trunc('minute', now() - $1::interval)`;
    const [mine, median, slow, trend, storage] = await Promise.all([
      this.#pool.query<FigureRow>(
        `SELECT ${FIGURES} FROM tenantry.tenant_usage_minutes u WHERE ${since} AND u.tenant_id = $2`,
        [interval, tenantId],
      ),
      this.#pool.query<FigureRow>(
        `WITH per AS (SELECT u.tenant_id, ${FIGURES} FROM tenantry.tenant_usage_minutes u WHERE ${since} GROUP BY u.tenant_id)
         SELECT count(*)::int AS tenants, ${USAGE_COLUMNS.map(
           (c) => `coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ${c}), 0) AS ${c}`,
         ).join(', ')} FROM per`,
        [interval],
      ),
      this.#pool.query<{ sql: string; max_ms: number; minutes: number }>(
        `SELECT u.slowest_sql AS sql, max(u.slowest_ms)::float8 AS max_ms, count(*)::int AS minutes
           FROM tenantry.tenant_usage_minutes u
          WHERE ${since} AND u.tenant_id = $2 AND u.slowest_sql IS NOT NULL
          GROUP BY u.slowest_sql ORDER BY max(u.slowest_ms) DESC LIMIT 10`,
        [interval, tenantId],
      ),
      this.#pool.query<{ at: Date; storage_bytes: string; rows: string }>(
        `SELECT taken_at AS at, storage_bytes,
                (SELECT coalesce(sum(value::int8), 0) FROM jsonb_each_text(table_rows)) AS rows
           FROM tenantry.tenant_metrics WHERE tenant_id = $1 AND taken_at >= now() - interval '30 days'
          ORDER BY taken_at`,
        [tenantId],
      ),
      this.#pool.query<{ median: number | null }>(
        `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l.storage_bytes) AS median
           FROM tenantry.tenants t CROSS JOIN LATERAL (${LATEST_SNAPSHOT}) l`,
      ),
    ]);
    return {
      tenantId,
      window,
      usage: figures(mine.rows[0]),
      medianTenant: figures(median.rows[0]),
      tenantsActive: Number(median.rows[0]?.tenants ?? 0),
      slowStatements: slow.rows.map((r) => ({
        sql: r.sql,
        maxMs: Math.round(r.max_ms * 1000) / 1000,
        minutes: r.minutes,
      })),
      slowStatementsSource:
        'tenantry: the slowest statement of each minute, timed by the transaction runner (pg_stat_statements cannot attribute statements to tenants)',
      storageTrend: trend.rows.map((r) => ({
        at: r.at.toISOString(),
        storageBytes: Number(r.storage_bytes),
        rows: Number(r.rows),
      })),
      medianStorageBytes:
        storage.rows[0]?.median === null || storage.rows[0] === undefined ? null : Number(storage.rows[0].median),
    };
  }

  /**
   * The usage of each of `tenantIds` (at most 500) over `window` (default `24h`, as in
   * {@link parseWindow}) in buckets of `bucketSeconds` (default one hour, at least a minute):
   * one indexed read of the per-minute rows for all of them, so a page of tenants gets its
   * sparklines in one query. The buckets add up to the same window's
   * {@link UsageService.performance} figures. This process's counters are flushed first.
   *
   * @example
   * ```ts
   * const [acme] = await tenantry.usage.series([acme.id], { window: '24h', bucketSeconds: 3600 });
   * console.log(acme.at.map((t, i) => `${new Date(t * 1000).toISOString()} ${acme.requests[i]}`));
   * ```
   */
  async series(
    tenantIds: readonly string[],
    options: { window?: string; bucketSeconds?: number } = {},
  ): Promise<UsageSeries[]> {
    const interval = parseWindow(options.window ?? '24h');
    const bucket = options.bucketSeconds ?? 3600;
    if (!Number.isInteger(bucket) || bucket < 60 || bucket > 86_400) {
      throw new TenantryError('INVALID_INPUT', 'bucketSeconds is a whole number from 60 to 86400');
    }
    if (tenantIds.length > 500) throw new TenantryError('INVALID_INPUT', 'at most 500 tenants at once');
    if (tenantIds.length === 0) return [];
    await this.meter?.flush();
    const { rows } = await this.#pool.query<Record<string, number | string>>(
      `SELECT u.tenant_id, (floor(extract(epoch FROM u.minute) / $3) * $3)::float8 AS bucket,
              extract(epoch FROM date_trunc('minute', now() - $2::interval))::float8 AS since,
              extract(epoch FROM now())::float8 AS until,
              ${Object.values(SERIES_COLUMNS)
                .map((c) => `coalesce(sum(u.${c}), 0)::float8 AS ${c}`)
                .join(', ')}
         FROM tenantry.tenant_usage_minutes u
        WHERE u.tenant_id = ANY ($1::uuid[]) AND u.minute >= date_trunc('minute', now() - $2::interval)
        GROUP BY u.tenant_id, 2`,
      [tenantIds, interval, bucket],
    );
    const bounds = rows[0]
      ? { since: Number(rows[0].since), until: Number(rows[0].until) }
      : await this.#bounds(interval);
    const first = Math.floor(bounds.since / bucket) * bucket;
    const last = Math.floor(bounds.until / bucket) * bucket;
    const at: number[] = [];
    for (let t = first; t <= last; t += bucket) at.push(t);
    const index = new Map(at.map((t, i) => [t, i]));
    return tenantIds.map((tenantId) => {
      const columns = Object.fromEntries(Object.keys(SERIES_COLUMNS).map((k) => [k, at.map(() => 0)])) as Record<
        keyof typeof SERIES_COLUMNS,
        number[]
      >;
      for (const r of rows) {
        if (r.tenant_id !== tenantId) continue;
        const i = index.get(Number(r.bucket));
        if (i === undefined) continue;
        for (const [k, c] of Object.entries(SERIES_COLUMNS)) {
          columns[k as keyof typeof SERIES_COLUMNS][i] = Math.round(Number(r[c]) * 1000) / 1000;
        }
      }
      return { tenantId, bucketSeconds: bucket, at, ...columns };
    });
  }

  async #bounds(interval: string): Promise<{ since: number; until: number }> {
    const { rows } = await this.#pool.query<{ since: number; until: number }>(
      `SELECT extract(epoch FROM date_trunc('minute', now() - $1::interval))::float8 AS since,
              extract(epoch FROM now())::float8 AS until`,
      [interval],
    );
    return rows[0] as { since: number; until: number };
  }

  /**
   * Measures tenants now (see {@link TenantSnapshots.take}) and stores the rows.
   *
   * @example
   * ```ts
   * await tenantry.usage.snapshot({ tenants: [acme.id] });
   * ```
   */
  snapshot(options: { tenants?: readonly string[] } = {}): Promise<TenantSnapshot[]> {
    return this.#snapshots.take(options);
  }

  /** Requests of `tenantId` this calendar month (UTC), written by every instance; for quotas. */
  async monthRequests(tenantId: string): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>(
      `SELECT coalesce(sum(requests), 0)::int8 AS n FROM tenantry.tenant_usage_daily
        WHERE tenant_id = $1 AND day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date`,
      [tenantId],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** This process's requests of `tenantId`: all counted, and those already written (for quotas). */
  localRequests(tenantId: string): { counted: number; written: number } {
    const usage = this.meter?.peek(tenantId);
    return usage ? { counted: usage.requests, written: usage.flushed.requests } : { counted: 0, written: 0 };
  }

  /** Storage of `tenantId` by its latest snapshot (bytes), `null` before the first; for quotas. */
  async latestStorage(tenantId: string): Promise<number | null> {
    const { rows } = await this.#pool.query<{ bytes: string }>(
      'SELECT storage_bytes AS bytes FROM tenantry.tenant_metrics WHERE tenant_id = $1 ORDER BY taken_at DESC LIMIT 1',
      [tenantId],
    );
    return rows[0] ? Number(rows[0].bytes) : null;
  }

  /**
   * Storage of every tier by the latest snapshot of each tenant that is not `deleted`: bytes
   * and tenants (for the per-tier gauges; bounded: three rows). Read from totals the
   * snapshots keep (migration `0025_tier_storage_totals`), whatever the number of tenants.
   */
  async storageByTier(): Promise<{ tier: string; bytes: number; tenants: number }[]> {
    const { rows } = await this.#pool.query<{ tier: string; bytes: string; tenants: string }>(
      `SELECT tier, bytes::int8 AS bytes, tenants FROM tenantry.tier_storage WHERE tenants > 0 ORDER BY tier`,
    );
    return rows.map((r) => ({ tier: r.tier, bytes: Number(r.bytes), tenants: Number(r.tenants) }));
  }

  /**
   * Creates this month's and the next `monthsAhead` (default 3) months' metering partitions
   * that are missing; returns how many it created (`setup()` runs it).
   *
   * @example
   * ```ts
   * await tenantry.usage.ensurePartitions(6);
   * ```
   */
  async ensurePartitions(monthsAhead = USAGE_MONTHS_AHEAD): Promise<number> {
    const { rows } = await this.#pool.query<{ n: number }>('SELECT tenantry.usage_ensure_partitions($1) AS n', [
      monthsAhead,
    ]);
    return rows[0]?.n ?? 0;
  }

  /**
   * Upkeep: this month's and the next `monthsAhead` months' metering partitions, the
   * running window totals of `top` moved to the current minute, and removal of per-minute buckets older than `minuteDays` (default 7) and snapshots older
   * than `snapshotDays` (default 90). Daily metering rows are kept.
   *
   * @example
   * ```ts
   * await tenantry.usage.upkeep();
   * ```
   */
  async upkeep(options: { monthsAhead?: number; minuteDays?: number; snapshotDays?: number } = {}): Promise<void> {
    await this.ensurePartitions(options.monthsAhead);
    await advanceUsageWindows(this.#pool);
    await this.#pool.query(
      `DELETE FROM tenantry.tenant_usage_minutes WHERE minute < now() - make_interval(days => $1)`,
      [options.minuteDays ?? 7],
    );
    await this.#pool.query(`DELETE FROM tenantry.tenant_metrics WHERE taken_at < now() - make_interval(days => $1)`, [
      options.snapshotDays ?? 90,
    ]);
  }
}
