import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdapterApp, type AdapterName, startAdapterApp } from '../../../test-support/adapter-apps.ts';
import { createTestDatabase, serverUrl, type TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry } from '../../../test-support/http.ts';
import { hasPgBouncer, PGBOUNCER_MISSING, type PgBouncer, startPgBouncer } from '../../../test-support/pgbouncer.ts';
import { apiKeyAuthenticator } from '../src/auth/authenticators.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { TenantCache } from '../src/identify/tenant-cache.ts';
import { type IsolationTier, type TenantRecord, Tenantry } from '../src/index.ts';
import { KeyRing } from '../src/secrets/keys.ts';

// The cross-tenant suite through each HTTP adapter other than Fastify (which http.test.ts and
// isolation.test.ts cover): one Tenantry, tenants on all three tiers, one application per
// adapter over real sockets, the same assertions for each adapter and tier.

const ADAPTERS: AdapterName[] = ['express', 'hono', 'nestjs'];
const TIERS: IsolationTier[] = ['pool', 'schema', 'database'];
const SCOPES = ['items:read', 'items:write'];

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
const tenants = new Map<IsolationTier, { a: TenantRecord; b: TenantRecord; keyA: string; keyB: string }>();
let viewerKey: string;
let revokedKey: string;
let suspendedKey: string;

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('adapters'));
  const key = async (tenant: TenantRecord, scopes = SCOPES) =>
    (await tenantry.apiKeys.create(tenant.id, { name: 'test', environment: 'test', scopes })).key;
  for (const tier of TIERS) {
    const a = await tenantry.tenants.create({ slug: `ad-${tier}-a`, name: 'A', tier });
    const b = await tenantry.tenants.create({ slug: `ad-${tier}-b`, name: 'B', tier });
    expect(a.tier).toBe(tier);
    tenants.set(tier, { a, b, keyA: await key(a), keyB: await key(b) });
  }
  const pool = tenants.get('pool') as { a: TenantRecord };
  viewerKey = await key(pool.a, ['items:read']);
  const revoked = await tenantry.apiKeys.create(pool.a.id, { name: 'gone', environment: 'test', scopes: SCOPES });
  await tenantry.apiKeys.revoke(pool.a.id, revoked.record.id);
  revokedKey = revoked.key;
  const suspended = await tenantry.tenants.create({ slug: 'ad-suspended', name: 'S' });
  suspendedKey = await key(suspended);
  await tenantry.tenants.suspend(suspended.id);
});

afterAll(async () => {
  await tenantry?.close();
  await db?.drop();
});

describe.each(ADAPTERS)('%s adapter', (adapter) => {
  let app: AdapterApp;

  beforeAll(async () => {
    app = await startAdapterApp(adapter, tenantry, {
      tenants: new TenantCache(tenantry.tenants),
      authenticators: [apiKeyAuthenticator(tenantry.apiKeys)],
    });
  });

  afterAll(async () => {
    await app?.close();
  });

  async function call(path: string, init: { key?: string; body?: unknown; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...init.headers };
    if (init.key) headers.authorization = `Bearer ${init.key}`;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${app.url}${path}`, {
      method: init.body === undefined ? 'GET' : 'POST',
      headers,
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    const text = await res.text();
    // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON the server sent
    return { status: res.status, type: res.headers.get('content-type') ?? '', text, body: JSON.parse(text) as any };
  }

  function expectProblem(r: Awaited<ReturnType<typeof call>>, status: number, code: string) {
    expect(r.status).toBe(status);
    expect(r.type).toContain('application/problem+json');
    expect(r.body).toMatchObject({ status, code, type: `https://tenantry.dev/errors/${code}` });
    expect(r.body.requestId).toEqual(expect.any(String));
    expect(r.text).not.toMatch(/\bat .+:\d+:\d+/); // no stack trace
  }

  describe('authentication failures are 401 problems', () => {
    it('no credential', async () => expectProblem(await call('/v1/items'), 401, 'UNAUTHORIZED'));
    it('a forged key', async () => {
      const real = tenants.get('pool')?.keyA as string;
      const forged = `${real.slice(0, -4)}${real.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
      expectProblem(await call('/v1/items', { key: forged }), 401, 'UNAUTHORIZED');
      expectProblem(await call('/v1/items', { key: 'tnt_test_not-a-key' }), 401, 'UNAUTHORIZED');
    });
    it('a revoked key', async () => expectProblem(await call('/v1/items', { key: revokedKey }), 401, 'UNAUTHORIZED'));
  });

  it('refuses a suspended tenant', async () => {
    expectProblem(await call('/v1/whoami', { key: suspendedKey }), 403, 'TENANT_SUSPENDED');
  });

  it('refuses a key without the route permission, and changes nothing', async () => {
    const r = await call('/v1/items', { key: viewerKey, body: { title: `viewer-${adapter}` } });
    expectProblem(r, 403, 'FORBIDDEN');
    const list = await call('/v1/items', { key: viewerKey });
    expect(JSON.stringify(list.body)).not.toContain(`viewer-${adapter}`);
  });

  it('answers a malformed JSON body with a 400 problem and creates nothing', async () => {
    const key = tenants.get('pool')?.keyA as string;
    const res = await fetch(`${app.url}/v1/items`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: `{"title": "half-${adapter}`,
    });
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(JSON.parse(text)).toMatchObject({ status: 400, code: 'INVALID_INPUT' });
    expect(text).not.toMatch(/\bat .+:\d+:\d+/);
    expect(JSON.stringify((await call('/v1/items', { key })).body)).not.toContain(`half-${adapter}`);
  });

  it('answers an unknown route with a NOT_FOUND problem', async () => {
    expectProblem(await call('/v1/nowhere'), 404, 'NOT_FOUND');
  });

  describe.each(TIERS)('%s tier', (tier) => {
    const t = () => tenants.get(tier) as { a: TenantRecord; b: TenantRecord; keyA: string; keyB: string };

    it('identifies the tenant from the key; the handler runs in its context, also after an await', async () => {
      const r = await call('/v1/whoami', { key: t().keyA });
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ admitted: t().a.slug, context: t().a.slug });
      // A claim naming the tenant of the key is fine; one naming another tenant is refused.
      expect((await call('/v1/whoami', { key: t().keyA, headers: { 'x-tenant-id': t().a.slug } })).status).toBe(200);
      const other = await call('/v1/whoami', { key: t().keyA, headers: { 'x-tenant-id': t().b.slug } });
      expectProblem(other, 403, 'FORBIDDEN');
      expect(other.text).not.toContain(t().b.id);
    });

    it("each tenant sees only its rows; the other tenant's ids are 404 and the errors leak nothing", async () => {
      const titleA = `${adapter}-${tier}-alpha`;
      const titleB = `${adapter}-${tier}-bravo-secret`;
      const createdA = await call('/v1/items', { key: t().keyA, body: { title: titleA } });
      const createdB = await call('/v1/items', { key: t().keyB, body: { title: titleB } });
      expect(createdA.status).toBe(201);
      expect(createdB.status).toBe(201);
      const listA = await call('/v1/items', { key: t().keyA });
      expect(listA.status).toBe(200);
      const titlesA = listA.body.items.map((i: { title: string }) => i.title);
      expect(titlesA).toContain(titleA);
      expect(titlesA.filter((title: string) => title.startsWith(`${adapter}-${tier}`))).toEqual([titleA]);
      expect(listA.text).not.toContain(titleB);
      expect((await call(`/v1/items/${createdA.body.id}`, { key: t().keyA })).body).toMatchObject({ title: titleA });
      const stolen = await call(`/v1/items/${createdB.body.id}`, { key: t().keyA });
      expectProblem(stolen, 404, 'NOT_FOUND');
      expect(stolen.text).not.toContain(titleB);
      expect(stolen.text).not.toContain(t().b.id);
      expect(stolen.text).not.toContain(t().b.slug);
      // B still sees its row: A's attempt changed nothing.
      expect((await call(`/v1/items/${createdB.body.id}`, { key: t().keyB })).body).toMatchObject({ title: titleB });
    });

    it('an unexpected error is a bare 500 problem: no message, no stack', async () => {
      const r = await call('/v1/boom', { key: t().keyA });
      expectProblem(r, 500, 'INTERNAL');
      expect(r.text).not.toContain('hunter2');
      expect(r.text).not.toContain('secret_table');
    });
  });
});

// The pool tier again, with tenant work through PgBouncer in transaction mode (few server
// connections shared by every request): each request's context still holds for its own
// transaction only, whichever server connection PgBouncer hands it.
describe.skipIf(!hasPgBouncer)('through PgBouncer in transaction mode (pool tier)', () => {
  let pooledDb: TestDatabase;
  let bouncer: PgBouncer;
  let pooled: Tenantry<unknown>;
  const keys: string[] = [];
  const slugs = ['bouncer-a', 'bouncer-b'];

  beforeAll(async () => {
    if (!hasPgBouncer) console.warn(PGBOUNCER_MISSING);
    pooledDb = await createTestDatabase('adapters_bouncer');
    bouncer = await startPgBouncer({
      upstream: serverUrl(),
      users: { [pooledDb.roles.runtime]: new KeyRing(pooledDb.secret).runtimePassword(pooledDb.roles.runtime) },
    });
    pooled = await Tenantry.connect({
      databaseUrl: pooledDb.url,
      runtimeUrl: bouncer.url(pooledDb.name, pooledDb.roles.runtime),
      secret: pooledDb.secret,
      roles: pooledDb.roles,
      migrations: itemsMigrations,
      contextBinding: 'pooler',
      prepareContextStatement: false,
    });
    await pooled.setup();
    await pooled.migrate();
    for (const slug of slugs) {
      const tenant = await pooled.tenants.create({ slug, name: slug });
      keys.push((await pooled.apiKeys.create(tenant.id, { name: 't', environment: 'test', scopes: SCOPES })).key);
    }
  });

  afterAll(async () => {
    await pooled?.close();
    await bouncer?.stop();
    await pooledDb?.drop();
  });

  it.each(ADAPTERS)('%s: concurrent requests of two tenants each see only their own rows', async (adapter) => {
    const app = await startAdapterApp(adapter, pooled, {
      tenants: new TenantCache(pooled.tenants),
      authenticators: [apiKeyAuthenticator(pooled.apiKeys)],
    });
    try {
      const send = async (key: string, path: string, body?: unknown) => {
        const res = await fetch(`${app.url}${path}`, {
          method: body === undefined ? 'GET' : 'POST',
          headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
        // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON the server sent
        return { status: res.status, body: (await res.json()) as any };
      };
      const created = await Promise.all(
        keys.flatMap((key, n) =>
          [0, 1, 2].map((i) => send(key, '/v1/items', { title: `${adapter}-${slugs[n]}-${i}` })),
        ),
      );
      expect(created.map((r) => r.status)).toEqual(Array(6).fill(201));
      const rounds = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const n = i % 2;
          return send(keys[n] as string, i % 4 < 2 ? '/v1/items' : '/v1/whoami').then((r) => ({ n, r }));
        }),
      );
      for (const { n, r } of rounds) {
        expect(r.status).toBe(200);
        if (r.body.items) {
          const mine = r.body.items
            .map((item: { title: string }) => item.title)
            .filter((t: string) => t.startsWith(adapter));
          expect(mine.sort()).toEqual([0, 1, 2].map((i) => `${adapter}-${slugs[n]}-${i}`));
        } else {
          expect(r.body).toEqual({ admitted: slugs[n], context: slugs[n] });
        }
      }
      const stolen = await send(keys[0] as string, `/v1/items/${created[3]?.body.id}`);
      expect(stolen.status).toBe(404);
      expect(JSON.stringify(stolen.body)).not.toContain(slugs[1]);
    } finally {
      await app.close();
    }
  });
});
