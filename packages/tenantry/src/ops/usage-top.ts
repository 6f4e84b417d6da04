import type { Pool } from 'pg';
import { USAGE_TOTALS_WINDOWS } from '../migrate/usage-windows-migration.ts';
import { FIGURES, type FigureRow, type UsageRanking } from './usage-figures.ts';
import { USAGE_COLUMNS } from './usage-meter.ts';
import { advanceUsageWindows } from './usage-windows.ts';

/** A ranking as a sum over per-minute rows `u`. */
const SUMMED: Record<UsageRanking, string> = {
  time: 'sum(u.db_time_ms)',
  transactions: 'sum(u.transactions)',
  statements: 'sum(u.statements)',
  errors: 'sum(u.errors)',
  requests: 'sum(u.requests)',
  rows: 'sum(u.rows_read + u.rows_written)',
};

/** A ranking as a column of the running totals `t`: the expressions their indexes are on. */
const TOTALLED: Record<UsageRanking, string> = {
  time: 't.db_time_ms',
  transactions: 't.transactions',
  statements: 't.statements',
  errors: 't.errors',
  requests: 't.requests',
  rows: '(t.rows_read + t.rows_written)',
};

/** Reads of the totals before the answer falls back to the scan (each read after the first advances). */
const ATTEMPTS = 3;

/**
 * The `limit` tenants with the most `by` in the `window` (an SQL interval) by summing every
 * per-minute row in it: exact for any window, and what the running totals must equal, but
 * its cost follows the tenants active in the window. Rows: `tenant_id`, `slug`, `tier`,
 * `plan` and the columns of {@link FIGURES}, best first, ties by tenant id.
 */
export async function scanTop(pool: Pool, by: UsageRanking, window: string, limit: number): Promise<FigureRow[]> {
  // Ranked on the one figure first, from the usage rows alone; only the `limit` tenants
  // that make it are joined to the registry and get their other figures.
  const { rows } = await pool.query<FigureRow>(
    `WITH ranked AS (
       SELECT u.tenant_id, ${SUMMED[by]} AS rank FROM tenantry.tenant_usage_minutes u
        WHERE u.minute >= date_trunc('minute', now() - $1::interval)
        GROUP BY u.tenant_id ORDER BY 2 DESC, u.tenant_id LIMIT $2)
     SELECT r.tenant_id, t.slug, t.tier, t.plan, f.*
       FROM ranked r JOIN tenantry.tenants t ON t.id = r.tenant_id,
            LATERAL (SELECT ${FIGURES} FROM tenantry.tenant_usage_minutes u
                      WHERE u.tenant_id = r.tenant_id AND u.minute >= date_trunc('minute', now() - $1::interval)) f
      ORDER BY r.rank DESC, r.tenant_id`,
    [window, limit],
  );
  return rows;
}

/**
 * The statement of {@link totalsTop} for `by` (`$1` the window in minutes, `$2` the limit):
 * the window's row, whether its totals start where the window does now (`current`), and its
 * first `limit` totals by `by`, read in the order of that ranking's index (none: one row of
 * nulls besides `current`).
 */
export const totalsTopSql = (by: UsageRanking): string => `
SELECT w.since = date_trunc('minute', now()) - make_interval(mins => $1) AS current, r.*
  FROM tenantry.tenant_usage_windows w
  LEFT JOIN LATERAL (
    SELECT t.tenant_id, te.slug, te.tier, te.plan, t.rank,
           ${USAGE_COLUMNS.map((c) => `t.${c}::float8 AS ${c}`).join(', ')}
      FROM (SELECT t.*, ${TOTALLED[by]} AS rank FROM tenantry.tenant_usage_window_totals t
             WHERE t.window_minutes = w.window_minutes AND t.minutes > 0
             ORDER BY ${TOTALLED[by]} DESC, t.tenant_id LIMIT $2) t
      JOIN tenantry.tenants te ON te.id = t.tenant_id) r ON true
 WHERE w.window_minutes = $1
 ORDER BY r.rank DESC, r.tenant_id`;

/**
 * What {@link scanTop} returns, from the running totals of a window of
 * `USAGE_TOTALS_WINDOWS` (migration 0026): an index range read of `limit` rows, whatever
 * the number of tenants. When the totals lag (a minute began since the last advance), the
 * window is advanced (`tenantry.usage_windows_advance()`, which subtracts the minutes that
 * left) and read again. `undefined` when the window has no totals, or still lags after
 * {@link ATTEMPTS} reads (minutes turning over during each): the caller scans.
 */
export async function totalsTop(
  pool: Pool,
  by: UsageRanking,
  windowMinutes: number,
  limit: number,
): Promise<FigureRow[] | undefined> {
  if (!USAGE_TOTALS_WINDOWS.includes(windowMinutes)) return undefined;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (attempt > 0) await advanceUsageWindows(pool);
    const { rows } = await pool.query<FigureRow>(totalsTopSql(by), [windowMinutes, limit]);
    if (rows[0] === undefined) return undefined;
    if (rows[0].current === true) return rows.filter((r) => r.tenant_id !== null);
  }
  return undefined;
}
