import { randomBytes } from 'node:crypto';
import { withDeadline } from '../deadline.ts';
import { TenantryError } from '../errors/catalog.ts';
import { type EntryRef, KeyLayout } from './cache-keys.ts';
import type { CacheStore, Lease, Lookup, TenantUsage } from './cache-store.ts';
import { BUMP, DELETE, LOOKUP, RELEASE, type RedisScript, SCAN_STEP, SET, STORE, USAGE } from './redis-scripts.ts';

/**
 * The subset of a node-redis v5 client (`createClient()` from `redis`) the cache needs:
 * scripts only. Declared locally, like `RateLimitRedisClient`, so the core does not depend
 * on Redis types and a client given to the rate limiter fits here too.
 */
export interface CacheRedisClient {
  /** node-redis's connection state; while false, calls fail at once instead of queueing. */
  readonly isReady?: boolean;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** Used when present: the script's text then travels once per connection, not per call. */
  evalSha?(sha: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/** Options of {@link RedisStore}. */
export interface RedisStoreOptions {
  /** Prefix of every key (default `tenantry:cache`); see {@link KeyLayout}. */
  readonly keyPrefix?: string | undefined;
  /** Longest wait for one Redis call (default 200 ms); then the call counts as failed. */
  readonly timeoutMs?: number | undefined;
  /**
   * The longest TTL of an entry (default one day): the lifetime of version keys and the
   * length of an accounting window.
   */
  readonly maxTtlMs?: number | undefined;
}

/**
 * The Redis backend: one `EVALSHA` per lookup (namespace version, tag versions, entry and
 * lease read together), one per store. A flush or tag invalidation writes one version key,
 * never `KEYS`/`SCAN`; what was stored under the old version is never read again and
 * expires by its TTL. Every method rejects on a Redis error or after `timeoutMs`; the
 * cache above turns that into a miss.
 *
 * @example
 * ```ts
 * const redis = createClient({ url: process.env.REDIS_URL }).on('error', (e) => log.warn(e));
 * await redis.connect();
 * const cache = new TenantScopedCache({ store: new RedisStore(redis, { keyPrefix: 'app:cache' }) });
 * ```
 */
export class RedisStore implements CacheStore {
  readonly kind = 'redis';
  readonly keys: KeyLayout;
  readonly #client: CacheRedisClient;
  readonly #timeoutMs: number;
  readonly #maxTtlMs: number;
  /** Makes every nonce of this process unique: versions must never repeat. */
  readonly #origin = randomBytes(8).toString('hex');
  #counter = 0;

  constructor(client: CacheRedisClient, options: RedisStoreOptions = {}) {
    if (!client || typeof client.eval !== 'function') {
      throw new TenantryError('CONFIG_INVALID', 'the cache needs a node-redis client (createClient() from redis)');
    }
    this.#client = client;
    this.keys = new KeyLayout(options.keyPrefix);
    this.#timeoutMs = options.timeoutMs ?? 200;
    this.#maxTtlMs = options.maxTtlMs ?? 86_400_000;
    for (const [name, value] of [
      ['timeoutMs', this.#timeoutMs],
      ['maxTtlMs', this.#maxTtlMs],
    ] as const) {
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new TenantryError('CONFIG_INVALID', `cache ${name} must be a positive integer`);
      }
    }
  }

  async lookup(ref: EntryRef, acquire: boolean, token: string, lockTtlMs: number): Promise<Lookup> {
    const reply = (await this.#run(
      LOOKUP,
      [this.keys.entry(ref), this.keys.lock(ref), ...this.keys.versions(ref)],
      [this.#nonce(), String(this.#maxTtlMs), acquire ? '1' : '0', token, String(lockTtlMs)],
    )) as string[];
    switch (reply[0]) {
      case 'hit':
        return { kind: 'hit', payload: reply[1] as string };
      case 'busy':
        return { kind: 'busy', holder: reply[1] as string };
      case 'lease':
        return { kind: 'lease', lease: { token, snapshot: reply[1] as string } };
      default:
        return { kind: 'miss' };
    }
  }

  async store(ref: EntryRef, lease: Lease, payload: string, ttlMs: number): Promise<boolean> {
    const stored = await this.#run(
      STORE,
      [this.keys.entry(ref), this.keys.lock(ref), this.#usageKey(ref.tenantId, 0), ...this.keys.versions(ref)],
      [lease.snapshot, lease.token, payload, String(ttlMs), String(2 * this.#maxTtlMs)],
    );
    return stored === 1;
  }

  async release(ref: EntryRef, lease: Lease): Promise<void> {
    await this.#run(RELEASE, [this.keys.lock(ref)], [`${lease.snapshot}|${lease.token}`]);
  }

  async set(ref: EntryRef, payload: string, ttlMs: number): Promise<void> {
    await this.#run(
      SET,
      [this.keys.entry(ref), this.keys.lock(ref), this.#usageKey(ref.tenantId, 0), ...this.keys.versions(ref)],
      [this.#nonce(), String(this.#maxTtlMs), payload, String(ttlMs), String(2 * this.#maxTtlMs)],
    );
  }

  async delete(ref: EntryRef): Promise<void> {
    await this.#run(DELETE, [this.keys.entry(ref), this.keys.lock(ref)], []);
  }

  async invalidateTag(tenantId: string, tag: string): Promise<void> {
    await this.#run(BUMP, [this.keys.tagVersion(tenantId, tag)], [this.#nonce(), String(this.#maxTtlMs)]);
  }

  async flush(tenantId: string): Promise<void> {
    await this.#run(BUMP, [this.keys.namespaceVersion(tenantId)], [this.#nonce(), String(this.#maxTtlMs)]);
  }

  async purge(tenantId: string): Promise<void> {
    await this.#scan(tenantId, 'unlink');
  }

  count(tenantId: string): Promise<number> {
    return this.#scan(tenantId, 'count');
  }

  /** Walks the tenant's keys (`<prefix>:{<tenantId>}` and after), a step per round trip. */
  async #scan(tenantId: string, action: 'unlink' | 'count'): Promise<number> {
    const pattern = `${this.keys.namespace(tenantId).replace(/[*?[\]\\]/g, '\\$&')}*`;
    let cursor = '0';
    let found = 0;
    do {
      const [next, n] = (await this.#run(SCAN_STEP, [], [cursor, pattern, '1000', action])) as [string, number];
      cursor = String(next);
      found += Number(n);
    } while (cursor !== '0');
    return found;
  }

  async usage(tenantId: string): Promise<TenantUsage> {
    const reply = (await this.#run(USAGE, [this.#usageKey(tenantId, 0), this.#usageKey(tenantId, -1)], [])) as [
      number,
      number,
    ];
    return { bytes: Number(reply[0]), entries: Number(reply[1]), measure: 'written' };
  }

  /**
   * The accounting window `offset` windows from now. A live entry was written less than one
   * maximum TTL ago, so within this window or the previous one: their sum bounds what the
   * tenant holds from above.
   */
  #usageKey(tenantId: string, offset: number): string {
    return this.keys.usage(tenantId, Math.floor(Date.now() / this.#maxTtlMs) + offset);
  }

  #nonce(): string {
    this.#counter = (this.#counter + 1) % Number.MAX_SAFE_INTEGER;
    return `${this.#origin}.${this.#counter.toString(36)}`;
  }

  async #run(script: RedisScript, keys: string[], args: string[]): Promise<unknown> {
    const client = this.#client;
    // node-redis queues commands while disconnected; a cache must not wait for a reconnect.
    if (client.isReady === false) throw new Error('Redis is not connected');
    const options = { keys, arguments: args };
    if (!client.evalSha) return withDeadline(client.eval(script.source, options), this.#timeoutMs);
    try {
      return await withDeadline(client.evalSha(script.sha, options), this.#timeoutMs);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
      // First use on this server (or after SCRIPT FLUSH / a failover): EVAL loads it.
      return withDeadline(client.eval(script.source, options), this.#timeoutMs);
    }
  }
}
