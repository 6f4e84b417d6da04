import type { Logger } from '../config.ts';
import type { ChangeHandler } from '../control/change-feed.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { CacheStore } from './cache-store.ts';
import type { MemoryStoreOptions } from './memory-store.ts';
import type { CacheRedisClient } from './redis-store.ts';

/** Where tenant changes come from: a `ChangeFeed` (or anything with its `on`). */
export interface CacheChangeSource {
  on(channel: string, handler: ChangeHandler): () => void;
}

/** Options of {@link TenantScopedCache}. */
export interface TenantScopedCacheOptions {
  /** A connected node-redis client: entries shared by every instance. Without it (and without `store`), in-process. */
  readonly redis?: CacheRedisClient | undefined;
  /** A backend of your own making (takes precedence over `redis` and `memory`). */
  readonly store?: CacheStore | undefined;
  /** Prefix of every Redis key (default `tenantry:cache`). */
  readonly keyPrefix?: string | undefined;
  /** Longest wait for one Redis call before it counts as failed (default 200 ms). */
  readonly redisTimeoutMs?: number | undefined;
  /** Bounds of the in-process backend. */
  readonly memory?: MemoryStoreOptions | undefined;
  /** TTL of an entry when a call names none (default 60 s). */
  readonly defaultTtlMs?: number | undefined;
  /** The longest TTL a call may ask for (default one day). */
  readonly maxTtlMs?: number | undefined;
  /** How long one computation holds an entry's lease (default 10 s); a longer one is served but not stored. */
  readonly lockTtlMs?: number | undefined;
  /** How long a call waits for another instance's computation before computing itself (default 5 s). */
  readonly waitMs?: number | undefined;
  /** Tenant changes (suspend, delete, move, …) flush the tenant's namespace (`CHANNELS.tenants`). */
  readonly feed?: CacheChangeSource | undefined;
  /** Told once when the backend fails and once when it recovers (not on every call). */
  readonly logger?: Logger | undefined;
  /** Called by {@link TenantScopedCache.close} (e.g. to close a Redis client the cache owns). */
  readonly onClose?: (() => Promise<void>) | undefined;
}

/** Which tenant a call works for: its id (or a tenant object); default the current tenant context. */
export interface CacheCallOptions {
  readonly tenant?: string | { readonly id: string } | undefined;
  /** Tags of the entry: part of its identity, so pass the same tags wherever you read it. */
  readonly tags?: readonly string[] | undefined;
}

/** Options of one {@link TenantScopedCache.getOrCompute} or {@link TenantScopedCache.set}. */
export interface CacheWriteOptions extends CacheCallOptions {
  /** Milliseconds the entry lives (default the cache's `defaultTtlMs`). */
  readonly ttlMs?: number | undefined;
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TenantryError('CONFIG_INVALID', `cache ${name} must be a positive integer`);
  }
  return value;
}

/** {@link TenantScopedCacheOptions} validated and defaulted once. */
export interface ResolvedCacheTimes {
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
  readonly lockTtlMs: number;
  readonly waitMs: number;
}

/** Validates the times of `options` (`CONFIG_INVALID`) and fills in the defaults. */
export function resolveCacheTimes(options: TenantScopedCacheOptions): ResolvedCacheTimes {
  const maxTtlMs = positive('maxTtlMs', options.maxTtlMs ?? 86_400_000);
  const defaultTtlMs = positive('defaultTtlMs', options.defaultTtlMs ?? 60_000);
  if (defaultTtlMs > maxTtlMs) throw new TenantryError('CONFIG_INVALID', 'cache defaultTtlMs must not exceed maxTtlMs');
  return Object.freeze({
    defaultTtlMs,
    maxTtlMs,
    lockTtlMs: positive('lockTtlMs', options.lockTtlMs ?? 10_000),
    waitMs: positive('waitMs', options.waitMs ?? 5_000),
  });
}
