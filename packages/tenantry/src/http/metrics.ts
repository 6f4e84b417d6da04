import type { FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { UsageService } from '../ops/usage-service.ts';
import type { Tenantry } from '../tenantry.ts';
import type { PoolMap, PoolMapStats } from '../transaction/pool-map.ts';
import type { TenantUsage } from '../transaction/tenant-usage.ts';
import { BackgroundReading } from './background-reading.ts';

/**
 * Prometheus metrics of the reference server, on a registry of its own: requests by
 * route template, method and status class; latency; the pools; per-tier and per-plan usage
 * and the busiest tenants. No label ever holds an unbounded value: routes are templates
 * (`/v1/items/:id`), tiers and plans are a handful, and tenants appear only in the top-10
 * gauge. Tenant requests are counted per tenant by the plugin (`usage` option).
 */
export function registerMetrics(
  app: FastifyInstance,
  tenantry: Tenantry<unknown>,
  extra: readonly Registry[] = [],
): Registry {
  const registry = new Registry();
  // prom-client's names already start with `process_` or `nodejs_`: prefix them with ours only.
  collectDefaultMetrics({ register: registry, prefix: 'tenantry_' });
  registerPoolMapMetrics(registry, tenantry.poolMap);
  const requests = new Counter({
    name: 'tenantry_http_requests_total',
    help: 'HTTP requests by route template, method and status',
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tenantry_http_request_duration_seconds',
    help: 'HTTP request latency by route template and method',
    labelNames: ['route', 'method'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  registerUsageMetrics(registry, tenantry.usage);
  for (const [name, pool] of [
    ['runtime', tenantry.runtimeLender],
    ['admin', tenantry.adminPool],
  ] as const) {
    new Gauge({
      name: `tenantry_pool_${name}_connections`,
      help: `Connections of the ${name} pool by state`,
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.set({ state: 'total' }, pool.totalCount);
        this.set({ state: 'idle' }, pool.idleCount);
        this.set({ state: 'waiting' }, pool.waitingCount);
      },
    });
  }

  registerJobMetrics(registry, tenantry);

  // prom-client hashes the label object on every inc/observe; the labelled children are
  // looked up once per (method, status, route template), a bounded set, and kept.
  const children = new Map<string, { count: Counter.Internal; latency: Histogram.Internal<string> }>();
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const key = `${req.method} ${reply.statusCode} ${route}`;
    let child = children.get(key);
    if (!child) {
      child = {
        count: requests.labels({ route, method: req.method, status: String(reply.statusCode) }),
        latency: duration.labels({ route, method: req.method }),
      };
      children.set(key, child);
    }
    child.count.inc();
    child.latency.observe(reply.elapsedTime / 1000);
    done();
  });

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    const merged = Registry.merge([registry, ...extra]);
    return reply.type(merged.contentType).send(await merged.metrics());
  });
  return registry;
}

/**
 * Gauges of a database-tier {@link PoolMap} on `registry`, read from its `stats()` at each
 * scrape: pools open, connections open (every slot of the global budget taken, including
 * connections still connecting or closing), connections in use, waiters, and evictions.
 * Keys (tenants) are never labels: there can be thousands.
 *
 * `tenantry_pool_map_evictions_total` only ever grows, like a counter; it is a gauge
 * because its value is the map's own running total, set at each scrape.
 *
 * @example
 * ```ts
 * const registry = registerMetrics(app, tenantry);
 * registerPoolMapMetrics(registry, poolMap);
 * ```
 */
export function registerPoolMapMetrics(registry: Registry, poolMap: Pick<PoolMap, 'stats'>): void {
  const gauges: readonly [string, string, keyof PoolMapStats][] = [
    ['tenantry_pool_map_pools_open', 'Tenant database pools open in the pool map', 'poolsOpen'],
    [
      'tenantry_pool_map_connections_open',
      'Connections of the pool map holding a slot of its global budget (connecting, idle, in use or closing)',
      'connectionsOpen',
    ],
    ['tenantry_pool_map_connections_in_use', 'Connections of the pool map borrowed by requests', 'connectionsInUse'],
    ['tenantry_pool_map_waiters', 'Requests waiting for a slot of the pool map budget', 'waiters'],
    [
      'tenantry_pool_map_evictions_total',
      'Idle connections the pool map closed so another tenant database could have their slot',
      'evictions',
    ],
  ];
  for (const [name, help, stat] of gauges) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(poolMap.stats()[stat]);
      },
    });
  }
}

/**
 * Usage gauges on `registry`, read at each scrape: per tier and plan, the transactions,
 * failed transactions, seconds holding a database connection and requests this process
 * counted (running totals: use `rate()`), the storage and tenants of each tier by the
 * latest snapshots (read in the background at most every `storageMaxAgeMs`, default a
 * minute: a scrape serves the latest complete reading and never waits; the first scrape of
 * a process has none yet), and `tenantry_tenant_requests_top{tenant}`,
 * the 10 tenants with the most requests in the last complete minute — the only metric that
 * names tenants — with `tenantry_tenant_requests_rest`, the requests of all the others
 * together. Labels and series stay bounded at any number of tenants (invariant 9).
 *
 * @example
 * ```ts
 * registerUsageMetrics(registry, tenantry.usage);
 * ```
 */
export function registerUsageMetrics(
  registry: Registry,
  usage: UsageService,
  options: { storageMaxAgeMs?: number } = {},
): void {
  const meter = usage.meter;
  if (meter) {
    const totals: readonly [string, string, 'transactions' | 'errors' | 'requests' | 'dbTimeMs'][] = [
      ['tenantry_tenant_transactions_total', 'Tenant transactions by tier and plan', 'transactions'],
      [
        'tenantry_tenant_transaction_errors_total',
        'Tenant transactions that ended in an error, by tier and plan',
        'errors',
      ],
      ['tenantry_tenant_requests_total', 'Tenant requests by tier and plan', 'requests'],
      [
        'tenantry_tenant_db_seconds_total',
        'Seconds tenant transactions held a database connection, by tier and plan',
        'dbTimeMs',
      ],
    ];
    for (const [name, help, field] of totals) {
      new Gauge({
        name,
        help,
        labelNames: ['tier', 'plan'],
        registers: [registry],
        collect() {
          for (const t of meter.totals()) {
            this.set({ tier: t.tier, plan: t.plan }, field === 'dbTimeMs' ? t[field] / 1000 : t[field]);
          }
        },
      });
    }
    // Requests per tenant in the last complete minute: marks taken once a minute, at a scrape.
    // The 10 busiest are named; the others are one sum, so the series stay 11 at any fleet size.
    const NAMED = 10;
    const marks = new WeakMap<TenantUsage, number>();
    let markedAt = 0;
    let last: { top: [string, number][]; rest: number } | undefined;
    const sinceMark = (): { top: [string, number][]; rest: number } => {
      // One pass keeping the NAMED busiest in order: no sort of every tenant counted.
      const top: [string, number][] = [];
      let total = 0;
      for (const u of meter.tenants()) {
        const n = u.requests - (marks.get(u) ?? 0);
        if (n <= 0) continue;
        total += n;
        if (top.length === NAMED && n <= (top[NAMED - 1] as [string, number])[1]) continue;
        let i = top.length;
        while (i > 0 && (top[i - 1] as [string, number])[1] < n) i--;
        top.splice(i, 0, [u.tenantId, n]);
        if (top.length > NAMED) top.pop();
      }
      return { top, rest: total - top.reduce((sum, [, n]) => sum + n, 0) };
    };
    // Both gauges are collected in one scrape: the minute is read once for them.
    const minute = () => {
      const now = performance.now();
      if (now - markedAt >= 60_000) {
        last = sinceMark();
        for (const u of meter.tenants()) marks.set(u, u.requests);
        markedAt = now;
      }
      // Before the first complete minute: the minute so far.
      return last && last.top.length > 0 ? last : sinceMark();
    };
    let current: ReturnType<typeof minute> = { top: [], rest: 0 };
    new Gauge({
      name: 'tenantry_tenant_requests_top',
      help: `Requests of the busiest tenants in the last minute (at most ${NAMED} tenants are named)`,
      labelNames: ['tenant'],
      registers: [registry],
      collect() {
        current = minute();
        this.reset();
        for (const [tenant, n] of current.top) this.set({ tenant }, n);
      },
    });
    new Gauge({
      name: 'tenantry_tenant_requests_rest',
      help: 'Requests in the last minute of the tenants not named in tenantry_tenant_requests_top, together',
      registers: [registry],
      collect() {
        this.set(current.rest);
      },
    });
  }
  // Summed over the latest snapshot of every tenant: read in the background at most once a
  // minute, so no scrape waits for it, however many tenants there are.
  const storage = new BackgroundReading(() => usage.storageByTier(), options.storageMaxAgeMs ?? 60_000);
  new Gauge({
    name: 'tenantry_tier_storage_bytes',
    help: 'Storage of the tenants of each tier by their latest snapshot (pool tier: estimated)',
    labelNames: ['tier'],
    registers: [registry],
    collect() {
      for (const r of storage.latest() ?? []) this.set({ tier: r.tier }, r.bytes);
    },
  });
  new Gauge({
    name: 'tenantry_tier_tenants_measured',
    help: 'Tenants of each tier with a snapshot',
    labelNames: ['tier'],
    registers: [registry],
    collect() {
      for (const r of storage.latest() ?? []) this.set({ tier: r.tier }, r.tenants);
    },
  });
}

/**
 * Gauges of the background job queue by plan, read at each scrape (one query): jobs due
 * and waiting, running, dead-lettered, and the age of the oldest waiting job. The label is
 * the plan, never the tenant (invariant 9).
 *
 * @example
 * ```ts
 * registerJobMetrics(registry, tenantry);
 * ```
 */
export function registerJobMetrics(registry: Registry, tenantry: Pick<Tenantry<unknown>, 'jobs'>): void {
  let pending: Promise<Awaited<ReturnType<typeof tenantry.jobs.planStats>>> | undefined;
  // The four gauges are collected one after the other in one scrape: one query serves them.
  const stats = () => {
    pending ??= tenantry.jobs.planStats().finally(() => {
      setImmediate(() => {
        pending = undefined;
      });
    });
    return pending;
  };
  const gauges = [
    ['tenantry_jobs_backlog', 'Jobs due and waiting to run, by plan', 'backlog'],
    ['tenantry_jobs_running', 'Jobs running, by plan', 'running'],
    ['tenantry_jobs_dead_letters', 'Dead-lettered jobs (failed after their last attempt), by plan', 'failed'],
    ['tenantry_jobs_oldest_age_seconds', 'Age of the oldest job due and waiting, by plan', 'oldestAgeSeconds'],
  ] as const;
  for (const [name, help, field] of gauges) {
    new Gauge({
      name,
      help,
      labelNames: ['plan'],
      registers: [registry],
      async collect() {
        this.reset();
        try {
          for (const row of await stats()) this.set({ plan: row.plan }, row[field]);
        } catch {
          // The database is unreachable: the gauges stay empty for this scrape.
        }
      },
    });
  }
}
