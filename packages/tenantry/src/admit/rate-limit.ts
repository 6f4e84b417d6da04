import { Counter, Registry } from 'prom-client';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Logger } from '../config.ts';
import { withDeadline } from '../deadline.ts';
import { TenantryError } from '../errors/catalog.ts';
import {
  BURST_WINDOW_SECONDS,
  DEFAULT_PLANS,
  type PlanCatalog,
  RATE_LIMIT_WINDOW_SECONDS,
  type ResolvedPlan,
  resolvePlan,
  validatePlans,
} from './plans.ts';

/** What a rate limit decision does when Redis is unreachable or slower than `redisTimeoutMs`. */
export type RedisErrorPolicy = 'fail-open' | 'fail-closed';

/**
 * The subset of a node-redis v5 client (`createClient()` from `redis`) the limiter needs.
 * Declared locally, as kysely declares the part of `pg` it uses: node-redis's own
 * `RedisClientType` does not even accept the client `createClient()` returns once modules
 * are in play, and the core should not depend on Redis types.
 */
export interface RateLimitRedisClient {
  /** node-redis's connection state; while false, calls fail at once instead of queueing. */
  readonly isReady?: boolean;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/** Options of {@link TenantRateLimiter}. */
export interface TenantRateLimiterOptions {
  /**
   * A connected node-redis v5 client. With it, limits are atomic and shared by every
   * instance of the service; without it (no `REDIS_URL`), each process counts on its own.
   * The limiter never connects, closes or listens to the client: attach an `'error'`
   * listener yourself, or node-redis's reconnect errors crash the process.
   */
  readonly redis?: RateLimitRedisClient | undefined;
  /** Plan name → limits; default {@link DEFAULT_PLANS}. Must hold `free`, the fallback plan. */
  readonly plans?: PlanCatalog | undefined;
  /** Default `'fail-open'`: an outage of Redis must not become an outage of the API. */
  readonly onRedisError?: RedisErrorPolicy | undefined;
  /** Longest wait for Redis before `onRedisError` applies; default 200 ms. */
  readonly redisTimeoutMs?: number | undefined;
  /** Prefix of every Redis key; default `tenantry:rl`. Keys are `<prefix>:{<tenantId>}:<plan>[:burst]`. */
  readonly keyPrefix?: string | undefined;
  /** Where the metrics register; default a new Registry (never prom-client's global one). */
  readonly registry?: Registry | undefined;
  /** Told once when rate limiting degrades and once when it recovers (not on every request). */
  readonly logger?: Logger | undefined;
}

/** The burst allowance of a plan, as a second policy next to the per-minute one. */
export interface BurstState {
  /** `<plan>-burst`. */
  readonly policy: string;
  readonly limit: number;
  readonly windowSeconds: number;
  /** Live counters: present only when this request reached the burst allowance. */
  readonly remaining?: number;
  readonly resetSeconds?: number;
}

/** The answer of {@link TenantRateLimiter.consume}. */
export interface RateLimitDecision {
  /** False: answer 429 `RATE_LIMITED` with {@link rateLimitHeaders}. */
  readonly allowed: boolean;
  /** The plan whose limits applied (`free` for a plan the catalog does not know). */
  readonly policy: string;
  /** Requests per window. */
  readonly limit: number;
  readonly windowSeconds: number;
  /** Requests left in this window (0 once the tenant lives on its burst allowance). */
  readonly remaining: number;
  /** Seconds until this window ends. */
  readonly resetSeconds: number;
  /** When denied: seconds after which a retry can succeed. */
  readonly retryAfterSeconds?: number;
  /** Present when the plan has a burst allowance. */
  readonly burst?: BurstState;
  /**
   * Set when Redis did not answer in time and `onRedisError` decided instead: then
   * `remaining` and `resetSeconds` are not counted (fail-open reports the full limit).
   */
  readonly degraded?: RedisErrorPolicy;
}

/** A fail-closed denial cannot know when Redis returns; tell clients to back off a little. */
const DEGRADED_RETRY_AFTER_SECONDS = 5;

const TENANT_ID_MAX = 255;

interface PlanLimiter {
  readonly plan: ResolvedPlan;
  readonly main: RateLimiterAbstract;
  readonly burst: RateLimiterAbstract | undefined;
}

/** The static part of a plan's burst policy, or undefined when it has none. */
function burstOf(plan: ResolvedPlan): BurstState | undefined {
  const limit = plan.limits.burst;
  return limit ? { policy: `${plan.name}-burst`, limit, windowSeconds: BURST_WINDOW_SECONDS } : undefined;
}

function seconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

/** The registry's counter of that name, so two limiters can share one registry. */
function counter<L extends string>(registry: Registry, name: string, help: string, label: L): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing as Counter<L>;
  if (existing) throw new TenantryError('CONFIG_INVALID', `metric ${name} is already registered with another type`);
  return new Counter({ name, help, labelNames: [label], registers: [registry] });
}

/**
 * Per-tenant rate limits by plan, step 3 ("admit") of the request path. With Redis, one
 * atomic counter per tenant and window is shared by every instance; keys carry the tenant in
 * a Redis Cluster hash tag (`tenantry:rl:{<tenantId>}:pro`), so a tenant's keys share a slot.
 *
 * Metrics (labels bounded whatever the number of tenants):
 * `tenantry_rate_limit_decisions_total{outcome="allowed|limited"}` counts every decision,
 * degraded ones included; `tenantry_rate_limit_degraded_total{policy="fail-open|fail-closed"}`
 * counts decisions made without Redis.
 *
 * @example
 * ```ts
 * const redis = createClient({ url: process.env.REDIS_URL }).on('error', (e) => log.warn(e));
 * await redis.connect();
 * const limiter = new TenantRateLimiter({ redis, plans: definePlans(), onRedisError: 'fail-open' });
 * const decision = await limiter.consume(tenant.id, tenant.plan);
 * reply.headers(rateLimitHeaders(decision));
 * if (!decision.allowed) throw new TenantryError('RATE_LIMITED');
 * ```
 */
export class TenantRateLimiter {
  /** The registry holding this limiter's metrics. */
  readonly registry: Registry;
  readonly plans: PlanCatalog;
  readonly #limiters = new Map<string, PlanLimiter>();
  readonly #usesRedis: boolean;
  readonly #onRedisError: RedisErrorPolicy;
  readonly #timeoutMs: number;
  readonly #logger: Logger | undefined;
  readonly #decisions: Counter<'outcome'>;
  readonly #degradedTotal: Counter<'policy'>;
  #degradedNow = false;

  constructor(options: TenantRateLimiterOptions = {}) {
    const onRedisError = options.onRedisError ?? 'fail-open';
    if (onRedisError !== 'fail-open' && onRedisError !== 'fail-closed') {
      throw new TenantryError('CONFIG_INVALID', "onRedisError must be 'fail-open' or 'fail-closed'");
    }
    const timeoutMs = options.redisTimeoutMs ?? 200;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new TenantryError('CONFIG_INVALID', 'redisTimeoutMs must be a positive number');
    }
    const keyPrefix = options.keyPrefix ?? 'tenantry:rl';
    // A brace in the prefix would become the hash tag and put every tenant in one slot.
    if (typeof keyPrefix !== 'string' || keyPrefix === '' || /[{}]/.test(keyPrefix)) {
      throw new TenantryError('CONFIG_INVALID', 'keyPrefix must be a non-empty string without { or }');
    }
    this.plans = validatePlans(options.plans ?? DEFAULT_PLANS);
    this.#usesRedis = options.redis !== undefined;
    this.#onRedisError = onRedisError;
    this.#timeoutMs = timeoutMs;
    this.#logger = options.logger;
    this.registry = options.registry ?? new Registry();
    this.#decisions = counter(
      this.registry,
      'tenantry_rate_limit_decisions_total',
      'Rate limit decisions by outcome',
      'outcome',
    );
    this.#degradedTotal = counter(
      this.registry,
      'tenantry_rate_limit_degraded_total',
      'Rate limit decisions taken by the Redis error policy because Redis was unreachable or slow',
      'policy',
    );
    // Series that exist from the start make rate() and absent-alerts work before the first event.
    this.#decisions.inc({ outcome: 'allowed' }, 0);
    this.#decisions.inc({ outcome: 'limited' }, 0);
    this.#degradedTotal.inc({ policy: onRedisError }, 0);

    const store = (points: number, duration: number): RateLimiterAbstract =>
      options.redis
        ? new RateLimiterRedis({
            storeClient: options.redis,
            // node-redis v4+ takes eval(script, { keys, arguments }), not ioredis's argument list.
            useRedisPackage: true,
            // Fail at once while disconnected instead of filling node-redis's offline queue
            // with increments that would all land when it reconnects.
            rejectIfRedisNotReady: true,
            points,
            duration,
            keyPrefix,
          })
        : new RateLimiterMemory({ points, duration, keyPrefix });
    for (const [name, limits] of Object.entries(this.plans)) {
      this.#limiters.set(name, {
        plan: { name, limits },
        main: store(limits.requestsPerMinute, RATE_LIMIT_WINDOW_SECONDS),
        burst: limits.burst ? store(limits.burst, BURST_WINDOW_SECONDS) : undefined,
      });
    }
  }

  /**
   * Counts one request of `tenantId` against the limits of `plan` and says whether it may
   * proceed. Never throws for Redis trouble: after `redisTimeoutMs` the `onRedisError`
   * policy answers, with `degraded` set. Throws `INVALID_INPUT` for a malformed tenant id.
   *
   * @example
   * ```ts
   * const { allowed, remaining } = await limiter.consume(tenant.id, tenant.plan);
   * ```
   */
  async consume(tenantId: string, plan: string): Promise<RateLimitDecision> {
    // A brace in the id would move the hash tag: keep "{<tenantId>}" exactly the tenant's id.
    if (typeof tenantId !== 'string' || tenantId === '' || tenantId.length > TENANT_ID_MAX || /[{}]/.test(tenantId)) {
      throw new TenantryError('USAGE_ERROR', 'tenant id must be a non-empty string without { or }');
    }
    const limiter = this.#limiters.get(resolvePlan(this.plans, plan).name) as PlanLimiter;
    let decision: RateLimitDecision;
    if (!this.#usesRedis) {
      decision = await this.#decide(limiter, tenantId);
    } else {
      try {
        decision = await withDeadline(this.#decide(limiter, tenantId), this.#timeoutMs);
        if (this.#degradedNow) {
          this.#degradedNow = false;
          this.#logger?.info({ policy: this.#onRedisError }, 'Rate limiting recovered: Redis answers again');
        }
      } catch (error) {
        decision = this.#degrade(limiter, error);
      }
    }
    this.#decisions.inc({ outcome: decision.allowed ? 'allowed' : 'limited' });
    return decision;
  }

  async #decide({ plan, main, burst }: PlanLimiter, tenantId: string): Promise<RateLimitDecision> {
    const key = `{${tenantId}}:${plan.name}`;
    const base = { policy: plan.name, limit: plan.limits.requestsPerMinute, windowSeconds: RATE_LIMIT_WINDOW_SECONDS };
    const allowance = burstOf(plan);
    let spent: RateLimiterRes;
    try {
      const res = await main.consume(key);
      return {
        ...base,
        allowed: true,
        remaining: res.remainingPoints,
        resetSeconds: seconds(res.msBeforeNext),
        ...(allowance && { burst: allowance }),
      };
    } catch (rejection) {
      // rate-limiter-flexible rejects with a RateLimiterRes when the limit is reached and
      // with an Error when the store failed; only the first is a decision.
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      spent = rejection;
    }
    const exhausted = { ...base, remaining: 0, resetSeconds: seconds(spent.msBeforeNext) };
    if (!burst || !allowance) {
      return { ...exhausted, allowed: false, retryAfterSeconds: Math.max(1, exhausted.resetSeconds) };
    }
    try {
      const res = await burst.consume(`${key}:burst`);
      return {
        ...exhausted,
        allowed: true,
        burst: { ...allowance, remaining: res.remainingPoints, resetSeconds: seconds(res.msBeforeNext) },
      };
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      // Whichever window ends first gives the tenant a request back.
      const retryMs = Math.min(spent.msBeforeNext, rejection.msBeforeNext);
      return {
        ...exhausted,
        allowed: false,
        retryAfterSeconds: Math.max(1, seconds(retryMs)),
        burst: { ...allowance, remaining: 0, resetSeconds: seconds(rejection.msBeforeNext) },
      };
    }
  }

  #degrade({ plan }: PlanLimiter, error: unknown): RateLimitDecision {
    const policy = this.#onRedisError;
    this.#degradedTotal.inc({ policy });
    if (!this.#degradedNow) {
      // Once per outage: at hundreds of requests a second, a line per request would drown the log.
      this.#degradedNow = true;
      this.#logger?.warn({ err: error, policy }, `Rate limiting degraded (${policy}): Redis is unreachable or slow`);
    }
    const allowance = burstOf(plan);
    const base = {
      policy: plan.name,
      limit: plan.limits.requestsPerMinute,
      windowSeconds: RATE_LIMIT_WINDOW_SECONDS,
      degraded: policy,
      ...(allowance && { burst: allowance }),
    };
    return policy === 'fail-open'
      ? { ...base, allowed: true, remaining: base.limit, resetSeconds: RATE_LIMIT_WINDOW_SECONDS }
      : {
          ...base,
          allowed: false,
          remaining: 0,
          resetSeconds: DEGRADED_RETRY_AFTER_SECONDS,
          retryAfterSeconds: DEGRADED_RETRY_AFTER_SECONDS,
        };
  }
}
