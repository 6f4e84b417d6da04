import type { Pool } from 'pg';
import { Gauge, Registry } from 'prom-client';
import { slowStatementTotals } from '../dbops/slow-queries.ts';
import type { Tenantry } from '../tenantry.ts';
import { BackgroundReading } from './background-reading.ts';

/** Options of {@link dbMetrics}. */
export interface DbMetricsOptions {
  /** A statement whose mean time is at least this counts as slow (default 500 ms). */
  slowStatementMs?: number;
  /** Readings are reused for this long, so scrapes stay cheap (default 15 s). */
  cacheMs?: number;
}

interface Reading {
  connectionsUsed: number;
  connectionsMax: number;
  longTransactions: number;
  idleInTransaction: number;
  blocked: number;
  xidAgeRatio: number;
  replicationLagSeconds: number;
  slow: { statements: number; calls: number } | null;
}

type Storage = Record<'pool' | 'schema' | 'database', number>;

/**
 * The `tenantry_db_*` gauges on a registry of their own, read from PostgreSQL at scrape
 * time (at most once per `cacheMs`): connections against `max_connections`, pool
 * saturation (runtime and admin pools, the pool map), long and idle-in-transaction
 * transactions, blocked sessions, transaction-id wraparound, replication lag, slow
 * statements (`pg_stat_statements`) and storage per tier. Storage sums every relation of
 * every tenant schema, a reading that grows with the fleet: it is read in the background
 * (see {@link BackgroundReading}), so no scrape waits for it, and the first scrape of a
 * process has no storage gauge yet. Labels are fixed small sets
 * (`pool`, `tier`, `state`): never a tenant, whatever their number. Alert rules for them
 * are in docs/alerts.md.
 *
 * @example
 * ```ts
 * registerMetrics(app, tenantry, [dbMetrics(tenantry, { slowStatementMs: 250 })]);
 * ```
 */
export function dbMetrics(tenantry: Tenantry<unknown>, options: DbMetricsOptions = {}): Registry {
  const registry = new Registry();
  const slowMs = options.slowStatementMs ?? 500;
  const cacheMs = options.cacheMs ?? 15_000;
  let cached: { at: number; reading: Promise<Reading> } | undefined;
  const read = (): Promise<Reading> => {
    const now = Date.now();
    if (!cached || now - cached.at > cacheMs) {
      const reading = measure(tenantry, slowMs);
      cached = { at: now, reading };
      reading.catch(() => {
        if (cached?.reading === reading) cached = undefined; // retry at the next scrape
      });
    }
    return cached.reading;
  };
  const gauge = (name: string, help: string, labelNames: string[], set: (g: Gauge, r: Reading) => void) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const reading = await read().catch(() => undefined);
        this.reset();
        if (reading) set(this, reading);
      },
    });
  gauge(
    'tenantry_db_connections',
    'Server connections: used (client backends) and max (max_connections)',
    ['state'],
    (g, r) => {
      g.set({ state: 'used' }, r.connectionsUsed);
      g.set({ state: 'max' }, r.connectionsMax);
    },
  );
  new Gauge({
    name: 'tenantry_db_pool_saturation',
    help: 'Connections in use over the pool maximum (0–1), per pool of this process; waiting requests are in tenantry_db_pool_waiting',
    labelNames: ['pool'],
    registers: [registry],
    collect() {
      const ratio = (pool: Pool) => (pool.totalCount - pool.idleCount) / Math.max(1, pool.options.max ?? 10);
      const lender = tenantry.runtimeLender;
      this.set({ pool: 'runtime' }, (lender.totalCount - lender.idleCount) / Math.max(1, tenantry.config.pool.max));
      this.set({ pool: 'admin' }, ratio(tenantry.adminPool));
      const map = tenantry.poolMap.stats();
      this.set({ pool: 'pool_map' }, map.connectionsInUse / Math.max(1, tenantry.config.tenantDatabases.max));
    },
  });
  new Gauge({
    name: 'tenantry_db_pool_waiting',
    help: 'Requests waiting for a connection, per pool of this process',
    labelNames: ['pool'],
    registers: [registry],
    collect() {
      this.set({ pool: 'runtime' }, tenantry.runtimeLender.waitingCount);
      this.set({ pool: 'admin' }, tenantry.adminPool.waitingCount);
      this.set({ pool: 'pool_map' }, tenantry.poolMap.stats().waiters);
    },
  });
  gauge('tenantry_db_long_transactions', 'Transactions open longer than 60 s, by state', ['state'], (g, r) => {
    g.set({ state: 'active' }, r.longTransactions);
    g.set({ state: 'idle_in_transaction' }, r.idleInTransaction);
  });
  gauge('tenantry_db_blocked_sessions', 'Sessions waiting for a lock another session holds', [], (g, r) =>
    g.set(r.blocked),
  );
  gauge(
    'tenantry_db_xid_age_ratio',
    'Transaction-id age of the oldest database over the wraparound limit (2^31); autovacuum must freeze before 1',
    [],
    (g, r) => g.set(r.xidAgeRatio),
  );
  gauge(
    'tenantry_db_replication_lag_seconds',
    'Largest replay lag of the replicas streaming from this server (0 without one)',
    [],
    (g, r) => g.set(r.replicationLagSeconds),
  );
  gauge(
    'tenantry_db_statements_available',
    '1 when pg_stat_statements can be read (slow-statement gauges are absent otherwise)',
    [],
    (g, r) => g.set(r.slow ? 1 : 0),
  );
  gauge(
    'tenantry_db_slow_statements',
    `Statements whose mean time is at least ${slowMs} ms (pg_stat_statements)`,
    [],
    (g, r) => {
      if (r.slow) g.set(r.slow.statements);
    },
  );
  gauge(
    'tenantry_db_slow_statement_calls',
    `Calls so far of the statements whose mean time is at least ${slowMs} ms; rate() of it is the slow-statement rate`,
    [],
    (g, r) => {
      if (r.slow) g.set(r.slow.calls);
    },
  );
  const storage = new BackgroundReading(() => measureStorage(tenantry), cacheMs);
  new Gauge({
    name: 'tenantry_db_storage_bytes',
    help: 'Bytes of tenant tables per tier: shared tables, tenant schemas, tenant databases (main server)',
    labelNames: ['tier'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [tier, n] of Object.entries(storage.latest() ?? {})) this.set({ tier }, n);
    },
  });
  return registry;
}

async function measure(tenantry: Tenantry<unknown>, slowMs: number): Promise<Reading> {
  const health = await tenantry.dbops.health();
  if (!health.connected) throw new Error('PostgreSQL is unreachable');
  const slow = await slowStatementTotals(tenantry.adminPool, slowMs);
  return {
    connectionsUsed: health.connections.used,
    connectionsMax: health.connections.max,
    longTransactions: health.longRunning.length,
    idleInTransaction: health.idleInTransaction.length,
    blocked: health.blocked.length,
    xidAgeRatio: health.wraparound.ratio,
    replicationLagSeconds: Math.max(0, ...health.replication.map((r) => r.lagSeconds ?? 0)),
    slow,
  };
}

/** Bytes of the shared tables, of every tenant schema's tables, and of every tenant database. */
async function measureStorage(tenantry: Tenantry<unknown>): Promise<Storage> {
  const { rows } = await tenantry.adminPool.query<{ pool: string; schema: string; database: string }>(
    `SELECT coalesce((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')), 0) AS pool,
            coalesce((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE c.relkind IN ('r', 'p') AND n.nspname IN
                         (SELECT schema_name FROM tenantry.targets WHERE kind = 'schema' AND state IN ('active', 'warm'))), 0) AS schema,
            coalesce((SELECT sum(pg_database_size(d.oid)) FROM pg_database d
                       WHERE d.datname IN (SELECT database_name FROM tenantry.targets WHERE kind = 'database' AND state = 'active')), 0) AS database`,
    [tenantry.config.tenantSchema],
  );
  const storage = rows[0] ?? { pool: '0', schema: '0', database: '0' };
  return { pool: Number(storage.pool), schema: Number(storage.schema), database: Number(storage.database) };
}
