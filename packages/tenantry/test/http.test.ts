import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { ERRORS, type Tenantry } from '../src/index.ts';

const ADMIN = 'test-admin-token-0123456789';
let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let keyA: string;
let keyB: string;
let viewerKeyA: string;
let itemB: string;

const allScopes = ['tenant:read', 'items:read', 'items:write', 'users:read', 'users:write'];

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('http'));
  server = await startServer(tenantry, { adminToken: ADMIN });
  for (const slug of ['alpha', 'bravo']) {
    const r = await server.request('POST', '/v1/tenants', { token: ADMIN, body: { slug, name: slug.toUpperCase() } });
    expect(r.status).toBe(201);
  }
  const mk = async (tenant: string, scopes: string[]) => {
    const r = await server.request('POST', `/v1/tenants/${tenant}/api-keys`, {
      token: ADMIN,
      body: { name: 'test', environment: 'test', scopes },
    });
    expect(r.status).toBe(201);
    return r.body.key as string;
  };
  keyA = await mk('alpha', allScopes);
  keyB = await mk('bravo', allScopes);
  viewerKeyA = await mk('alpha', ['items:read']);
  const created = await server.request('POST', '/v1/items', {
    token: keyB,
    body: { title: 'bravo secret plans', description: 'only bravo may see this' },
  });
  expect(created.status).toBe(201);
  itemB = created.body.id;
});

afterAll(async () => {
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

describe('control plane', () => {
  it('needs the admin token', async () => {
    expect((await server.request('GET', '/v1/tenants')).status).toBe(401);
    expect((await server.request('GET', '/v1/tenants', { token: keyA })).status).toBe(401);
    const ok = await server.request('GET', '/v1/tenants', { token: ADMIN });
    expect(ok.status).toBe(200);
    expect(ok.body.tenants.map((t: { slug: string }) => t.slug).sort()).toEqual(['alpha', 'bravo']);
  });

  it('bad input is a 400 problem+json that names the field and changes nothing', async () => {
    const r = await server.request('POST', '/v1/tenants', { token: ADMIN, body: { slug: 'NOPE!', name: '' } });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body).toMatchObject({ code: 'INVALID_INPUT', status: 400 });
    expect(JSON.stringify(r.body)).toContain('slug');
    const list = await server.request('GET', '/v1/tenants', { token: ADMIN });
    expect(list.body.tenants).toHaveLength(2);
  });
});

describe('data plane isolation', () => {
  it('A lists and searches only its own items', async () => {
    await server.request('POST', '/v1/items', { token: keyA, body: { title: 'alpha plans', description: 'secret' } });
    const list = await server.request('GET', '/v1/items', { token: keyA });
    expect(list.status).toBe(200);
    expect(list.body.items.map((i: { title: string }) => i.title)).toEqual(['alpha plans']);
    const search = await server.request('GET', '/v1/items?q=plans', { token: keyA });
    expect(search.body.items.map((i: { title: string }) => i.title)).toEqual(['alpha plans']);
    expect(JSON.stringify(search.body)).not.toContain('bravo');
  });

  it('B’s item id answers A exactly like a missing one, on every route', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    for (const [method, body] of [
      ['GET', undefined],
      ['PATCH', { title: 'pwned' }],
      ['DELETE', undefined],
    ] as const) {
      const other = await server.request(method, `/v1/items/${itemB}`, { token: keyA, ...(body ? { body } : {}) });
      const none = await server.request(method, `/v1/items/${missing}`, { token: keyA, ...(body ? { body } : {}) });
      expect(other.status).toBe(404);
      expect({ ...other.body, requestId: undefined, detail: undefined }).toEqual({
        ...none.body,
        requestId: undefined,
        detail: undefined,
      });
      expect(JSON.stringify(other.body)).not.toContain(itemB);
    }
    const still = await server.request('GET', `/v1/items/${itemB}`, { token: keyB });
    expect(still.status).toBe(200);
    expect(still.body.title).toBe('bravo secret plans');
  });

  it('a credential for A naming B in X-Tenant-ID is 403; an unknown tenant is 404', async () => {
    const mismatch = await server.request('GET', '/v1/items', { token: keyA, headers: { 'x-tenant-id': 'bravo' } });
    expect(mismatch.status).toBe(403);
    expect(JSON.stringify(mismatch.body)).not.toContain('bravo secret');
    const same = await server.request('GET', '/v1/items', { token: keyA, headers: { 'x-tenant-id': 'alpha' } });
    expect(same.status).toBe(200);
    const unknown = await server.request('GET', '/v1/items', { token: keyA, headers: { 'x-tenant-id': 'nobody' } });
    expect(unknown.status).toBe(404);
  });

  it('no or bad credentials: 401 problem+json', async () => {
    expect((await server.request('GET', '/v1/items')).status).toBe(401);
    expect((await server.request('GET', '/v1/items', { token: 'tnt_live_notavalidkey' })).status).toBe(401);
    expect((await server.request('GET', '/v1/items', { token: 'a.b.c' })).status).toBe(401);
  });

  it('a key without items:write cannot write', async () => {
    const r = await server.request('POST', '/v1/items', { token: viewerKeyA, body: { title: 'nope' } });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('FORBIDDEN');
  });

  it('/v1/me names the caller and its tenant only', async () => {
    const me = await server.request('GET', '/v1/me', { token: keyA });
    expect(me.status).toBe(200);
    expect(me.body.tenant.slug).toBe('alpha');
    expect(me.body.principal.kind).toBe('api-key');
  });
});

describe('lifecycle over HTTP', () => {
  it('a suspended tenant gets 403 TENANT_SUSPENDED; resumed, it works again', async () => {
    expect((await server.request('POST', '/v1/tenants/alpha/suspend', { token: ADMIN })).status).toBe(200);
    const refused = await server.request('GET', '/v1/items', { token: keyA });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('TENANT_SUSPENDED');
    expect((await server.request('POST', '/v1/tenants/alpha/resume', { token: ADMIN })).status).toBe(200);
    expect((await server.request('GET', '/v1/items', { token: keyA })).status).toBe(200);
  });

  it('a revoked key is refused within 1 s by a second instance sharing the database', async () => {
    const second = await startServer(tenantry, { adminToken: ADMIN });
    try {
      const created = await server.request('POST', '/v1/tenants/alpha/api-keys', {
        token: ADMIN,
        body: { name: 'short-lived', environment: 'live', scopes: ['items:read'] },
      });
      const key = created.body.key as string;
      expect((await second.request('GET', '/v1/items', { token: key })).status).toBe(200);
      const revoked = await server.request('DELETE', `/v1/tenants/alpha/api-keys/${created.body.apiKey.id}`, {
        token: ADMIN,
      });
      expect(revoked.status).toBe(200);
      const deadline = Date.now() + 1000;
      let status = 200;
      while (Date.now() < deadline) {
        status = (await second.request('GET', '/v1/items', { token: key })).status;
        if (status === 401) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(status).toBe(401);
    } finally {
      await second.close();
    }
  });
});

describe('users, login and roles', () => {
  it('login, refresh rotation, and a viewer cannot write', async () => {
    const add = await server.request('POST', '/v1/tenants/alpha/users', {
      token: ADMIN,
      body: { email: 'viewer@alpha.test', password: 'correct horse battery', role: 'viewer' },
    });
    expect(add.status).toBe(201);
    const login = await server.request('POST', '/v1/auth/login', {
      body: { tenant: 'alpha', email: 'viewer@alpha.test', password: 'correct horse battery' },
    });
    expect(login.status).toBe(200);
    const { accessToken, refreshToken } = login.body;
    expect((await server.request('GET', '/v1/items', { token: accessToken })).status).toBe(200);
    const write = await server.request('POST', '/v1/items', { token: accessToken, body: { title: 'x' } });
    expect(write.status).toBe(403);
    const refreshed = await server.request('POST', '/v1/auth/refresh', { body: { refreshToken } });
    expect(refreshed.status).toBe(200);
    const reuse = await server.request('POST', '/v1/auth/refresh', { body: { refreshToken } });
    expect(reuse.status).toBe(401);
    const afterReuse = await server.request('POST', '/v1/auth/refresh', {
      body: { refreshToken: refreshed.body.refreshToken },
    });
    expect(afterReuse.status).toBe(401);
    const wrong = await server.request('POST', '/v1/auth/login', {
      body: { tenant: 'alpha', email: 'viewer@alpha.test', password: 'wrong password!' },
    });
    expect(wrong.status).toBe(401);
  });

  it('a user’s token for A with X-Tenant-ID: bravo is 403; users lists only A’s users', async () => {
    await server.request('POST', '/v1/tenants/bravo/users', {
      token: ADMIN,
      body: { email: 'boss@bravo.test', password: 'bravo boss password', role: 'owner' },
    });
    const list = await server.request('GET', '/v1/users', { token: keyA });
    expect(list.status).toBe(200);
    expect(JSON.stringify(list.body)).not.toContain('bravo');
  });
});

describe('ops', () => {
  it('serves /openapi.json (OpenAPI 3.1) listing every route', async () => {
    const doc = await server.request('GET', '/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
    for (const path of [
      '/v1/tenants',
      '/v1/tenants/{tenant}',
      '/v1/items',
      '/v1/items/{id}',
      '/v1/auth/login',
      '/v1/me',
      '/v1/users',
    ]) {
      expect(Object.keys(doc.body.paths)).toContain(path);
    }
  });

  it('echoes a well-formed X-Request-ID and puts it in problems', async () => {
    const r = await server.request('GET', '/v1/items', { headers: { 'x-request-id': 'abc-123' } });
    expect(r.headers.get('x-request-id')).toBe('abc-123');
    expect(r.body.requestId).toBe('abc-123');
  });

  it('malformed JSON and oversized bodies are 4xx problem+json without a stack trace', async () => {
    const bad = await server.request('POST', '/v1/items', { token: keyA, raw: '{"title": ' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
    const big = await server.request('POST', '/v1/items', {
      token: keyA,
      body: { title: 'x'.repeat(2 * 1024 * 1024) },
    });
    expect(big.status).toBe(413);
    for (const r of [bad, big]) expect(JSON.stringify(r.body)).not.toMatch(/at .*\.(ts|js):\d+/);
  });

  it('a 413 and a 415 carry the catalog code and title of their status', async () => {
    const big = await server.request('POST', '/v1/items', {
      token: keyA,
      body: { title: 'x'.repeat(2 * 1024 * 1024) },
    });
    expect(big.status).toBe(413);
    expect(big.body).toMatchObject({
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
      title: ERRORS.PAYLOAD_TOO_LARGE.message,
      type: 'https://tenantry.dev/errors/PAYLOAD_TOO_LARGE',
    });
    const text = await server.request('POST', '/v1/items', {
      token: keyA,
      raw: '<item><title>hello</title></item>',
      headers: { 'content-type': 'application/xml' },
    });
    expect(text.status).toBe(415);
    expect(text.headers.get('content-type')).toContain('application/problem+json');
    expect(text.body).toMatchObject({
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
      title: ERRORS.UNSUPPORTED_MEDIA_TYPE.message,
      type: 'https://tenantry.dev/errors/UNSUPPORTED_MEDIA_TYPE',
    });
  });
});

describe('observability', () => {
  it('/metrics exposes request counts by route template and at most 10 named tenants', async () => {
    await server.request('GET', `/v1/items/${itemB}`, { token: keyB });
    const r = await fetch(`${server.url}/metrics`);
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).toMatch(/tenantry_http_requests_total\{route="\/v1\/items\/:id",method="GET",status="200"\} \d+/);
    expect(text).not.toContain(itemB); // ids never become labels
    expect(text).toContain('tenantry_pool_runtime_connections{state="total"}');
    expect(text).toContain('tenantry_rate_limit_decisions_total');
    expect(text).toMatch(/tenantry_pool_map_connections_open \d+/);
    expect(text).toMatch(/tenantry_pool_map_waiters \d+/);
    // prom-client's process and Node.js metrics, under our prefix once.
    expect(text).toMatch(/^tenantry_process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^tenantry_nodejs_eventloop_lag_seconds \d/m);
    const names = new Set(text.split('\n').flatMap((l) => /^# TYPE (\S+)/.exec(l)?.[1] ?? []));
    const misnamed = [...names].filter((n) => !n.startsWith('tenantry_') || /^tenantry_\w+_(process|nodejs)_/.test(n));
    expect(misnamed).toEqual([]);
    const named = text.split('\n').filter((l) => l.startsWith('tenantry_tenant_requests_top{'));
    expect(named.length).toBeGreaterThan(0);
    expect(named.length).toBeLessThanOrEqual(10);
  });

  it('sets security headers (helmet) and accepts a W3C traceparent', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const r = await server.request('GET', '/health', { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('x-frame-options')).toBeTruthy();
  });
});

describe('quotas', () => {
  it('max_storage_mb: writes are refused with 409 QUOTA_EXCEEDED once the tenant uses its storage', async () => {
    const created = await server.request('POST', '/v1/tenants', {
      token: ADMIN,
      body: { slug: 'tiny-store', name: 'Tiny', plan: 'enterprise', limits: { maxStorageMb: 1 } },
    });
    expect(created.status).toBe(201);
    expect(created.body.limits.maxStorageMb).toBe(1);
    const key = (
      await server.request('POST', '/v1/tenants/tiny-store/api-keys', {
        token: ADMIN,
        body: { name: 'k', environment: 'test', scopes: ['items:read', 'items:write'] },
      })
    ).body.key as string;
    // Random text, so PostgreSQL's compression cannot shrink it much: ~7 KB stored a row.
    const description = randomBytes(7000).toString('base64');
    let status = 201;
    let writes = 0;
    while (status === 201 && writes < 400) {
      status = (await server.request('POST', '/v1/items', { token: key, body: { title: `n${writes}`, description } }))
        .status;
      writes++;
    }
    expect(status).toBe(409);
    expect(writes).toBeGreaterThan(50); // the limit, not an early refusal
    const refused = await server.request('POST', '/v1/items', { token: key, body: { title: 'one more' } });
    expect(refused.body.code).toBe('QUOTA_EXCEEDED');
    // Other tenants are unaffected.
    expect((await server.request('POST', '/v1/items', { token: keyA, body: { title: 'still fine' } })).status).toBe(
      201,
    );
  });
});

describe('CORS', () => {
  it('allows only the configured origins; without any, no CORS header and a preflight is 404', async () => {
    const { createServer } = await import('../src/http/server.ts');
    const app = await createServer(tenantry, { logger: false, corsOrigins: ['https://app.example.com'] });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const preflight = (base: string, origin: string) =>
        fetch(`${base}/v1/items`, {
          method: 'OPTIONS',
          headers: { origin, 'access-control-request-method': 'POST' },
        });
      const allowed = await preflight(url, 'https://app.example.com');
      expect(allowed.status).toBe(204);
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
      const other = await fetch(`${url}/health`, { headers: { origin: 'https://evil.example.net' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      // The reference server of this file has no origins configured.
      const none = await preflight(server.url, 'https://app.example.com');
      expect(none.status).toBe(404);
      expect(none.headers.get('content-type')).toContain('application/problem+json');
      expect(none.headers.get('access-control-allow-origin')).toBeNull();
      const get = await fetch(`${server.url}/health`, { headers: { origin: 'https://app.example.com' } });
      expect(get.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await app.close();
    }
  });
});

describe('feature flags', () => {
  it('a route gated by a feature answers 403 FEATURE_DISABLED until the tenant has it', async () => {
    const { createServer } = await import('../src/http/server.ts');
    const app = await createServer(tenantry, { logger: false, adminToken: ADMIN });
    app.get('/v1/beta', { config: { tenantry: { tenant: true, feature: 'beta' } } }, async () => ({ ok: true }));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const get = () => fetch(`${url}/v1/beta`, { headers: { authorization: `Bearer ${keyB}` } });
      const refused = await get();
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { code: string }).code).toBe('FEATURE_DISABLED');
      const patched = await server.request('PATCH', '/v1/tenants/bravo', {
        token: ADMIN,
        body: { features: { beta: true } },
      });
      expect(patched.status).toBe(200);
      const deadline = Date.now() + 2000;
      let status = 403;
      while (status !== 200 && Date.now() < deadline) {
        status = (await get()).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
      expect(status).toBe(200);
    } finally {
      await app.close();
    }
  });
});
