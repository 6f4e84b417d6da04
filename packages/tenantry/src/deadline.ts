/**
 * Races `work` against a timer: rejects after `ms` unless `work` settled first. A client's
 * own "not connected" check only covers a connection it already knows is down; a stalled
 * server or a half-open TCP connection never answers, and without a deadline every caller
 * would wait as long as the outage.
 *
 * @example
 * ```ts
 * const reply = await withDeadline(redis.eval(script, { keys, arguments: args }), 200);
 * ```
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what = 'Redis'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  // The work may still fail after the deadline; that rejection must not go unhandled.
  work.catch(() => {});
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
