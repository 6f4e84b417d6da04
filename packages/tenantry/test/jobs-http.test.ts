import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { defineItemJobs } from '../src/example/item-jobs.ts';
import type { Tenantry } from '../src/index.ts';

const ADMIN = 'jobs-admin-token-0123456789abcdef';

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
const keys: Record<string, { tenantId: string; key: string }> = {};
const key = (slug: string) => keys[slug] as { tenantId: string; key: string };

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('jobs_http'));
  server = await startServer(tenantry, { adminToken: ADMIN });
  defineItemJobs(tenantry.jobs);
  for (const slug of ['a', 'b', 'c']) {
    const tenant = await tenantry.tenants.create({ slug: `jobs-${slug}`, name: slug });
    const created = await tenantry.apiKeys.create(tenant.id, {
      name: 'app',
      environment: 'test',
      scopes: slug === 'c' ? ['items:read'] : ['jobs:read', 'jobs:write'],
    });
    keys[slug] = { tenantId: tenant.id, key: created.key };
  }
});

afterAll(async () => {
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

describe('/v1/jobs', () => {
  it("a tenant sees, cancels and retries its own jobs only; another tenant's are NOT_FOUND", async () => {
    const a1 = await tenantry.jobs.enqueue(key('a').tenantId, 'items.count', {}, { delayMs: 60_000 });
    const b1 = await tenantry.jobs.enqueue(key('b').tenantId, 'items.count', {}, { delayMs: 60_000 });

    const listA = await server.request('GET', '/v1/jobs', { token: key('a').key });
    expect(listA.status).toBe(200);
    expect(listA.body.jobs.map((j: { id: string }) => j.id)).toEqual([a1]);
    expect(listA.body.stats).toMatchObject({ tenantId: key('a').tenantId, scheduled: 1, backlog: 0 });
    expect(JSON.stringify(listA.body)).not.toContain(key('b').tenantId);

    for (const [method, path] of [
      ['GET', `/v1/jobs/${b1}`],
      ['POST', `/v1/jobs/${b1}/cancel`],
      ['POST', `/v1/jobs/${b1}/retry`],
    ] as const) {
      const res = await server.request(method, path, { token: key('a').key });
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/problem\+json/);
      expect(res.body.code).toBe('NOT_FOUND');
      expect(JSON.stringify(res.body)).not.toContain(key('b').tenantId);
    }
    expect((await tenantry.jobs.get(b1)).state).toBe('pending');

    const cancelled = await server.request('POST', `/v1/jobs/${a1}/cancel`, { token: key('a').key });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.state).toBe('cancelled');
    const retried = await server.request('POST', `/v1/jobs/${a1}/retry`, { token: key('a').key });
    expect(retried.body.state).toBe('pending');
    await tenantry.jobs.worker().drain();
    const done = await server.request('GET', `/v1/jobs/${a1}`, { token: key('a').key });
    expect(done.body).toMatchObject({ state: 'completed', progress: { items: 0 } });
  });

  it('needs jobs:read / jobs:write, and rejects bad ids and filters with a problem', async () => {
    expect((await server.request('GET', '/v1/jobs', { token: key('c').key })).status).toBe(403);
    expect((await server.request('GET', '/v1/jobs')).status).toBe(401);
    const bad = await server.request('GET', '/v1/jobs/not-a-number', { token: key('a').key });
    expect(bad.status).toBe(400);
    expect((await server.request('GET', '/v1/jobs?state=lost', { token: key('a').key })).status).toBe(400);
    // A tenant's key is not the admin token.
    expect((await server.request('GET', '/v1/jobs/overview', { token: key('a').key })).status).toBe(401);
  });

  it('the admin overview shows every tenant’s backlog and age', async () => {
    await tenantry.jobs.enqueue(key('b').tenantId, 'items.count', {});
    const res = await server.request('GET', '/v1/jobs/overview', { token: ADMIN });
    expect(res.status).toBe(200);
    const b = res.body.tenants.find((t: { tenantId: string }) => t.tenantId === key('b').tenantId);
    expect(b).toMatchObject({ slug: 'jobs-b', backlog: 1, scheduled: 1 });
    expect(b.oldestAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(res.body.jobs.length).toBeGreaterThan(0);

    const metrics = await server.request('GET', '/metrics');
    expect(metrics.body).toMatch(/tenantry_jobs_backlog\{plan="free"\} \d+/);
    expect(metrics.body).not.toMatch(/tenantry_jobs_[a-z_]+\{[^}]*tenant/);
  });
});
