import type pg from 'pg';
import type { Logger } from '../config.ts';
import type { IsolationTier, TenantContext } from '../context/tenant-context.ts';
import { TenantUsage, type UsageCounting } from '../transaction/tenant-usage.ts';
import { advanceUsageWindows } from './usage-windows.ts';

/** Tenants with nothing counted for about this long are dropped from memory at a flush. */
const IDLE_MS = 3_600_000;

/** The counters the flush writes, in column order (see {@link FLUSH_SQL}). */
const COUNTERS = [
  'transactions',
  'statements',
  'dbTimeMs',
  'rowsRead',
  'rowsWritten',
  'errors',
  'requests',
  'status2xx',
  'status3xx',
  'status4xx',
  'status5xx',
  'bytesIn',
  'bytesOut',
  'apiKeyRequests',
] as const;
type Counter = (typeof COUNTERS)[number];

/** The counted columns of the usage tables (minute buckets and daily metering), in order. */
export const USAGE_COLUMNS = [
  'transactions',
  'statements',
  'db_time_ms',
  'rows_read',
  'rows_written',
  'errors',
  'requests',
  'status_2xx',
  'status_3xx',
  'status_4xx',
  'status_5xx',
  'bytes_in',
  'bytes_out',
  'api_key_requests',
] as const;

const add = (table: string) => USAGE_COLUMNS.map((c) => `${c} = ${table}.${c} + excluded.${c}`).join(', ');
const unnestTypes = USAGE_COLUMNS.map((c, i) => `$${i + 3}::${c === 'db_time_ms' ? 'float8' : 'int8'}[]`).join(', ');
const N = USAGE_COLUMNS.length + 3;

/**
 * One statement per flush, whatever the number of tenants: the minute bucket and the day's
 * metering row of every tenant counted, added to what other instances wrote, and the day's
 * active users. Tenants erased meanwhile match nothing (the join on `tenants`), and rows go
 * in tenant order so two instances flushing at once lock them in the same order.
 */
const FLUSH_SQL = `WITH u AS (
  SELECT u.* FROM unnest($2::uuid[], ${unnestTypes}, $${N}::float8[], $${N + 1}::text[])
    AS u(tenant_id, ${USAGE_COLUMNS.join(', ')}, slowest_ms, slowest_sql)
  JOIN tenantry.tenants t ON t.id = u.tenant_id
), minutes AS (
  INSERT INTO tenantry.tenant_usage_minutes AS m (minute, tenant_id, ${USAGE_COLUMNS.join(', ')}, slowest_ms, slowest_sql)
  SELECT date_trunc('minute', $1::timestamptz), tenant_id, ${USAGE_COLUMNS.join(', ')}, slowest_ms, slowest_sql
    FROM u ORDER BY tenant_id
  ON CONFLICT (minute, tenant_id) DO UPDATE SET ${add('m')},
    slowest_sql = CASE WHEN excluded.slowest_ms > m.slowest_ms THEN excluded.slowest_sql ELSE m.slowest_sql END,
    slowest_ms = greatest(m.slowest_ms, excluded.slowest_ms)
), days AS (
  INSERT INTO tenantry.tenant_usage_daily AS d (day, tenant_id, ${USAGE_COLUMNS.join(', ')})
  SELECT ($1::timestamptz AT TIME ZONE 'UTC')::date, tenant_id, ${USAGE_COLUMNS.join(', ')}
    FROM u ORDER BY tenant_id
  ON CONFLICT (day, tenant_id) DO UPDATE SET ${add('d')}
)
INSERT INTO tenantry.tenant_active_users (day, tenant_id, user_id)
SELECT DISTINCT ($1::timestamptz AT TIME ZONE 'UTC')::date, a.tenant_id, a.user_id
  FROM unnest($${N + 2}::uuid[], $${N + 3}::uuid[]) AS a(tenant_id, user_id)
  JOIN tenantry.memberships m ON m.tenant_id = a.tenant_id AND m.user_id = a.user_id
ON CONFLICT DO NOTHING`;

/** Totals of one tier and plan since the process started: what the Prometheus counters show. */
export interface UsageTotals {
  readonly tier: IsolationTier;
  readonly plan: string;
  transactions: number;
  errors: number;
  requests: number;
  status5xx: number;
  dbTimeMs: number;
}

/** What {@link UsageMeter.recordRequest} counts of one HTTP request. */
export interface RequestUsage {
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** An API key made it. */
  readonly apiKey: boolean;
  /** The user who made it (user id), for the day's active users. */
  readonly user?: string | undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Per-tenant usage of this process — transactions, statements, time holding a database
 * connection, rows read and written, errors; requests by status class, bytes, API key
 * use, active users — counted in memory by the transaction runner and the HTTP plugin, and
 * written every `flushMs` (default 10 s) in one batched statement into per-minute buckets
 * (`tenantry.tenant_usage_minutes`, for top-N over any window; triggers add them to the
 * running totals of the windows `top` reads flat) and daily metering rows
 * (`tenantry.tenant_usage_daily`, partitioned by month). Every instance adds its own
 * figures, so the tables hold the sum across instances, and a CLI in another process reads
 * them.
 *
 * @example
 * ```ts
 * const meter = tenantry.usage.meter;
 * meter.of(tenant).transactions; // counted in this process so far
 * await meter.flush();            // write now (also done on close)
 * ```
 */
export class UsageMeter implements UsageCounting {
  readonly #pool: pg.Pool;
  readonly #flushMs: number;
  readonly #logger: Logger | undefined;
  readonly #tenants = new Map<string, TenantUsage>();
  readonly #totals = new Map<string, UsageTotals>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #stopped = false;
  /** The minute (epoch ms) of this process's last advance of the window totals. */
  #advanced = 0;

  constructor(pool: pg.Pool, options: { flushMs?: number; logger?: Logger | undefined } = {}) {
    this.#pool = pool;
    this.#flushMs = options.flushMs ?? 10_000;
    this.#logger = options.logger;
  }

  /** The usage object of `tenant` (the same one every time), created on first use. */
  of(tenant: Pick<TenantContext, 'id' | 'tier' | 'plan'>): TenantUsage {
    let usage = this.#tenants.get(tenant.id);
    if (usage === undefined) {
      usage = new TenantUsage(tenant);
      this.#tenants.set(tenant.id, usage);
      this.#arm();
    } else if (usage.plan !== tenant.plan || usage.tier !== tenant.tier) {
      usage.plan = tenant.plan;
      usage.tier = tenant.tier;
    }
    return usage;
  }

  /** Counts one HTTP request of `tenant`. */
  recordRequest(tenant: Pick<TenantContext, 'id' | 'tier' | 'plan'>, request: RequestUsage): void {
    const usage = this.of(tenant);
    usage.requests++;
    const status = request.status;
    if (status >= 500) usage.status5xx++;
    else if (status >= 400) usage.status4xx++;
    else if (status >= 300) usage.status3xx++;
    else usage.status2xx++;
    usage.bytesIn += request.bytesIn;
    usage.bytesOut += request.bytesOut;
    if (request.apiKey) usage.apiKeyRequests++;
    if (request.user !== undefined && UUID.test(request.user)) {
      usage.users ??= new Set();
      usage.users.add(request.user);
    }
  }

  /** The usage object of `tenantId` if this process counted anything of it (nothing is created). */
  peek(tenantId: string): TenantUsage | undefined {
    return this.#tenants.get(tenantId);
  }

  /** Every tenant this process holds counters of. */
  tenants(): IterableIterator<TenantUsage> {
    return this.#tenants.values();
  }

  /** Running totals per tier and plan since the process started (bounded: tiers × plans). */
  totals(): UsageTotals[] {
    for (const usage of this.#tenants.values()) this.#fold(usage);
    return [...this.#totals.values()];
  }

  #folded = new WeakMap<
    TenantUsage,
    Pick<UsageTotals, 'transactions' | 'errors' | 'requests' | 'status5xx' | 'dbTimeMs'>
  >();
  /** Adds what `usage` counted since it was last folded into its tier and plan's totals. */
  #fold(usage: TenantUsage): void {
    const key = `${usage.tier}|${usage.plan}`;
    let totals = this.#totals.get(key);
    if (!totals) {
      totals = {
        tier: usage.tier,
        plan: usage.plan,
        transactions: 0,
        errors: 0,
        requests: 0,
        status5xx: 0,
        dbTimeMs: 0,
      };
      this.#totals.set(key, totals);
    }
    let seen = this.#folded.get(usage);
    if (!seen) {
      seen = { transactions: 0, errors: 0, requests: 0, status5xx: 0, dbTimeMs: 0 };
      this.#folded.set(usage, seen);
    }
    for (const k of ['transactions', 'errors', 'requests', 'status5xx', 'dbTimeMs'] as const) {
      totals[k] += usage[k] - seen[k];
      seen[k] = usage[k];
    }
  }

  /** The flush timer runs while there are tenants in memory; an idle meter costs nothing. */
  #arm(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush()
        .catch((error: unknown) =>
          this.#logger?.warn({ err: (error as Error).message }, 'usage flush failed; will retry'),
        )
        .finally(() => {
          if (this.#tenants.size > 0) this.#arm();
        });
    }, this.#flushMs);
    this.#timer.unref();
  }

  /**
   * Writes what was counted since the last flush, now. Flushes run one after another; a
   * failed one is retried with the next (the counters keep everything).
   */
  flush(): Promise<void> {
    const run = this.#flushing.then(() => this.#flushOnce());
    this.#flushing = run.catch(() => {});
    return run;
  }

  async #flushOnce(): Promise<void> {
    const batch: { usage: TenantUsage; delta: Record<Counter, number>; users: string[] }[] = [];
    for (const [id, usage] of this.#tenants) {
      this.#fold(usage);
      const delta = {} as Record<Counter, number>;
      let any = false;
      for (const c of COUNTERS) {
        delta[c] = usage[c] - usage.flushed[c];
        if (delta[c] !== 0) any = true;
      }
      const users = usage.users ? [...usage.users] : [];
      if (!any && users.length === 0) {
        if (++usage.idleFlushes * this.#flushMs > IDLE_MS) this.#tenants.delete(id);
        continue;
      }
      usage.idleFlushes = 0;
      batch.push({ usage, delta, users });
    }
    if (batch.length === 0) return;
    batch.sort((a, b) => (a.usage.tenantId < b.usage.tenantId ? -1 : 1));
    const slowest = batch.map((b) => [b.usage.slowestMs, b.usage.slowestSql] as const);
    const userPairs = batch.flatMap((b) => b.users.map((u) => [b.usage.tenantId, u] as const));
    // Taken now: what is counted while the statement runs belongs to the next flush.
    for (const b of batch) {
      for (const c of COUNTERS) b.usage.flushed[c] += b.delta[c];
      b.usage.slowestMs = 0;
      b.usage.slowestSql = null;
      b.usage.users = undefined;
    }
    try {
      await this.#pool.query(FLUSH_SQL, [
        new Date(),
        batch.map((b) => b.usage.tenantId),
        ...COUNTERS.map((c) => batch.map((b) => (c === 'dbTimeMs' ? b.delta[c] : Math.round(b.delta[c])))),
        slowest.map(([ms]) => ms),
        slowest.map(([, sql]) => sql),
        userPairs.map(([t]) => t),
        userPairs.map(([, u]) => u),
      ]);
    } catch (error) {
      // Give the deltas back: the next flush writes them.
      for (const [i, b] of batch.entries()) {
        for (const c of COUNTERS) b.usage.flushed[c] -= b.delta[c];
        const [ms, sql] = slowest[i] as readonly [number, string | null];
        if (ms > b.usage.slowestMs) {
          b.usage.slowestMs = ms;
          b.usage.slowestSql = sql;
        }
        if (b.users.length > 0) {
          b.usage.users ??= new Set();
          for (const u of b.users) b.usage.users.add(u);
        }
      }
      throw error;
    }
    await this.#advance();
  }

  /**
   * After the first flush of each minute, the running window totals of `usage.top` lose the
   * minute that left each window (see `usageWindowsMigration`), so that a reader seldom has
   * minutes to subtract. The flush is written either way; a failure here waits for the next.
   */
  async #advance(): Promise<void> {
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    if (minute === this.#advanced) return;
    try {
      await advanceUsageWindows(this.#pool);
      this.#advanced = minute;
    } catch (error) {
      this.#logger?.warn({ err: (error as Error).message }, 'usage window totals not advanced; will retry');
    }
  }

  /** Stops the timer and writes what is left. */
  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush().catch((error: unknown) =>
      this.#logger?.warn({ err: (error as Error).message }, 'last usage flush failed'),
    );
  }
}
