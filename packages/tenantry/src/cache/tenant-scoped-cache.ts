import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { getTenant } from '../context/tenant-context.ts';
import { CHANNELS } from '../control/change-feed.ts';
import { TenantryError } from '../errors/catalog.ts';
import { CacheFlights, parse, serialise } from './cache-flights.ts';
import { type EntryRef, entryRef } from './cache-keys.ts';
import {
  type CacheCallOptions,
  type CacheWriteOptions,
  type ResolvedCacheTimes,
  resolveCacheTimes,
  type TenantScopedCacheOptions,
} from './cache-options.ts';
import { BackendHealth, CacheCounters, type CacheStats } from './cache-stats.ts';
import type { CacheStore, TenantUsage } from './cache-store.ts';
import { MemoryStore } from './memory-store.ts';
import { PendingInvalidations } from './pending-invalidations.ts';
import { RedisStore } from './redis-store.ts';

/**
 * A cache whose every entry lives in one tenant's namespace: the tenant comes from the
 * current tenant context (`getTenant()`) or an explicit `tenant` option, never from a
 * default, and no method takes a raw key. Values round-trip through JSON; `undefined` is
 * never stored.
 *
 * `getOrCompute` runs one computation per entry at a time across every instance sharing
 * Redis (a lease taken in the lookup's round trip; calls in this process join the running
 * one, calls elsewhere poll), and a computation whose entry was invalidated meanwhile does
 * not store its result. A backend error is a miss, counted in {@link stats}, never a failed
 * call. See `docs/cache.md`.
 *
 * @example
 * ```ts
 * const cache = new TenantScopedCache({ redis, feed }); // in-process without `redis`
 * // inside a request (the tenant context) or withTenant(tenant, …):
 * const item = await cache.getOrCompute(`item:${id}`, () => loadItem(id), { ttlMs: 30_000 });
 * await cache.delete(`item:${id}`); // after the write committed
 * ```
 */
export class TenantScopedCache {
  /** `memory` or `redis`. */
  readonly backend: 'memory' | 'redis';
  readonly #store: CacheStore;
  readonly #times: ResolvedCacheTimes;
  readonly #health: BackendHealth;
  readonly #counters = new CacheCounters();
  readonly #flights: CacheFlights;
  readonly #pending: PendingInvalidations;
  readonly #origin = randomBytes(6).toString('hex');
  readonly #detach: (() => void) | undefined;
  readonly #onClose: (() => Promise<void>) | undefined;
  #counter = 0;

  constructor(options: TenantScopedCacheOptions = {}) {
    this.#times = resolveCacheTimes(options);
    this.#store =
      options.store ??
      (options.redis
        ? new RedisStore(options.redis, {
            keyPrefix: options.keyPrefix,
            timeoutMs: options.redisTimeoutMs,
            maxTtlMs: this.#times.maxTtlMs,
          })
        : new MemoryStore(options.memory));
    this.backend = this.#store.kind;
    this.#health = new BackendHealth(this.#counters, options.logger);
    this.#flights = new CacheFlights(this.#store, this.#counters, this.#health.failed);
    this.#pending = new PendingInvalidations(this.#health.failed, options.logger);
    // A payload of undefined is "anything may have changed": this process forgets its
    // computations; entries are left to their versions (see docs/cache.md, "Tenant changes").
    this.#detach = options.feed?.on(CHANNELS.tenants, (tenantId) => {
      if (!tenantId) return this.#flights.clear();
      this.flushTenant({ tenant: tenantId }).catch(this.#health.failed);
    });
    this.#onClose = options.onClose;
  }

  /**
   * The entry `name` of the tenant, or `compute()`'s result, stored for `ttlMs` unless it
   * is `undefined`. Concurrent calls for one entry run one computation (across instances
   * sharing Redis); the others wait for it up to `waitMs`. Throws what `compute` throws
   * (nothing is stored then), `NO_TENANT_CONTEXT` outside a tenant context without a
   * `tenant` option, and `USAGE_ERROR` for a malformed name, tag or TTL, or a value JSON
   * cannot hold.
   *
   * @example
   * ```ts
   * const plan = await cache.getOrCompute('plan-summary', () => summarise(tenantry), { tags: ['billing'] });
   * ```
   */
  async getOrCompute<T>(name: string, compute: () => Promise<T> | T, options: CacheWriteOptions = {}): Promise<T> {
    const ref = this.#ref(name, options);
    const ttlMs = this.#ttl(options.ttlMs);
    const key = `${ref.tenantId}\0${ref.name}`;
    if (this.#pending.covers(ref.tenantId, ref.name, ref.tags)) return this.#degraded(ref, key, compute);
    const deadline = performance.now() + this.#times.waitMs;
    let delay = 5;
    let waited = false;
    for (;;) {
      const token = `${this.#origin}.${(++this.#counter).toString(36)}`;
      let found: Awaited<ReturnType<CacheStore['lookup']>>;
      try {
        found = await this.#store.lookup(ref, true, token, this.#times.lockTtlMs);
        this.#health.recovered();
      } catch (error) {
        this.#health.failed(error);
        return this.#degraded(ref, key, compute);
      }
      if (found.kind === 'hit') {
        this.#counters.hits++;
        return parse<T>(found.payload);
      }
      if (found.kind === 'lease') {
        this.#counters.misses++;
        return parse<T>(await this.#flights.run(ref, key, found.lease, compute, ttlMs));
      }
      if (!waited) {
        waited = true;
        this.#counters.waits++;
      }
      const local = found.kind === 'busy' ? this.#flights.get(key) : undefined;
      if (local && local.token === (found as { holder: string }).holder) {
        this.#counters.misses++;
        return parse<T>(await local.payload);
      }
      if (performance.now() >= deadline) return this.#degraded(ref, key, compute);
      await sleep(delay);
      delay = Math.min(delay * 2, 50);
    }
  }

  /**
   * The entry `name` of the tenant, or `undefined` (also when the backend fails).
   *
   * @example
   * ```ts
   * const draft = await cache.get<Draft>(`draft:${userId}`);
   * ```
   */
  async get<T>(name: string, options: CacheCallOptions = {}): Promise<T | undefined> {
    const ref = this.#ref(name, options);
    if (this.#pending.covers(ref.tenantId, ref.name, ref.tags)) {
      this.#counters.misses++;
      return undefined;
    }
    try {
      const found = await this.#store.lookup(ref, false, '', this.#times.lockTtlMs);
      this.#health.recovered();
      if (found.kind === 'hit') {
        this.#counters.hits++;
        return parse<T>(found.payload);
      }
    } catch (error) {
      this.#health.failed(error);
    }
    this.#counters.misses++;
    return undefined;
  }

  /**
   * Stores `value` as the entry `name` of the tenant (write-through); a computation of the
   * entry running meanwhile will not overwrite it. A backend error is counted, not thrown.
   *
   * @example
   * ```ts
   * await cache.set(`draft:${userId}`, draft, { ttlMs: 3_600_000 });
   * ```
   */
  async set<T>(name: string, value: T, options: CacheWriteOptions = {}): Promise<void> {
    const ref = this.#ref(name, options);
    const ttlMs = this.#ttl(options.ttlMs);
    const payload = serialise(value);
    this.#flights.forget((r) => r.tenantId === ref.tenantId && r.name === ref.name);
    if (payload === undefined) return this.delete(name, options);
    try {
      await this.#store.set(ref, payload, ttlMs);
      this.#health.recovered();
    } catch (error) {
      this.#health.failed(error);
      // Whatever the backend holds now is older than this value: make sure it goes.
      this.#retryLater(`d\0${ref.tenantId}\0${ref.name}`, ref.tenantId, { name: ref.name }, () =>
        this.#store.delete(ref),
      );
    }
  }

  /**
   * Removes the entry `name` of the tenant: call it after the write that changed its source
   * committed. A computation of it running meanwhile will not store its result.
   *
   * @example
   * ```ts
   * await tenantry.transaction((tx) => items.update(tx, id, patch));
   * await cache.delete(`item:${id}`);
   * ```
   */
  async delete(name: string, options: CacheCallOptions = {}): Promise<void> {
    const ref = this.#ref(name, options);
    this.#flights.forget((r) => r.tenantId === ref.tenantId && r.name === ref.name);
    await this.#invalidate(`d\0${ref.tenantId}\0${ref.name}`, ref.tenantId, { name: ref.name }, () =>
      this.#store.delete(ref),
    );
  }

  /**
   * Makes every entry of the tenant stored with `tag` a miss (one write, whatever their number).
   *
   * @example
   * ```ts
   * await cache.invalidateTag('billing');
   * ```
   */
  async invalidateTag(tag: string, options: Omit<CacheCallOptions, 'tags'> = {}): Promise<void> {
    const { tenantId, tags } = entryRef(this.#tenantId(options), '-', [tag]);
    this.#flights.forget((r) => r.tenantId === tenantId && r.tags.includes(tag));
    await this.#invalidate(`t\0${tenantId}\0${tag}`, tenantId, { tag }, () =>
      this.#store.invalidateTag(tenantId, tags[0] as string),
    );
  }

  /**
   * Removes every key the tenant holds (entries, leases, versions, accounting), for erasure:
   * unlike {@link flushTenant}, nothing is left behind to expire. With Redis it walks the
   * tenant's keys with `SCAN`, a step per round trip; a Redis error is thrown, not degraded
   * to a miss, since an erasure must know it did not happen.
   *
   * @example
   * ```ts
   * tenantry.addErasureHook({ name: 'cache', erase: (id) => cache.eraseTenant(id), remaining: (id) => cache.remainingKeys(id) });
   * ```
   */
  async eraseTenant(tenantId: string): Promise<void> {
    const id = entryRef(tenantId, '-').tenantId;
    this.#flights.forget((r) => r.tenantId === id);
    await this.#store.purge(id);
  }

  /** How many keys the tenant still holds in the backend (erasure's verification wants 0). */
  remainingKeys(tenantId: string): Promise<number> {
    return this.#store.count(entryRef(tenantId, '-').tenantId);
  }

  /**
   * Makes every entry of the tenant a miss: the namespace's version is replaced (one write,
   * no `KEYS` or `SCAN`), and old entries expire by their TTL.
   *
   * @example
   * ```ts
   * await cache.flushTenant({ tenant: tenant.id }); // or, in the tenant's context, cache.flushTenant()
   * ```
   */
  async flushTenant(options: Omit<CacheCallOptions, 'tags'> = {}): Promise<void> {
    const tenantId = this.#tenantId(options);
    this.#flights.forget((r) => r.tenantId === tenantId);
    await this.#invalidate(`f\0${tenantId}`, tenantId, {}, () => this.#store.flush(tenantId));
  }

  /**
   * What the tenant holds: exact bytes and entries in-process; with Redis, the bytes written
   * within the last one to two maximum TTLs, an upper bound. Undefined when Redis fails.
   *
   * @example
   * ```ts
   * const { bytes, measure } = (await cache.usage({ tenant: 'b3c1…' })) ?? {};
   * ```
   */
  async usage(options: Omit<CacheCallOptions, 'tags'> = {}): Promise<TenantUsage | undefined> {
    const tenantId = this.#tenantId(options);
    try {
      return await this.#store.usage(tenantId);
    } catch (error) {
      this.#health.failed(error);
      return undefined;
    }
  }

  /**
   * Counters since this cache was created, all tenants together.
   *
   * @example
   * ```ts
   * const { hits, misses } = cache.stats();
   * ```
   */
  stats(): CacheStats {
    return this.#counters.snapshot(this.#pending.size);
  }

  /**
   * Stops listening to tenant changes and retrying invalidations. A Redis client you gave
   * stays open (close it yourself); one {@link createCache} connected is closed.
   *
   * @example
   * ```ts
   * app.addHook('onClose', () => cache.close());
   * ```
   */
  async close(): Promise<void> {
    this.#detach?.();
    this.#pending.close();
    await this.#onClose?.();
  }

  /** The entry's address; the tenant from the option, else the context (never a default). */
  #ref(name: string, options: CacheCallOptions): EntryRef {
    const tenant = options.tenant;
    const tenantId = tenant === undefined ? getTenant().id : typeof tenant === 'string' ? tenant : tenant?.id;
    return entryRef(tenantId as string, name, options.tags);
  }

  /** The tenant of a call that names no entry, validated like an entry's. */
  #tenantId(options: Omit<CacheCallOptions, 'tags'>): string {
    return this.#ref('-', options).tenantId;
  }

  #ttl(ttlMs: number | undefined): number {
    const { defaultTtlMs, maxTtlMs } = this.#times;
    const ttl = ttlMs ?? defaultTtlMs;
    if (!Number.isSafeInteger(ttl) || ttl <= 0 || ttl > maxTtlMs) {
      throw new TenantryError('USAGE_ERROR', `cache ttlMs must be a positive integer of at most ${maxTtlMs}`);
    }
    return ttl;
  }

  /** Without the backend: join this process's flight of the entry, or compute without storing. */
  async #degraded<T>(ref: EntryRef, key: string, compute: () => Promise<T> | T): Promise<T> {
    this.#counters.misses++;
    const local = this.#flights.get(key);
    return parse<T>(await (local ? local.payload : this.#flights.run(ref, key, undefined, compute, 0)));
  }

  async #invalidate(
    key: string,
    tenantId: string,
    what: { name?: string; tag?: string },
    run: () => Promise<void>,
  ): Promise<void> {
    try {
      await run();
      this.#health.recovered();
    } catch (error) {
      this.#health.failed(error);
      this.#retryLater(key, tenantId, what, run);
    }
  }

  #retryLater(key: string, tenantId: string, what: { name?: string; tag?: string }, run: () => Promise<void>): void {
    this.#pending.add(key, { tenantId, ...what, run });
  }
}
