import type { EntryRef } from './cache-keys.ts';

/**
 * A computation's right to store one entry: granted by {@link CacheStore.lookup} on a miss,
 * lost when the entry is invalidated (deleted, its tag invalidated, its tenant flushed) or
 * the lease expires. A store with a lost lease is refused, so a computation that read the
 * database before a write committed can never store its stale result after the write's
 * invalidation (the "lease" of memcache at Facebook).
 */
export interface Lease {
  readonly token: string;
  /** The versions (namespace, then tags) the computation started under. */
  readonly snapshot: string;
}

/** What {@link CacheStore.lookup} found. */
export type Lookup =
  | { readonly kind: 'hit'; readonly payload: string }
  /** A miss, and this caller now holds the lease: compute, then {@link CacheStore.store}. */
  | { readonly kind: 'lease'; readonly lease: Lease }
  /** A miss while another computation (lease `holder`) is running: wait for it. */
  | { readonly kind: 'busy'; readonly holder: string }
  /** A miss, no lease asked for. */
  | { readonly kind: 'miss' };

/** Bytes a tenant holds in the cache, as far as its backend can tell (see `docs/cache.md`). */
export interface TenantUsage {
  /**
   * In-process: the bytes of the tenant's live entries (names and JSON payloads), exact.
   * Redis: the payload bytes the tenant wrote in the current and previous accounting
   * windows (each as long as the longest TTL), an upper bound of what it holds.
   */
  readonly bytes: number;
  /** In-process: live entries. Redis: entries written in the same two windows. */
  readonly entries: number;
  /** `exact` (in-process) or `written` (Redis, an upper bound). */
  readonly measure: 'exact' | 'written';
}

/**
 * A backend of the tenant cache: in-process ({@link MemoryStore}) or Redis
 * ({@link RedisStore}). Every method takes an already validated {@link EntryRef} or tenant
 * id; the keys themselves are the backend's business.
 */
export interface CacheStore {
  readonly kind: 'memory' | 'redis';
  /**
   * Reads the entry if it is current (its versions are the namespace's and tags' now), in
   * one round trip; on a miss with `acquire`, takes the lease `token` unless someone holds it.
   */
  lookup(ref: EntryRef, acquire: boolean, token: string, lockTtlMs: number): Promise<Lookup>;
  /** Stores `payload` if `lease` is still held and current; false when it was lost. */
  store(ref: EntryRef, lease: Lease, payload: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up without storing (the computation failed or had nothing to cache). */
  release(ref: EntryRef, lease: Lease): Promise<void>;
  /** Stores `payload` unconditionally under the current versions and revokes any lease. */
  set(ref: EntryRef, payload: string, ttlMs: number): Promise<void>;
  /** Removes the entry and revokes its lease. */
  delete(ref: EntryRef): Promise<void>;
  /** Makes every entry of the tenant carrying `tag` a miss, and revokes their leases. */
  invalidateTag(tenantId: string, tag: string): Promise<void>;
  /** Makes every entry of the tenant a miss, and revokes their leases. */
  flush(tenantId: string): Promise<void>;
  usage(tenantId: string): Promise<TenantUsage>;
  /**
   * Removes every key the tenant has in the backend — entries, leases, versions, accounting —
   * for erasure (a flush only makes entries unreachable until they expire).
   */
  purge(tenantId: string): Promise<void>;
  /** How many keys of the tenant the backend still holds (0 after {@link purge}). */
  count(tenantId: string): Promise<number>;
}

/** Bytes of a string as UTF-8, without allocating a buffer for ASCII. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
