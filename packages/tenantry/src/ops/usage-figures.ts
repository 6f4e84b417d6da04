import { USAGE_COLUMNS } from './usage-meter.ts';
import type { UsageFigures } from './usage-service.ts';

/** Every counted column summed over the selected per-minute rows, as `float8` (0 when none). */
export const FIGURES = USAGE_COLUMNS.map((c) => `coalesce(sum(${c}), 0)::float8 AS ${c}`).join(', ');

/** A row of figures as PostgreSQL returns them, by column name. */
export type FigureRow = Record<string, number | string | boolean | null>;

/**
 * The {@link UsageFigures} of a row holding the columns of {@link FIGURES}; milliseconds
 * rounded to the microsecond.
 */
export function figures(r: FigureRow | undefined): UsageFigures {
  const n = (k: string) => Number(r?.[k] ?? 0);
  return {
    transactions: n('transactions'),
    statements: n('statements'),
    dbTimeMs: Math.round(n('db_time_ms') * 1000) / 1000,
    rowsRead: n('rows_read'),
    rowsWritten: n('rows_written'),
    errors: n('errors'),
    requests: n('requests'),
    status2xx: n('status_2xx'),
    status3xx: n('status_3xx'),
    status4xx: n('status_4xx'),
    status5xx: n('status_5xx'),
    bytesIn: n('bytes_in'),
    bytesOut: n('bytes_out'),
    apiKeyRequests: n('api_key_requests'),
  };
}
