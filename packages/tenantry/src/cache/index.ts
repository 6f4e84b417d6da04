/**
 * `tenantry/cache`: a cache whose every entry lives in one tenant's namespace, on Redis
 * (shared by every instance) or in-process. See `docs/cache.md`.
 *
 * @packageDocumentation
 */

export { DEFAULT_KEY_PREFIX, type EntryRef, KeyLayout } from './cache-keys.ts';
export type {
  CacheCallOptions,
  CacheChangeSource,
  CacheWriteOptions,
  TenantScopedCacheOptions,
} from './cache-options.ts';
export { CACHE_EVENTS, type CacheStats } from './cache-stats.ts';
export type { CacheStore, Lease, Lookup, TenantUsage } from './cache-store.ts';
export { type CreateCacheOptions, createCache } from './create-cache.ts';
export { MemoryStore, type MemoryStoreOptions } from './memory-store.ts';
export { type CacheRedisClient, RedisStore, type RedisStoreOptions } from './redis-store.ts';
export { TenantScopedCache } from './tenant-scoped-cache.ts';
