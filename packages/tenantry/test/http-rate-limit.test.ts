import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { hasRedisServer, killProcess, startRedisServer } from '../../../test-support/redis.ts';
import { definePlans } from '../src/admit/plans.ts';
import { freePort } from '../src/embedded/embedded-postgres.ts';
import type { Tenantry } from '../src/index.ts';

const ADMIN = 'rate-limit-admin-token-000';
const redisUrl = inject('redisUrl');
if (!redisUrl) console.warn('http-rate-limit.test.ts: shared-Redis tests skipped: no Redis reachable (set REDIS_URL)');
if (!hasRedisServer) console.warn('http-rate-limit.test.ts: Redis outage tests skipped: no redis-server binary');

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
const plans = definePlans({ tiny: { requestsPerMinute: 5 } });

async function tenantWithKey(server: TestServer, slug: string): Promise<string> {
  expect(
    (await server.request('POST', '/v1/tenants', { token: ADMIN, body: { slug, name: slug, plan: 'tiny' } })).status,
  ).toBe(201);
  const key = await server.request('POST', `/v1/tenants/${slug}/api-keys`, {
    token: ADMIN,
    body: { name: 'k', environment: 'test', scopes: ['items:read'] },
  });
  return key.body.key as string;
}

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('http_rl'));
});

afterAll(async () => {
  await tenantry?.close();
  await db?.drop();
});

describe.skipIf(!redisUrl)('the plan’s limit across two instances sharing Redis', () => {
  it('allows exactly the plan’s budget in total, with IETF headers, then 429 with Retry-After', async () => {
    const clients = [createClient({ url: redisUrl as string }), createClient({ url: redisUrl as string })];
    for (const c of clients) {
      c.on('error', () => {});
      await c.connect();
    }
    const [one, two] = [
      await startServer(tenantry, { adminToken: ADMIN, redis: clients[0], plans }),
      await startServer(tenantry, { adminToken: ADMIN, redis: clients[1], plans }),
    ];
    try {
      const key = await tenantWithKey(one, `rl-${Date.now().toString(36)}`);
      const statuses: number[] = [];
      const first = await one.request('GET', '/v1/items', { token: key });
      statuses.push(first.status);
      expect(first.headers.get('ratelimit-policy')).toBe('"tiny";q=5;w=60');
      expect(first.headers.get('ratelimit')).toMatch(/^"tiny";r=4;t=\d+$/);
      for (let i = 0; i < 7; i++)
        statuses.push((await (i % 2 ? one : two).request('GET', '/v1/items', { token: key })).status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(5);
      expect(statuses.filter((s) => s === 429)).toHaveLength(3);
      const limited = await two.request('GET', '/v1/items', { token: key });
      expect(limited.status).toBe(429);
      expect(limited.body.code).toBe('RATE_LIMITED');
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      // Another tenant has a budget of its own.
      const other = await tenantWithKey(two, `rl-other-${Date.now().toString(36)}`);
      expect((await one.request('GET', '/v1/items', { token: other })).status).toBe(200);
    } finally {
      await one.close();
      await two.close();
      for (const c of clients) await c.quit();
    }
  });
});

describe.skipIf(!hasRedisServer)('Redis stopped: the declared policy, without hanging', () => {
  let dir: string;
  let port: number;
  let redis: ChildProcess | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tenantry-redis-'));
    port = await freePort();
    redis = await startRedisServer(port, dir);
  });

  afterAll(async () => {
    await killProcess(redis);
    await rm(dir, { recursive: true, force: true });
  });

  it('fail-open answers 200 and fail-closed answers 429 within a second; limits resume after a restart', async () => {
    const client = createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: () => 100 } });
    client.on('error', () => {});
    await client.connect();
    const open = await startServer(tenantry, { adminToken: ADMIN, redis: client, plans, onRedisError: 'fail-open' });
    const closed = await startServer(tenantry, {
      adminToken: ADMIN,
      redis: client,
      plans,
      onRedisError: 'fail-closed',
    });
    try {
      const key = await tenantWithKey(open, `rl-out-${Date.now().toString(36)}`);
      expect((await open.request('GET', '/v1/items', { token: key })).status).toBe(200);
      await killProcess(redis);
      for (const [server, expected] of [
        [open, 200],
        [closed, 429],
      ] as const) {
        const started = performance.now();
        const r = await server.request('GET', '/v1/items', { token: key });
        expect(performance.now() - started).toBeLessThan(1000);
        expect(r.status).toBe(expected);
      }
      redis = await startRedisServer(port, dir);
      const deadline = Date.now() + 5000;
      let policy: string | null = null;
      while (Date.now() < deadline && !policy?.includes('r=')) {
        const r = await open.request('GET', '/v1/items', { token: key });
        policy = r.headers.get('ratelimit');
        await new Promise((done) => setTimeout(done, 100));
      }
      expect(policy).toMatch(/^"tiny";r=\d+;t=\d+$/);
    } finally {
      await open.close();
      await closed.close();
      await client.quit().catch(() => {});
    }
  });
});
