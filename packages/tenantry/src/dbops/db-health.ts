import type { Pool } from 'pg';
import type { PoolMapStats } from '../transaction/pool-map.ts';

/** A session that has been in one state for too long (a statement or an open transaction). */
export interface LongSession {
  readonly pid: number;
  /** `active` (a statement running) or `idle in transaction` (a transaction left open). */
  readonly state: string;
  readonly applicationName: string;
  readonly database: string | null;
  /** Seconds since the transaction began. */
  readonly transactionSeconds: number;
  /** The statement, cut at 200 characters (its values are parameters, not in the text). */
  readonly query: string;
}

/** A session waiting for a lock another one holds. */
export interface BlockedSession {
  readonly pid: number;
  readonly blockedBy: readonly number[];
  readonly waitingSeconds: number;
  readonly query: string;
}

/**
 * What {@link databaseHealth} found. `status` is `ok`, or `warning`/`critical` with the
 * reasons in `problems` (thresholds in {@link HealthThresholds}).
 */
export interface DatabaseHealth {
  readonly status: 'ok' | 'warning' | 'critical';
  readonly problems: readonly string[];
  readonly connected: boolean;
  readonly serverVersion: string;
  readonly connections: { readonly used: number; readonly max: number; readonly ratio: number };
  /** The pool map of database-tier tenants (when given). */
  readonly poolMap: PoolMapStats | null;
  readonly longRunning: readonly LongSession[];
  readonly idleInTransaction: readonly LongSession[];
  readonly blocked: readonly BlockedSession[];
  /** Replicas streaming from this server, with their replay lag (empty without one). */
  readonly replication: readonly {
    readonly name: string;
    readonly state: string;
    readonly lagSeconds: number | null;
    readonly lagBytes: number | null;
  }[];
  /** `pg_is_in_recovery()`: this server is itself a replica; `replicaLagSeconds` is its own lag. */
  readonly inRecovery: boolean;
  readonly replicaLagSeconds: number | null;
  /** Transaction-id age of the oldest database (wraparound at 2^31; autovacuum forces a freeze at 200 M). */
  readonly wraparound: { readonly database: string; readonly xidAge: number; readonly ratio: number };
  /** Checkpoints since the statistics reset: requested (forced by WAL volume) vs timed; a high share of requested means `max_wal_size` is too small. */
  readonly checkpoints: { readonly timed: number; readonly requested: number; readonly requestedRatio: number };
}

/** When {@link databaseHealth} calls something a problem. */
export interface HealthThresholds {
  /** A statement or transaction older than this is "long running" (default 60 s). */
  readonly longRunningSeconds?: number;
  /** Connections used over `max_connections` above which it warns (default 0.8; critical at 0.95). */
  readonly connectionsWarnRatio?: number;
  /** xid age over 2^31 above which it warns (default 0.5; critical at 0.75). */
  readonly wraparoundWarnRatio?: number;
  /** Replay lag above which it warns (default 30 s). */
  readonly replicationLagWarnSeconds?: number;
}

const WRAPAROUND = 2 ** 31;

/**
 * Reads the health of the PostgreSQL server behind `pool` (the admin pool): connectivity,
 * connections against `max_connections`, the pool map's gauges, long-running and
 * idle-in-transaction sessions, blocked locks, replication lag, transaction-id wraparound
 * age and checkpoint pressure. Catalog and statistics views only; never fails on a
 * server it cannot reach (`connected: false`, `status: 'critical'`).
 *
 * @example
 * ```ts
 * const health = await databaseHealth(tenantry.adminPool, { poolMap: tenantry.poolMap.stats() });
 * if (health.status !== 'ok') console.warn(health.problems.join('\n'));
 * ```
 */
export async function databaseHealth(
  pool: Pool,
  options: { poolMap?: PoolMapStats; thresholds?: HealthThresholds } = {},
): Promise<DatabaseHealth> {
  const t = options.thresholds ?? {};
  const longSeconds = t.longRunningSeconds ?? 60;
  const connWarn = t.connectionsWarnRatio ?? 0.8;
  const wrapWarn = t.wraparoundWarnRatio ?? 0.5;
  const lagWarn = t.replicationLagWarnSeconds ?? 30;
  let base: BaseRow;
  try {
    base = (await pool.query<BaseRow>(BASE_SQL)).rows[0] as BaseRow;
  } catch (error) {
    return unreachable(error, options.poolMap ?? null);
  }
  const sessions = await pool.query<SessionRow>(SESSIONS_SQL, [longSeconds]);
  const blocked = await pool.query<BlockedRow>(BLOCKED_SQL);
  const replication = await pool.query<ReplicationRow>(REPLICATION_SQL);
  const checkpoints = await pool.query<{ timed: string; requested: string }>(
    base.version_num >= 170000 ? CHECKPOINTS_SQL_17 : CHECKPOINTS_SQL,
  );
  const toSession = (r: SessionRow): LongSession =>
    Object.freeze({
      pid: r.pid,
      state: r.state,
      applicationName: r.application_name,
      database: r.datname,
      transactionSeconds: Number(r.xact_seconds),
      query: r.query,
    });
  const longRunning = sessions.rows.filter((r) => r.state === 'active').map(toSession);
  const idle = sessions.rows.filter((r) => r.state.startsWith('idle in transaction')).map(toSession);
  const used = Number(base.used);
  const max = Number(base.max_connections);
  const xidAge = Number(base.xid_age);
  const timed = Number(checkpoints.rows[0]?.timed ?? 0);
  const requested = Number(checkpoints.rows[0]?.requested ?? 0);
  const problems: string[] = [];
  let level = 0;
  const flag = (severity: 1 | 2, message: string) => {
    problems.push(message);
    level = Math.max(level, severity);
  };
  const connRatio = max > 0 ? used / max : 0;
  if (connRatio >= 0.95) flag(2, `connections ${used}/${max} (≥ 95 % of max_connections)`);
  else if (connRatio >= connWarn)
    flag(1, `connections ${used}/${max} (≥ ${Math.round(connWarn * 100)} % of max_connections)`);
  const pm = options.poolMap ?? null;
  if (pm && pm.waiters > 0)
    flag(1, `${pm.waiters} requests wait for a tenant-database connection (pool map saturated)`);
  if (longRunning.length > 0) flag(1, `${longRunning.length} statements running longer than ${longSeconds} s`);
  if (idle.length > 0)
    flag(1, `${idle.length} transactions idle for longer than ${longSeconds} s (they hold locks and stop vacuum)`);
  if (blocked.rows.length > 0) flag(1, `${blocked.rows.length} sessions wait for a lock`);
  const wrapRatio = xidAge / WRAPAROUND;
  if (wrapRatio >= 0.75)
    flag(2, `transaction-id age ${xidAge} in ${base.oldest_db} (${Math.round(wrapRatio * 100)} % of wraparound)`);
  else if (wrapRatio >= wrapWarn)
    flag(1, `transaction-id age ${xidAge} in ${base.oldest_db} (${Math.round(wrapRatio * 100)} % of wraparound)`);
  const lags = replication.rows.map((r) =>
    Object.freeze({
      name: r.application_name,
      state: r.state,
      lagSeconds: r.lag_seconds === null ? null : Number(r.lag_seconds),
      lagBytes: r.lag_bytes === null ? null : Number(r.lag_bytes),
    }),
  );
  for (const r of lags) {
    if (r.lagSeconds !== null && r.lagSeconds > lagWarn) flag(1, `replica ${r.name} lags ${r.lagSeconds} s`);
  }
  const replicaLag = base.replica_lag === null ? null : Number(base.replica_lag);
  if (replicaLag !== null && replicaLag > lagWarn) flag(1, `this replica lags ${replicaLag} s behind its primary`);
  const requestedRatio = timed + requested > 0 ? requested / (timed + requested) : 0;
  if (timed + requested >= 10 && requestedRatio > 0.5) {
    flag(1, `${Math.round(requestedRatio * 100)} % of checkpoints were forced by WAL volume (raise max_wal_size)`);
  }
  return Object.freeze({
    status: (['ok', 'warning', 'critical'] as const)[level] ?? 'critical',
    problems: Object.freeze(problems),
    connected: true,
    serverVersion: base.version,
    connections: Object.freeze({ used, max, ratio: round(connRatio) }),
    poolMap: pm,
    longRunning: Object.freeze(longRunning),
    idleInTransaction: Object.freeze(idle),
    blocked: Object.freeze(
      blocked.rows.map((r) =>
        Object.freeze({
          pid: r.pid,
          blockedBy: r.blocked_by,
          waitingSeconds: Number(r.waiting_seconds),
          query: r.query,
        }),
      ),
    ),
    replication: Object.freeze(lags),
    inRecovery: base.in_recovery,
    replicaLagSeconds: replicaLag,
    wraparound: Object.freeze({ database: base.oldest_db, xidAge, ratio: round(wrapRatio) }),
    checkpoints: Object.freeze({ timed, requested, requestedRatio: round(requestedRatio) }),
  });
}

function round(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}

function unreachable(error: unknown, poolMap: PoolMapStats | null): DatabaseHealth {
  return Object.freeze({
    status: 'critical',
    problems: Object.freeze([`PostgreSQL is unreachable: ${(error as Error).message}`]),
    connected: false,
    serverVersion: '',
    connections: { used: 0, max: 0, ratio: 0 },
    poolMap,
    longRunning: [],
    idleInTransaction: [],
    blocked: [],
    replication: [],
    inRecovery: false,
    replicaLagSeconds: null,
    wraparound: { database: '', xidAge: 0, ratio: 0 },
    checkpoints: { timed: 0, requested: 0, requestedRatio: 0 },
  });
}

interface BaseRow {
  version: string;
  version_num: number;
  used: string;
  max_connections: string;
  oldest_db: string;
  xid_age: string;
  in_recovery: boolean;
  replica_lag: string | null;
}

const BASE_SQL = `
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections') AS max_connections,
       o.datname AS oldest_db, o.age AS xid_age,
       pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery()
            THEN round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 1) END AS replica_lag
  FROM (SELECT datname, age(datfrozenxid) AS age FROM pg_database ORDER BY 2 DESC LIMIT 1) o`;

// The checkpoint counters: pg_stat_bgwriter up to PostgreSQL 16, pg_stat_checkpointer from 17.
const CHECKPOINTS_SQL = 'SELECT checkpoints_timed AS timed, checkpoints_req AS requested FROM pg_stat_bgwriter';
const CHECKPOINTS_SQL_17 = 'SELECT num_timed AS timed, num_requested AS requested FROM pg_stat_checkpointer';

interface SessionRow {
  pid: number;
  state: string;
  application_name: string;
  datname: string | null;
  xact_seconds: string;
  query: string;
}

const SESSIONS_SQL = `
SELECT pid, state, application_name, datname,
       round(extract(epoch FROM now() - coalesce(xact_start, query_start))::numeric, 1) AS xact_seconds,
       left(query, 200) AS query
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
   AND (state = 'active' OR state LIKE 'idle in transaction%')
   AND now() - coalesce(xact_start, query_start) > make_interval(secs => $1)
 ORDER BY xact_start NULLS LAST
 LIMIT 50`;

interface BlockedRow {
  pid: number;
  blocked_by: number[];
  waiting_seconds: string;
  query: string;
}

const BLOCKED_SQL = `
SELECT pid, pg_blocking_pids(pid) AS blocked_by,
       round(extract(epoch FROM now() - coalesce(state_change, query_start))::numeric, 1) AS waiting_seconds,
       left(query, 200) AS query
  FROM pg_stat_activity
 WHERE wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(pid)) > 0
 LIMIT 50`;

interface ReplicationRow {
  application_name: string;
  state: string;
  lag_seconds: string | null;
  lag_bytes: string | null;
}

const REPLICATION_SQL = `
SELECT application_name, state,
       round(extract(epoch FROM replay_lag)::numeric, 1) AS lag_seconds,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END AS lag_bytes
  FROM pg_stat_replication`;
