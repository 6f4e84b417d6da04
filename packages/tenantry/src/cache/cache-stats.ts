import type { Logger } from '../config.ts';

/**
 * Counters of a {@link TenantScopedCache}, all tenants together (no per-tenant series: their
 * number is unbounded). Read them with `cache.stats()`; the reference server exports them
 * as `tenantry_cache_events_total{event}`.
 */
export interface CacheStats {
  /** Calls answered from a stored entry (at once, or after waiting for another computation). */
  readonly hits: number;
  /** Calls not answered from a stored entry: computed here, or given another call's result. */
  readonly misses: number;
  /** Backend calls that failed or timed out; each became a miss or a retried invalidation. */
  readonly errors: number;
  /** Computations run (the functions given to `getOrCompute`). */
  readonly computations: number;
  /** Calls that waited for a computation of the same entry (in this process or another). */
  readonly waits: number;
  /** Computations whose result was served but not stored (backend down, lease lost, waited too long). */
  readonly uncached: number;
  /** Invalidations that failed and wait to be retried. */
  readonly pendingInvalidations: number;
}

/** The names of the counters of {@link CacheStats}, for exporters. */
export const CACHE_EVENTS = ['hits', 'misses', 'errors', 'computations', 'waits', 'uncached'] as const;

/** The mutable counters behind {@link CacheStats}. */
export class CacheCounters {
  hits = 0;
  misses = 0;
  errors = 0;
  computations = 0;
  waits = 0;
  uncached = 0;

  snapshot(pendingInvalidations: number): CacheStats {
    return Object.freeze({
      hits: this.hits,
      misses: this.misses,
      errors: this.errors,
      computations: this.computations,
      waits: this.waits,
      uncached: this.uncached,
      pendingInvalidations,
    });
  }
}

/**
 * Counts backend failures and logs once when the backend starts failing and once when it
 * answers again: at hundreds of calls a second, a line per call would drown the log.
 */
export class BackendHealth {
  readonly #counters: CacheCounters;
  readonly #logger: Logger | undefined;
  #failing = false;

  constructor(counters: CacheCounters, logger: Logger | undefined) {
    this.#counters = counters;
    this.#logger = logger;
  }

  readonly failed = (error: unknown): void => {
    this.#counters.errors++;
    if (this.#failing) return;
    this.#failing = true;
    this.#logger?.warn({ err: (error as Error)?.message }, 'cache degraded: the backend fails; serving misses');
  };

  recovered(): void {
    if (!this.#failing) return;
    this.#failing = false;
    this.#logger?.info({}, 'cache recovered: the backend answers again');
  }
}
