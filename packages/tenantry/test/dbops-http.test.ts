import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import type { Tenantry } from '../src/index.ts';

// /v1/admin/db/* over real sockets: admin token only (a tenant's key is refused and
// changes nothing), maintenance audited, bad input a problem+json 400, the tenantry_db_*
// gauges on /metrics, and REINDEX CONCURRENTLY while the example application serves writes.

const ADMIN = 'dbops-admin-token';
let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let admin: pg.Client;
const keys: Record<string, string> = {};

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('dbops_http'));
  server = await startServer(tenantry, {
    adminToken: ADMIN,
    // No rate limit: the write loop below is the point, not admission.
    admit: async () => ({ allowed: true, headers: {} }),
  });
  for (const [slug, tier] of [
    ['dbh-pool', 'pool'],
    ['dbh-schema', 'schema'],
  ] as const) {
    const tenant = await tenantry.tenants.create({ slug, name: slug, tier });
    const { key } = await tenantry.apiKeys.create(tenant.id, {
      name: 'app',
      environment: 'test',
      scopes: ['items:read', 'items:write', 'tenant:read', 'audit:read'],
    });
    keys[slug] = key;
  }
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

const auditCount = async () =>
  Number((await admin.query("SELECT count(*) AS n FROM tenantry.audit_log WHERE action LIKE 'db.%'")).rows[0].n);

describe('/v1/admin/db', () => {
  it('refuses tenant credentials and anonymous callers on every route, with problem+json, changing nothing', async () => {
    const before = await auditCount();
    const routes = [
      ['GET', '/v1/admin/db/health'],
      ['GET', '/v1/admin/db/stats'],
      ['GET', '/v1/admin/db/slow-queries'],
      ['GET', '/v1/admin/db/index-advice'],
      ['POST', '/v1/admin/db/analyze'],
      ['POST', '/v1/admin/db/vacuum'],
      ['POST', '/v1/admin/db/reindex'],
    ] as const;
    for (const [method, path] of routes) {
      for (const token of [keys['dbh-pool'], undefined, 'not-the-admin-token']) {
        const res = await server.request(method, path, {
          ...(token ? { token } : {}),
          ...(method === 'POST' ? { body: { tables: ['items'] } } : {}),
        });
        expect([401, 403], `${method} ${path} with ${token ? 'a credential' : 'nothing'}`).toContain(res.status);
        expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
        expect(res.body.code).toMatch(/UNAUTHORIZED|FORBIDDEN/);
      }
    }
    expect(await auditCount()).toBe(before);
  });

  it('health, stats and slow queries for the admin', async () => {
    const health = await server.request('GET', '/v1/admin/db/health', { token: ADMIN });
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ connected: true, connections: { max: expect.any(Number) } });
    const stats = await server.request('GET', '/v1/admin/db/stats', { token: ADMIN });
    expect(stats.status).toBe(200);
    expect(stats.body.tables.map((t: { table: string }) => t.table)).toContain('public.items');
    const slow = await server.request('GET', '/v1/admin/db/slow-queries?limit=5', { token: ADMIN });
    expect(slow.status).toBe(200);
    const { rows } = await admin.query("SELECT current_setting('shared_preload_libraries') AS s");
    if (!String(rows[0].s).includes('pg_stat_statements')) {
      // The shared test server does not preload it: the answer says so plainly.
      expect(slow.body).toMatchObject({ available: false, statements: [] });
      expect(slow.body.reason).toMatch(/shared_preload_libraries/);
      const advice = await server.request('GET', '/v1/admin/db/index-advice', { token: ADMIN });
      expect(advice.body).toMatchObject({ available: false, suggestions: [] });
    }
    expect((await server.request('GET', '/v1/admin/db/stats?schema=x;y', { token: ADMIN })).status).toBe(400);
  });

  it('vacuum and analyze: audited with the request id; bad input is a 400 and runs nothing', async () => {
    const before = await auditCount();
    const bad = await server.request('POST', '/v1/admin/db/vacuum', {
      token: ADMIN,
      body: { tables: ['items; DROP TABLE items'] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('INVALID_INPUT');
    expect(
      (await server.request('POST', '/v1/admin/db/analyze', { token: ADMIN, body: { tables: ['nope'] } })).status,
    ).toBe(404);
    expect(
      (await server.request('POST', '/v1/admin/db/analyze', { token: ADMIN, body: { tenant: 'no-such-tenant' } }))
        .status,
    ).toBe(404);
    expect(await auditCount()).toBe(before);

    const res = await server.request('POST', '/v1/admin/db/vacuum', {
      token: ADMIN,
      body: { tables: ['items'] },
      headers: { 'x-request-id': 'vacuum-req-1' },
    });
    expect(res.status).toBe(200);
    expect(res.body.reports).toMatchObject([{ target: 'shared', statements: ['VACUUM (ANALYZE) "public"."items"'] }]);
    const { rows } = await admin.query("SELECT actor, details FROM tenantry.audit_log WHERE action = 'db.vacuum'");
    expect(rows).toMatchObject([{ actor: 'admin-api:vacuum-req-1', details: { outcome: 'completed' } }]);

    const fleet = await server.request('POST', '/v1/admin/db/analyze', {
      token: ADMIN,
      body: { fleet: true, tables: ['items'] },
    });
    expect(fleet.status).toBe(200);
    expect(fleet.body.reports.map((r: { target: string }) => r.target)).toEqual([expect.stringMatching(/^schema\//)]);
  });

  it('REINDEX CONCURRENTLY while the example app serves writes: no error, no lost write', async () => {
    const written: string[] = [];
    const failures: string[] = [];
    let writing = true;
    const writer = async (slug: string, n: number) => {
      for (let i = 0; writing; i++) {
        const res = await server.request('POST', '/v1/items', {
          token: keys[slug],
          body: { title: `${slug} w${n}-${i}` },
        });
        if (res.status === 201) written.push(res.body.id);
        else failures.push(`${res.status} ${JSON.stringify(res.body)}`);
      }
    };
    const writers = [writer('dbh-pool', 1), writer('dbh-pool', 2), writer('dbh-schema', 1)];
    try {
      await new Promise((r) => setTimeout(r, 200));
      for (const body of [{ tables: ['items'] }, { tables: ['items'], tenant: 'dbh-schema' }, { tables: ['items'] }]) {
        const res = await server.request('POST', '/v1/admin/db/reindex', { token: ADMIN, body });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body.reports[0].statements[0]).toMatch(/^REINDEX TABLE CONCURRENTLY /);
      }
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    expect(failures).toEqual([]);
    expect(written.length).toBeGreaterThan(20);
    // Every acknowledged write is there (read through each tenant's own API).
    let found = 0;
    for (const slug of ['dbh-pool', 'dbh-schema']) {
      let cursor: string | undefined;
      do {
        const page = await server.request('GET', `/v1/items?limit=100${cursor ? `&cursor=${cursor}` : ''}`, {
          token: keys[slug],
        });
        expect(page.status).toBe(200);
        found += page.body.items.filter((i: { id: string }) => written.includes(i.id)).length;
        cursor = page.body.nextCursor;
      } while (cursor);
    }
    expect(found).toBe(written.length);
    const { rows } = await admin.query(
      'SELECT count(*)::int AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid',
    );
    expect(rows[0].n).toBe(0);
  });

  it('/metrics carries the tenantry_db_* gauges, with no tenant label', async () => {
    // Storage is read in the background: the first scrape starts the reading, a later one has it.
    let text = '';
    for (let i = 0; i < 100 && !/tenantry_db_storage_bytes\{tier="schema"\}/.test(text); i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      text = await (await fetch(`${server.url}/metrics`)).text();
    }
    expect(text).toMatch(/tenantry_db_connections\{state="used"\} [1-9]/);
    expect(text).toMatch(/tenantry_db_pool_saturation\{pool="runtime"\} /);
    expect(text).toMatch(/tenantry_db_storage_bytes\{tier="pool"\} [1-9]/);
    expect(text).toMatch(/tenantry_db_storage_bytes\{tier="schema"\} [1-9]/);
    expect(text).toMatch(/tenantry_db_xid_age_ratio \d/);
    expect(text).toMatch(/tenantry_db_statements_available [01]/);
    const dbLines = text.split('\n').filter((l) => l.startsWith('tenantry_db_'));
    expect(dbLines.filter((l) => /tenant=/.test(l))).toEqual([]);
  });
});
