import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { definePlans } from '../src/admit/plans.ts';
import { TenantScopedCache } from '../src/cache/tenant-scoped-cache.ts';
import { CHANNELS, ChangeFeed } from '../src/control/change-feed.ts';
import type { Tenantry } from '../src/index.ts';

type Redis = ReturnType<typeof createClient>;

const ADMIN = 'cache-admin-token-0000';
const redisUrl = inject('redisUrl');
if (!redisUrl)
  console.warn('cache-http.test.ts: the Redis backend tests were skipped: no Redis reachable (set REDIS_URL)');

/** Every Redis key of this file starts with it; afterAll deletes them. */
const PREFIX = `tenantry-test:cache-http:${randomBytes(4).toString('hex')}`;
const clients: Redis[] = [];
let db: TestDatabase;
let tenantry: Tenantry<unknown>;

async function connect(): Promise<Redis> {
  const client = createClient({ url: redisUrl as string, socket: { reconnectStrategy: () => 100 } });
  client.on('error', () => {});
  await client.connect();
  clients.push(client);
  return client;
}

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('cache_http'));
});

afterAll(async () => {
  if (redisUrl) {
    const client = await connect();
    for await (const keys of client.scanIterator({ MATCH: `${PREFIX}*`, COUNT: 1000 })) {
      if (keys.length > 0) await client.del(keys);
    }
  }
  await Promise.all(clients.map((c) => c.quit().catch(() => {})));
  await tenantry?.close();
  await db?.drop();
});

const backends = [
  { name: 'in-process', skip: false, make: async () => new TenantScopedCache() },
  {
    name: 'Redis',
    skip: !redisUrl,
    make: async () => new TenantScopedCache({ redis: await connect(), keyPrefix: PREFIX }),
  },
];

async function tenantWithKey(server: TestServer, slug: string): Promise<string> {
  expect((await server.request('POST', '/v1/tenants', { token: ADMIN, body: { slug, name: slug } })).status).toBe(201);
  const key = await server.request('POST', `/v1/tenants/${slug}/api-keys`, {
    token: ADMIN,
    body: { name: 'k', environment: 'test', scopes: ['items:read', 'items:write'] },
  });
  return key.body.key as string;
}

describe.each(backends)('item reads through the tenant cache ($name)', ({ name, skip, make }) => {
  let server: TestServer;
  let cache: TenantScopedCache;
  let a: string;
  let b: string;

  beforeAll(async () => {
    if (skip) return;
    cache = await make();
    // Plenty of requests a minute: the readers below are many.
    const plans = definePlans({ free: { requestsPerMinute: 100_000 } });
    server = await startServer(tenantry, { adminToken: ADMIN, cache, plans });
    const tag = `${name === 'Redis' ? 'r' : 'm'}-${randomBytes(3).toString('hex')}`;
    a = await tenantWithKey(server, `cache-a-${tag}`);
    b = await tenantWithKey(server, `cache-b-${tag}`);
  });

  afterAll(async () => {
    await server?.close();
    await cache?.close();
  });

  it.skipIf(skip)('serves a read from the cache, and never to another tenant', async () => {
    const created = await server.request('POST', '/v1/items', { token: a, body: { title: 'secret of A' } });
    const path = `/v1/items/${created.body.id}`;
    const before = cache.stats();
    expect((await server.request('GET', path, { token: a })).body.title).toBe('secret of A');
    expect((await server.request('GET', path, { token: a })).body.title).toBe('secret of A');
    expect(cache.stats().hits - before.hits).toBe(1);
    expect(cache.stats().computations - before.computations).toBe(1);
    // B asks for A's id: its own namespace, its own (RLS-filtered) read, nothing cached.
    for (let i = 0; i < 2; i++) expect((await server.request('GET', path, { token: b })).status).toBe(404);
    expect((await server.request('GET', path, { token: a })).body.title).toBe('secret of A');
  });

  it.skipIf(skip)(
    'a hard delete erases the tenant’s cache keys and verifies none is left; B keeps its own',
    async () => {
      const tag = randomBytes(3).toString('hex');
      const slugs = [`cache-erase-${tag}`, `cache-keep-${tag}`];
      for (const slug of slugs) {
        const token = await tenantWithKey(server, slug);
        const created = await server.request('POST', '/v1/items', { token, body: { title: 'cached' } });
        expect((await server.request('GET', `/v1/items/${created.body.id}`, { token })).status).toBe(200);
      }
      const [doomed, keeper] = await Promise.all(slugs.map(async (slug) => (await tenantry.tenants.get(slug)).id));
      expect(await cache.remainingKeys(doomed as string)).toBeGreaterThan(0);
      const report = await tenantry.eraseTenant(slugs[0] as string);
      expect(report.verification.rows['hook:cache']).toBe(0);
      expect(await cache.remainingKeys(doomed as string)).toBe(0);
      expect(await cache.remainingKeys(keeper as string)).toBeGreaterThan(0);
    },
  );

  it.skipIf(skip)('never serves an item stale after a PATCH, or at all after a DELETE', async () => {
    const created = await server.request('POST', '/v1/items', { token: a, body: { title: 'v0' } });
    const path = `/v1/items/${created.body.id}`;
    // Readers hammer the item while it changes: each read after a write's answer must see it.
    let stop = false;
    const readers = Array.from({ length: 4 }, async () => {
      while (!stop) await server.request('GET', path, { token: a });
    });
    try {
      for (let v = 1; v <= 15; v++) {
        expect((await server.request('PATCH', path, { token: a, body: { title: `v${v}` } })).status).toBe(200);
        expect((await server.request('GET', path, { token: a })).body.title).toBe(`v${v}`);
      }
      expect((await server.request('DELETE', path, { token: a })).status).toBe(204);
      for (let i = 0; i < 3; i++) expect((await server.request('GET', path, { token: a })).status).toBe(404);
    } finally {
      stop = true;
      await Promise.all(readers);
    }
  });

  it.skipIf(skip)('exports the cache counters on /metrics without tenant labels', async () => {
    const metrics = (await server.request('GET', '/metrics')).body as string;
    expect(metrics).toMatch(/tenantry_cache_events_total\{event="hits",backend="(memory|redis)"\} [1-9]/);
    expect(metrics).not.toMatch(/tenantry_cache_[^\n]*tenant=/);
  });
});

describe.each(backends)('tenant changes flush the namespace on every instance ($name)', ({ name, skip, make }) => {
  it.skipIf(skip)('suspending, then deleting, a tenant makes its entries miss on another instance', async () => {
    const feed = new ChangeFeed(db.url);
    const heard: (string | undefined)[] = [];
    feed.on(CHANNELS.tenants, (id) => heard.push(id));
    const hear = async (id: string) => {
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && !heard.includes(id)) await sleep(10);
    };
    // Instance one has no feed; instance two hears the change (with Redis both share the flush).
    const one = await make();
    const two = name === 'Redis' ? new TenantScopedCache({ redis: await connect(), keyPrefix: PREFIX, feed }) : one;
    const other = name === 'Redis' ? one : new TenantScopedCache({ feed });
    await feed.start();
    try {
      const slug = `cache-life-${name === 'Redis' ? 'r' : 'm'}-${randomBytes(3).toString('hex')}`;
      const tenant = await tenantry.tenants.create({ slug, name: slug });
      const bystander = await tenantry.tenants.create({ slug: `${slug}-b`, name: slug });
      // Their creation notifies too: let that flush pass before caching anything.
      await hear(tenant.id);
      await hear(bystander.id);
      const seen = name === 'Redis' ? one : other;
      const waitForMiss = async () => {
        const deadline = Date.now() + 5000;
        while (Date.now() < deadline && (await seen.get('profile', { tenant: tenant.id })) !== undefined)
          await sleep(20);
        return seen.get('profile', { tenant: tenant.id });
      };
      for (const change of [
        () => tenantry.tenants.suspend(tenant.id),
        async () => {
          await tenantry.tenants.resume(tenant.id);
          await waitForMiss(); // the resume flushes too
          await seen.set('profile', 'again', { tenant: tenant.id });
          return tenantry.tenants.delete(tenant.id);
        },
      ]) {
        await seen.set('profile', 'cached', { tenant: tenant.id });
        await seen.set('profile', 'bystander', { tenant: bystander.id });
        expect(await seen.get('profile', { tenant: tenant.id })).toBeDefined();
        await change();
        expect(await waitForMiss()).toBeUndefined();
        expect(await seen.get('profile', { tenant: bystander.id })).toBe('bystander');
      }
    } finally {
      await feed.close();
      await two.close();
      await other.close();
    }
  });
});

describe('the server’s cache option', () => {
  it('cache: true builds an in-process cache: a change made outside the API is not seen until the entry goes', async () => {
    const server = await startServer(tenantry, { adminToken: ADMIN, cache: true });
    try {
      const key = await tenantWithKey(server, `cache-on-${randomBytes(3).toString('hex')}`);
      const created = await server.request('POST', '/v1/items', { token: key, body: { title: 'before' } });
      const path = `/v1/items/${created.body.id}`;
      expect((await server.request('GET', path, { token: key })).body.title).toBe('before');
      await tenantry.adminPool.query('UPDATE items SET title = $2 WHERE id = $1', [created.body.id, 'after']);
      expect((await server.request('GET', path, { token: key })).body.title).toBe('before');
      // A change through the API drops the entry.
      await server.request('PATCH', path, { token: key, body: { title: 'patched' } });
      expect((await server.request('GET', path, { token: key })).body.title).toBe('patched');
    } finally {
      await server.close();
    }
  });

  it('by default (or cache: false) reads every item from PostgreSQL: a change made outside the API shows at once', async () => {
    const server = await startServer(tenantry, { adminToken: ADMIN });
    try {
      const key = await tenantWithKey(server, `cache-off-${randomBytes(3).toString('hex')}`);
      const created = await server.request('POST', '/v1/items', { token: key, body: { title: 'before' } });
      const path = `/v1/items/${created.body.id}`;
      expect((await server.request('GET', path, { token: key })).body.title).toBe('before');
      await tenantry.adminPool.query('UPDATE items SET title = $2 WHERE id = $1', [created.body.id, 'after']);
      expect((await server.request('GET', path, { token: key })).body.title).toBe('after');
      const metrics = await server.request('GET', '/metrics');
      expect(String(metrics.body)).not.toContain('tenantry_cache_events_total');
    } finally {
      await server.close();
    }
  });
});
