import { withDeadline } from '../deadline.ts';
import type { TenantScopedCacheOptions } from './cache-options.ts';
import type { CacheRedisClient } from './redis-store.ts';
import { TenantScopedCache } from './tenant-scoped-cache.ts';

/** Options of {@link createCache}: those of the cache, and where Redis is. */
export interface CreateCacheOptions extends TenantScopedCacheOptions {
  /** Redis to connect to (default `REDIS_URL`); neither, nor `redis`: in-process. */
  readonly redisUrl?: string | undefined;
  /** Longest wait for the first connection (default 2 s); after it the cache starts degraded and reconnects. */
  readonly connectTimeoutMs?: number | undefined;
}

/** The node-redis calls {@link createCache} makes on a client it creates. */
interface OwnedClient extends CacheRedisClient {
  on(event: 'error', listener: (error: Error) => void): unknown;
  connect(): Promise<unknown>;
  destroy(): void;
}

/**
 * A {@link TenantScopedCache} on the Redis of `redis`, `redisUrl` or `REDIS_URL`, else
 * in-process. When it connects to a URL itself it owns that client: `close()` closes it,
 * and `redis` is imported only then (the optional peer dependency). A Redis that does not
 * answer in `connectTimeoutMs` does not fail the start: the cache serves misses and counts
 * errors until the client reconnects.
 *
 * @example
 * ```ts
 * const cache = await createCache({ feed, logger }); // REDIS_URL, else in-process
 * app.addHook('onClose', () => cache.close());
 * ```
 */
export async function createCache(options: CreateCacheOptions = {}): Promise<TenantScopedCache> {
  const url = options.redis || options.store ? undefined : (options.redisUrl ?? process.env.REDIS_URL);
  if (!url) return new TenantScopedCache(options);
  const { createClient } = await import('redis');
  const client = createClient({ url, socket: { reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000) } });
  const owned = client as unknown as OwnedClient;
  // Without an 'error' listener node-redis's reconnect errors crash the process; the cache
  // counts the failures of its calls and logs once per outage.
  owned.on('error', () => {});
  try {
    await withDeadline(owned.connect(), options.connectTimeoutMs ?? 2000);
  } catch (error) {
    options.logger?.warn({ err: (error as Error).message }, 'cache Redis unreachable at start; serving misses');
  }
  return new TenantScopedCache({ ...options, redis: owned, onClose: async () => owned.destroy() });
}
