import type { RateLimitDecision } from './rate-limit.ts';

/** Quoted policy names: the same few on every response. */
const QUOTED = new Map<string, string>();

/**
 * A Structured Field String (RFC 9651 §3.3.3): quoted, with `\` and `"` escaped. Plan names
 * are already restricted to a safe alphabet; escaping anyway keeps the field parseable if
 * that rule ever loosens. Characters outside printable ASCII are not allowed in an sf-string.
 */
function sfString(value: string): string {
  let quoted = QUOTED.get(value);
  if (quoted === undefined) {
    quoted = `"${value.replace(/[^\x20-\x7e]/g, '?').replace(/[\\"]/g, '\\$&')}"`;
    // Policy names are plan names: a handful. The bound only guards against a misuse.
    if (QUOTED.size >= 1000) QUOTED.clear();
    QUOTED.set(value, quoted);
  }
  return quoted;
}

function nonNegativeInteger(value: number): number {
  return Number.isFinite(value) ? Math.max(0, Math.ceil(value)) : 0;
}

/**
 * The response header fields of a {@link RateLimitDecision}, in the syntax of
 * draft-ietf-httpapi-ratelimit-headers (-08 and later, checked against -11): policy
 * identifiers are quoted Structured Field strings and the parameters are `q`/`w` (quota,
 * window in seconds) and `r`/`t` (remaining quota, seconds until the window ends).
 *
 * - `RateLimit-Policy`: the plan's policy, plus its burst policy when the plan has one.
 * - `RateLimit`: the live counters. Left out of a degraded decision: while Redis is away
 *   nothing was counted, and the draft lets a server omit what it does not know.
 * - `Retry-After` (RFC 9110, delay-seconds) when the request is denied.
 *
 * @example
 * ```ts
 * rateLimitHeaders(await limiter.consume(tenant.id, 'free'));
 * // { 'RateLimit-Policy': '"free";q=60;w=60', RateLimit: '"free";r=59;t=60' }
 * ```
 */
export function rateLimitHeaders(decision: RateLimitDecision): Record<string, string> {
  const policies = [
    `${sfString(decision.policy)};q=${nonNegativeInteger(decision.limit)};w=${Math.max(1, nonNegativeInteger(decision.windowSeconds))}`,
  ];
  const limits = [
    `${sfString(decision.policy)};r=${nonNegativeInteger(decision.remaining)};t=${nonNegativeInteger(decision.resetSeconds)}`,
  ];
  const burst = decision.burst;
  if (burst) {
    policies.push(
      `${sfString(burst.policy)};q=${nonNegativeInteger(burst.limit)};w=${Math.max(1, nonNegativeInteger(burst.windowSeconds))}`,
    );
    // The burst counter is only read once the per-minute budget is spent; until then it is unknown.
    if (burst.remaining !== undefined && burst.resetSeconds !== undefined) {
      limits.push(
        `${sfString(burst.policy)};r=${nonNegativeInteger(burst.remaining)};t=${nonNegativeInteger(burst.resetSeconds)}`,
      );
    }
  }
  const headers: Record<string, string> = { 'RateLimit-Policy': policies.join(', ') };
  if (!decision.degraded) headers.RateLimit = limits.join(', ');
  if (!decision.allowed) {
    headers['Retry-After'] = String(
      Math.max(1, nonNegativeInteger(decision.retryAfterSeconds ?? decision.resetSeconds)),
    );
  }
  return headers;
}
