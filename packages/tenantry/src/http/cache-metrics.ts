import { Counter, Gauge, Registry } from 'prom-client';
import { CACHE_EVENTS } from '../cache/cache-stats.ts';
import type { TenantScopedCache } from '../cache/tenant-scoped-cache.ts';

/**
 * A registry with the counters of `cache`, read at each scrape:
 * `tenantry_cache_events_total{event="hits|misses|errors|computations|waits|uncached"}` and
 * `tenantry_cache_pending_invalidations`. No tenant label: their number is unbounded.
 *
 * @example
 * ```ts
 * registerMetrics(app, tenantry, [cacheMetrics(cache)]);
 * ```
 */
export function cacheMetrics(cache: TenantScopedCache): Registry {
  const registry = new Registry();
  const seen = new Map<string, number>();
  new Counter({
    name: 'tenantry_cache_events_total',
    help: 'Tenant cache calls and computations by event, all tenants together',
    labelNames: ['event', 'backend'],
    registers: [registry],
    collect() {
      const stats = cache.stats();
      for (const event of CACHE_EVENTS) {
        // Counters only grow: add what happened since the previous scrape.
        const now = stats[event];
        this.inc({ event, backend: cache.backend }, now - (seen.get(event) ?? 0));
        seen.set(event, now);
      }
    },
  });
  new Gauge({
    name: 'tenantry_cache_pending_invalidations',
    help: 'Cache invalidations that failed and wait for a retry',
    registers: [registry],
    collect() {
      this.set(cache.stats().pendingInvalidations);
    },
  });
  return registry;
}
