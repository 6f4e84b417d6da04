/** How long a failed job waits before its next run. */
export interface BackoffPolicy {
  /** First delay in ms (attempt 1). */
  readonly baseMs: number;
  /** Ceiling in ms. */
  readonly maxMs: number;
}

/**
 * Exponential backoff with full jitter (a uniform draw in [delay/2, delay]): the delay
 * doubles per attempt up to `maxMs`, and the draw keeps the retries of many jobs that
 * failed together (a database restart, an outage of a provider) from coming back together.
 *
 * @param attempt - the run that just failed, from 1.
 * @example
 * ```ts
 * retryDelayMs(3, { baseMs: 1000, maxMs: 60_000 }); // between 2000 and 4000
 * ```
 */
export function retryDelayMs(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
