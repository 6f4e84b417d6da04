import { USAGE_COLUMNS } from './usage-meter.ts';

/** What `top` ranks tenants by. */
export type UsageRanking = 'time' | 'transactions' | 'statements' | 'errors' | 'requests' | 'rows';
/** Every {@link UsageRanking}, for validation and help texts. */
export const USAGE_RANKINGS: readonly UsageRanking[] = [
  'time',
  'transactions',
  'statements',
  'errors',
  'requests',
  'rows',
];

/** The figures of one tenant over a window (or one day). */
export interface UsageFigures {
  readonly transactions: number;
  readonly statements: number;
  /** Milliseconds its transactions held a database connection. */
  readonly dbTimeMs: number;
  readonly rowsRead: number;
  readonly rowsWritten: number;
  /** Transactions that ended in an error. */
  readonly errors: number;
  readonly requests: number;
  readonly status2xx: number;
  readonly status3xx: number;
  readonly status4xx: number;
  readonly status5xx: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly apiKeyRequests: number;
}

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
