import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { hasRedisServer, killProcess, startRedisServer } from '../../../test-support/redis.ts';
import type { TenantScopedCacheOptions } from '../src/cache/cache-options.ts';
import type { CacheRedisClient } from '../src/cache/redis-store.ts';
import { TenantScopedCache } from '../src/cache/tenant-scoped-cache.ts';
import { type TenantContext, withTenant } from '../src/context/tenant-context.ts';
import { freePort } from '../src/embedded/embedded-postgres.ts';

type Redis = ReturnType<typeof createClient>;

const redisUrl = inject('redisUrl');
if (!redisUrl) console.warn('cache.test.ts: the Redis backend tests were skipped: no Redis reachable (set REDIS_URL)');
if (!hasRedisServer) console.warn('cache.test.ts: the Redis outage test was skipped: no redis-server binary');

/** Every key of this file starts with it; afterAll deletes them. */
const PREFIX = `tenantry-test:cache:${randomBytes(4).toString('hex')}`;
const clients: Redis[] = [];

async function connect(url: string): Promise<Redis> {
  const client = createClient({ url, socket: { reconnectStrategy: () => 100, connectTimeout: 2000 } });
  client.on('error', () => {});
  await client.connect();
  clients.push(client);
  return client;
}

const tenant = (id: string): TenantContext => ({
  id,
  slug: `t-${id.slice(0, 8)}`,
  tier: 'pool',
  plan: 'free',
  status: 'active',
});

/** Two "instances": two caches, which for Redis share one server through two connections. */
interface Backend {
  readonly name: string;
  readonly skip: boolean;
  pair(options?: TenantScopedCacheOptions): Promise<[TenantScopedCache, TenantScopedCache]>;
}

const backends: Backend[] = [
  {
    name: 'in-process',
    skip: false,
    // In-process caches share nothing: the "second instance" is the same cache.
    async pair(options = {}) {
      const cache = new TenantScopedCache(options);
      return [cache, cache];
    },
  },
  {
    name: 'Redis',
    skip: !redisUrl,
    async pair(options = {}) {
      const [a, b] = [await connect(redisUrl as string), await connect(redisUrl as string)];
      return [
        new TenantScopedCache({ redis: a, keyPrefix: PREFIX, ...options }),
        new TenantScopedCache({ redis: b, keyPrefix: PREFIX, ...options }),
      ];
    },
  },
];

afterAll(async () => {
  if (redisUrl) {
    const client = await connect(redisUrl);
    for await (const keys of client.scanIterator({ MATCH: `${PREFIX}*`, COUNT: 1000 })) {
      if (keys.length > 0) await client.del(keys);
    }
  }
  await Promise.all(clients.map((c) => c.quit().catch(() => {})));
});

describe.each(backends)('the tenant cache ($name)', ({ skip, pair }) => {
  let one: TenantScopedCache;
  let two: TenantScopedCache;
  beforeAll(async () => {
    if (!skip) [one, two] = await pair();
  });

  it.skipIf(skip)('never gives tenant B the entry tenant A stored under the same name', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    await withTenant(tenant(a), () => one.set('profile', { owner: 'A' }));
    const seenByB = await withTenant(tenant(b), () => two.getOrCompute('profile', async () => ({ owner: 'B' })));
    expect(seenByB).toEqual({ owner: 'B' });
    expect(await two.get('profile', { tenant: a })).toEqual({ owner: 'A' });
    expect(await withTenant(tenant(b), () => one.get('profile'))).toEqual({ owner: 'B' });
    expect(await one.get('never-set', { tenant: b })).toBeUndefined();
  });

  it.skipIf(skip)('needs a tenant: no context and no tenant option is NO_TENANT_CONTEXT, never a default', async () => {
    await expect(one.get('profile')).rejects.toMatchObject({ code: 'NO_TENANT_CONTEXT' });
    await expect(one.getOrCompute('profile', () => 1)).rejects.toMatchObject({ code: 'NO_TENANT_CONTEXT' });
    await expect(one.flushTenant()).rejects.toMatchObject({ code: 'NO_TENANT_CONTEXT' });
    // A brace would move the Redis Cluster hash tag out of the tenant's id.
    await expect(one.get('x', { tenant: 'a}{b' })).rejects.toMatchObject({ code: 'USAGE_ERROR' });
    await expect(one.get('', { tenant: randomUUID() })).rejects.toMatchObject({ code: 'USAGE_ERROR' });
    await expect(one.set('x', 1, { tenant: randomUUID(), ttlMs: 0 })).rejects.toMatchObject({ code: 'USAGE_ERROR' });
  });

  it.skipIf(skip)('flushing tenant A leaves tenant B intact, and A can cache again afterwards', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    for (const id of [a, b]) {
      await one.set('x', `x of ${id}`, { tenant: id });
      await one.set('y', `y of ${id}`, { tenant: id, tags: ['t'] });
    }
    await two.flushTenant({ tenant: a });
    expect(await one.get('x', { tenant: a })).toBeUndefined();
    expect(await one.get('y', { tenant: a, tags: ['t'] })).toBeUndefined();
    expect(await one.get('x', { tenant: b })).toBe(`x of ${b}`);
    expect(await one.get('y', { tenant: b, tags: ['t'] })).toBe(`y of ${b}`);
    expect(await one.getOrCompute('x', () => 'again', { tenant: a })).toBe('again');
    expect(await two.get('x', { tenant: a })).toBe('again');
  });

  it.skipIf(skip)('erasing tenant A removes every key it had (nothing left to expire); B keeps its own', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    for (const id of [a, b]) {
      await one.set('x', `x of ${id}`, { tenant: id });
      await one.set('y', `y of ${id}`, { tenant: id, tags: ['t'] });
      await one.getOrCompute('z', () => `z of ${id}`, { tenant: id });
    }
    expect(await one.remainingKeys(a)).toBeGreaterThan(0);
    await two.eraseTenant(a);
    expect(await one.remainingKeys(a)).toBe(0);
    expect(await two.remainingKeys(a)).toBe(0);
    expect(await one.get('x', { tenant: a })).toBeUndefined();
    expect(await one.get('x', { tenant: b })).toBe(`x of ${b}`);
    expect(await one.get('y', { tenant: b, tags: ['t'] })).toBe(`y of ${b}`);
    expect(await one.remainingKeys(b)).toBeGreaterThan(0);
    await expect(one.eraseTenant('{x}')).rejects.toMatchObject({ code: 'USAGE_ERROR' });
  });

  it.skipIf(skip)('invalidates a tag of one tenant: its entries miss, the others stay', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    await one.set('tagged', 1, { tenant: a, tags: ['billing', 'plan'] });
    await one.set('plain', 2, { tenant: a });
    await one.set('tagged', 3, { tenant: b, tags: ['billing', 'plan'] });
    await two.invalidateTag('billing', { tenant: a });
    expect(await one.get('tagged', { tenant: a, tags: ['plan', 'billing'] })).toBeUndefined();
    expect(await one.get('plain', { tenant: a })).toBe(2);
    expect(await one.get('tagged', { tenant: b, tags: ['billing', 'plan'] })).toBe(3);
  });

  it.skipIf(skip)('does not store a computation that overlapped a delete, a tag invalidation or a flush', async () => {
    for (const invalidate of [
      (c: TenantScopedCache, id: string) => c.delete('slow', { tenant: id }),
      (c: TenantScopedCache, id: string) => c.invalidateTag('t', { tenant: id }),
      (c: TenantScopedCache, id: string) => c.flushTenant({ tenant: id }),
    ]) {
      const id = randomUUID();
      let finish: (value: string) => void = () => {};
      const started = new Promise<void>((resolve) => {
        void one.getOrCompute(
          'slow',
          () =>
            new Promise<string>((done) => {
              finish = done;
              resolve();
            }),
          { tenant: id, tags: ['t'] },
        );
      });
      await started;
      await invalidate(two, id); // the write committed, then its invalidation
      finish('read before the write');
      await sleep(20);
      // The next read computes again (it reads after the write), on either instance.
      expect(await two.getOrCompute('slow', () => 'read after the write', { tenant: id, tags: ['t'] })).toBe(
        'read after the write',
      );
      expect(await one.get('slow', { tenant: id, tags: ['t'] })).toBe('read after the write');
    }
  });

  it.skipIf(skip)('runs one computation for 50 concurrent misses of one entry (both instances)', async () => {
    const id = randomUUID();
    let computations = 0;
    const compute = async () => {
      computations++;
      await sleep(150);
      return { n: computations };
    };
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? one : two).getOrCompute('hot', compute, { tenant: id })),
    );
    expect(computations).toBe(1);
    expect(new Set(results.map((r) => JSON.stringify(r)))).toEqual(new Set(['{"n":1}']));
    expect(await one.get('hot', { tenant: id })).toEqual({ n: 1 });
  });

  it.skipIf(skip)('gives the lease up when a computation fails, so the next call does not wait', async () => {
    const id = randomUUID();
    await expect(
      one.getOrCompute('flaky', () => Promise.reject(new Error('database hiccup')), { tenant: id }),
    ).rejects.toThrow('database hiccup');
    const started = performance.now();
    expect(await two.getOrCompute('flaky', () => 'fine', { tenant: id })).toBe('fine');
    expect(performance.now() - started).toBeLessThan(1000);
    // Nothing to cache is not cached.
    expect(await one.getOrCompute('nothing', () => undefined, { tenant: id })).toBeUndefined();
    expect(await two.getOrCompute('nothing', () => 'now', { tenant: id })).toBe('now');
  });

  it.skipIf(skip)('accounts bytes per tenant', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const value = 'x'.repeat(1000);
    await one.set('big', value, { tenant: a });
    const usage = await two.usage({ tenant: a });
    expect(usage?.bytes).toBeGreaterThanOrEqual(JSON.stringify(value).length);
    expect(usage?.entries).toBe(1);
    expect(await two.usage({ tenant: b })).toMatchObject({ bytes: 0, entries: 0 });
  });
});

describe('the in-process backend', () => {
  it('is bounded in entries and bytes, least recently used first, and accounts exactly', async () => {
    const id = randomUUID();
    const cache = new TenantScopedCache({ memory: { maxEntries: 3, maxBytes: 1000 } });
    for (const name of ['a', 'b', 'c']) await cache.set(name, name, { tenant: id });
    await cache.get('a', { tenant: id }); // a is now the most recent
    await cache.set('d', 'd', { tenant: id });
    expect(await cache.get('b', { tenant: id })).toBeUndefined();
    expect(await cache.get('a', { tenant: id })).toBe('a');
    expect(await cache.usage({ tenant: id })).toEqual({ bytes: 3 * 4, entries: 3, measure: 'exact' });
    await cache.set('huge', 'x'.repeat(900), { tenant: id });
    expect((await cache.usage({ tenant: id }))?.bytes).toBeLessThanOrEqual(1000);
    await cache.flushTenant({ tenant: id });
    expect(await cache.usage({ tenant: id })).toEqual({ bytes: 0, entries: 0, measure: 'exact' });
  });
});

describe.skipIf(!redisUrl)('the Redis backend', () => {
  it('keeps every key of a tenant under its hash tag, and reads an entry in one round trip', async () => {
    const raw = await connect(redisUrl as string);
    let calls = 0;
    const counting: CacheRedisClient = {
      get isReady() {
        return raw.isReady;
      },
      eval(script, options) {
        calls++;
        return raw.eval(script, options);
      },
      evalSha(sha, options) {
        calls++;
        return raw.evalSha(sha, options);
      },
    };
    const cache = new TenantScopedCache({ redis: counting, keyPrefix: PREFIX });
    const id = randomUUID();
    await cache.set('item:1', { title: 'hello' }, { tenant: id });
    calls = 0;
    expect(await cache.get('item:1', { tenant: id })).toEqual({ title: 'hello' });
    expect(await cache.getOrCompute('item:1', () => ({ title: 'other' }), { tenant: id })).toEqual({ title: 'hello' });
    expect(calls).toBe(2);
    const keys: string[] = [];
    for await (const batch of raw.scanIterator({ MATCH: `${PREFIX}:{${id}}*` })) keys.push(...batch);
    expect(keys.sort()).toEqual(
      [`${PREFIX}:{${id}}:item:1`, `${PREFIX}:{${id}}#v`, expect.stringMatching(/#b:\d+$/)].sort(),
    );
    expect(await raw.pTTL(`${PREFIX}:{${id}}:item:1`)).toBeGreaterThan(0);
  });

  it('degrades to misses with a client pointed at a closed port: every call succeeds', async () => {
    const port = await freePort();
    const client = createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: () => 100 } });
    client.on('error', () => {});
    client.connect().catch(() => {});
    const cache = new TenantScopedCache({ redis: client, keyPrefix: PREFIX });
    const id = randomUUID();
    let computations = 0;
    const compute = async () => {
      computations++;
      await sleep(50);
      return 'from the database';
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => cache.getOrCompute('k', compute, { tenant: id })),
    );
    expect(results.every((r) => r === 'from the database')).toBe(true);
    expect(computations).toBe(1); // the in-process single flight still holds
    await cache.set('k', 'v', { tenant: id });
    await cache.delete('k', { tenant: id });
    await cache.flushTenant({ tenant: id });
    expect(await cache.get('k', { tenant: id })).toBeUndefined();
    expect(await cache.usage({ tenant: id })).toBeUndefined();
    expect(cache.stats()).toMatchObject({ errors: expect.any(Number), computations: 1, hits: 0 });
    expect(cache.stats().errors).toBeGreaterThanOrEqual(5);
    await cache.close();
    client.destroy();
  });
});

describe.skipIf(!hasRedisServer)('a Redis of its own that stops and comes back', () => {
  let dir: string;
  let port: number;
  let server: ChildProcess | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tenantry-cache-redis-'));
    port = await freePort();
    server = await startRedisServer(port, dir);
  });

  afterAll(async () => {
    await killProcess(server);
    await rm(dir, { recursive: true, force: true });
  });

  it('serves every call while it is down, and caches again once it is back', async () => {
    const client = createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: () => 100 } });
    client.on('error', () => {});
    await client.connect();
    const cache = new TenantScopedCache({ redis: client, redisTimeoutMs: 200 });
    const id = randomUUID();
    expect(await cache.getOrCompute('k', () => 'first', { tenant: id })).toBe('first');
    expect(await cache.get('k', { tenant: id })).toBe('first');
    await killProcess(server);
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      expect(await cache.getOrCompute('k', () => `down ${i}`, { tenant: id })).toBe(`down ${i}`);
      expect(performance.now() - started).toBeLessThan(1000);
    }
    await cache.delete('k', { tenant: id }); // cannot reach Redis: retried later
    expect(cache.stats().pendingInvalidations).toBe(1);
    server = await startRedisServer(port, dir);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && cache.stats().pendingInvalidations > 0) await sleep(100);
    expect(cache.stats().pendingInvalidations).toBe(0);
    expect(await cache.getOrCompute('k', () => 'back', { tenant: id })).toBe('back');
    expect(await cache.get('k', { tenant: id })).toBe('back');
    await cache.close();
    await client.quit().catch(() => {});
  });
});
