import type { ClientBase, Pool } from 'pg';

/** One normalized statement of `pg_stat_statements` (values are `$n` placeholders). */
export interface SlowStatement {
  readonly queryId: string;
  readonly query: string;
  readonly calls: number;
  readonly totalMs: number;
  readonly meanMs: number;
  readonly rows: number;
  /** Share of its block reads served from shared buffers (0–1), `null` when it read none. */
  readonly cacheHitRatio: number | null;
}

/**
 * What {@link slowQueries} found. When `pg_stat_statements` is not there, `available` is
 * false and `reason` says why in plain words (not preloaded, or preloaded but the
 * extension not created in this database) and what to do.
 */
export interface SlowQueryReport {
  readonly available: boolean;
  readonly reason?: string;
  readonly statements: readonly SlowStatement[];
}

/** Options of {@link slowQueries}. */
export interface SlowQueryOptions {
  /** Most statements returned, slowest total time first (default 20, at most 500). */
  readonly limit?: number;
  /** Only statements whose mean time is at least this (default 0). */
  readonly minMeanMs?: number;
}

/**
 * Why `pg_stat_statements` cannot be read on this connection, or `undefined` when it can.
 * It needs `shared_preload_libraries = 'pg_stat_statements'` (a server restart) and
 * `CREATE EXTENSION pg_stat_statements` in the database.
 *
 * @example
 * ```ts
 * const missing = await statementsUnavailable(tenantry.adminPool);
 * if (missing) console.log(missing);
 * ```
 */
export async function statementsUnavailable(client: Pool | ClientBase): Promise<string | undefined> {
  const { rows } = await client.query<{ preloaded: boolean; created: boolean; available: boolean }>(
    `SELECT 'pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) AS preloaded,
            EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS created,
            EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS available`,
  );
  const r = rows[0];
  if (!r?.preloaded) {
    return (
      'pg_stat_statements is not loaded on this server: add it to shared_preload_libraries ' +
      '(a restart), then CREATE EXTENSION pg_stat_statements in this database'
    );
  }
  if (!r.created) {
    return r.available
      ? 'pg_stat_statements is loaded but not created in this database: CREATE EXTENSION pg_stat_statements'
      : 'pg_stat_statements is loaded but its extension files are not installed (the contrib package)';
  }
  return undefined;
}

/**
 * The slowest statements of the current database by total time, from `pg_stat_statements`
 * when it is available; otherwise says so plainly (`available: false` and the reason).
 *
 * @example
 * ```ts
 * const report = await slowQueries(tenantry.adminPool, { limit: 10, minMeanMs: 50 });
 * if (!report.available) console.log(report.reason);
 * for (const s of report.statements) console.log(s.meanMs.toFixed(1), s.calls, s.query);
 * ```
 */
export async function slowQueries(client: Pool | ClientBase, options: SlowQueryOptions = {}): Promise<SlowQueryReport> {
  const reason = await statementsUnavailable(client);
  if (reason) return Object.freeze({ available: false, reason, statements: Object.freeze([]) });
  const limit = Math.min(500, Math.max(1, Math.floor(options.limit ?? 20)));
  const { rows } = await client.query<StatementRow>(
    `SELECT s.queryid::text AS query_id, s.query, s.calls, s.total_exec_time AS total_ms, s.mean_exec_time AS mean_ms, s.rows,
            CASE WHEN s.shared_blks_hit + s.shared_blks_read > 0
                 THEN s.shared_blks_hit::float8 / (s.shared_blks_hit + s.shared_blks_read) END AS hit
       FROM pg_stat_statements s
      WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND s.mean_exec_time >= $1
        AND s.query !~* '^\\s*(BEGIN|COMMIT|ROLLBACK|SET|RESET|SHOW|DEALLOCATE|PREPARE|EXPLAIN)\\M'
        AND s.query NOT LIKE '%pg_stat_statements%'
      ORDER BY s.total_exec_time DESC
      LIMIT $2`,
    [options.minMeanMs ?? 0, limit],
  );
  return Object.freeze({ available: true, statements: Object.freeze(rows.map(toStatement)) });
}

/**
 * Calls and count of statements whose mean time is at least `thresholdMs`, for the
 * `tenantry_db_slow_*` gauges; `null` without `pg_stat_statements`.
 */
export async function slowStatementTotals(
  client: Pool | ClientBase,
  thresholdMs: number,
): Promise<{ statements: number; calls: number } | null> {
  if (await statementsUnavailable(client)) return null;
  const { rows } = await client.query<{ statements: string; calls: string | null }>(
    `SELECT count(*) AS statements, sum(calls) AS calls FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND mean_exec_time >= $1`,
    [thresholdMs],
  );
  return { statements: Number(rows[0]?.statements ?? 0), calls: Number(rows[0]?.calls ?? 0) };
}

interface StatementRow {
  query_id: string;
  query: string;
  calls: string;
  total_ms: number;
  mean_ms: number;
  rows: string;
  hit: number | null;
}

function toStatement(r: StatementRow): SlowStatement {
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return Object.freeze({
    queryId: r.query_id,
    query: r.query,
    calls: Number(r.calls),
    totalMs: round(r.total_ms),
    meanMs: round(r.mean_ms),
    rows: Number(r.rows),
    cacheHitRatio: r.hit === null ? null : round(r.hit),
  });
}
