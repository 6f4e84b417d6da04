import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { superuserQuery, type TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { exportOf, filesOf, tenantTables } from '../../../test-support/tenant-archive.ts';
import { ExportJobs, type ExportManifest, type TenantRecord, type Tenantry } from '../src/index.ts';

const ADMIN = 'test-admin-token-exports-0123456789';
let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let a: TenantRecord;
let b: TenantRecord;

/** Rows in bulk, through a tenant transaction (RLS and the storage trigger as usual). */
async function seed(t: TenantRecord, n: number): Promise<void> {
  await tenantry.transaction(t, (tx) =>
    tx.query(
      `INSERT INTO items (title, description) SELECT 'item ' || i, repeat('x', i % 50) FROM generate_series(1, $1) i`,
      [n],
    ),
  );
}

async function download(path: string, token?: string): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${server.url}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

async function untilFinished(tenant: string, jobId: string) {
  const seen: { status: string; progress: { rowsDone: number; tablesDone: number } }[] = [];
  for (let i = 0; i < 600; i++) {
    const r = await server.request('GET', `/v1/tenants/${tenant}/exports/${jobId}`, { token: ADMIN });
    expect(r.status).toBe(200);
    seen.push(r.body);
    if (r.body.status !== 'running') return { job: r.body, seen };
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the export job did not finish');
}

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('exports'));
  server = await startServer(tenantry, { adminToken: ADMIN, exports: { heartbeatMs: 20 } });
  a = await tenantry.tenants.create({ slug: 'exp-a', name: 'A', plan: 'pro' });
  b = await tenantry.tenants.create({ slug: 'exp-b', name: 'B' });
  await seed(a, 20_000);
  await seed(b, 10);
});

afterAll(async () => {
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

describe('export jobs over HTTP', () => {
  it('start → progress → done → download: the archive imports with identical checksums', async () => {
    const started = await server.request('POST', `/v1/tenants/${a.slug}/exports`, { token: ADMIN });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ tenantId: a.id, status: 'running', bytes: null, sha256: null });
    expect(started.headers.get('location')).toBe(`/v1/tenants/${a.id}/exports/${started.body.id}`);

    // One export per tenant at a time; B's path never shows A's job.
    const second = await server.request('POST', `/v1/tenants/${a.id}/exports`, { token: ADMIN });
    expect(second.status).toBe(409);
    expect(second.body).toMatchObject({ code: 'EXPORT_IN_PROGRESS' });
    expect(second.headers.get('content-type')).toContain('application/problem+json');
    const early = await server.request('GET', `/v1/tenants/${a.id}/exports/${started.body.id}/download`, {
      token: ADMIN,
    });
    expect([409, 200]).toContain(early.status); // 409 EXPORT_NOT_READY unless it already finished
    for (const path of [
      `/v1/tenants/${b.slug}/exports/${started.body.id}`,
      `/v1/tenants/${b.id}/exports/${started.body.id}/download`,
    ]) {
      const r = await server.request('GET', path, { token: ADMIN });
      expect(r.status).toBe(404);
      expect(JSON.stringify(r.body)).not.toContain(a.id);
    }

    const { job, seen } = await untilFinished(a.slug, started.body.id);
    expect(job).toMatchObject({ status: 'done', error: null, bytes: expect.any(Number), sha256: expect.any(String) });
    expect(job.progress.rowsDone).toBe(job.progress.rowsTotal);
    expect(job.progress.tablesDone).toBe(job.progress.tablesTotal);
    expect(job.progress.rowsTotal).toBeGreaterThanOrEqual(20_000);
    // Progress only moves forward, and was seen part-way at least once.
    const rows = seen.map((s) => s.progress.rowsDone);
    expect(rows).toEqual([...rows].sort((x, y) => x - y));
    expect(seen.some((s) => s.status === 'running' && s.progress.rowsDone > 0)).toBe(true);
    expect(new Date(job.expiresAt).getTime() - new Date(job.finishedAt).getTime()).toBe(24 * 3600_000);

    const got = await download(`/v1/tenants/${a.slug}/exports/${job.id}/download`, ADMIN);
    expect(got.status).toBe(200);
    expect(got.headers.get('content-type')).toBe('application/x-tar');
    expect(got.body.length).toBe(job.bytes);
    expect(createHash('sha256').update(got.body).digest('hex')).toBe(job.sha256);
    expect(got.headers.get('repr-digest')).toBe(`sha-256=:${createHash('sha256').update(got.body).digest('base64')}:`);

    // Same format as the CLI's: it imports, and the copy has the same rows and checksums.
    const manifest = JSON.parse((await filesOf(got.body)).get('manifest.json') as string) as ExportManifest;
    expect(manifest.tenant).toMatchObject({ id: a.id, slug: a.slug });
    const report = await tenantry.importTenant(Readable.from([got.body]), { slug: 'exp-a-copy', tier: 'schema' });
    const copy = await exportOf(tenantry, report.tenant.id);
    expect(tenantTables(copy.manifest)).toEqual(tenantTables(manifest));
    expect(tenantTables(manifest)).toMatchObject({ items: [20_000, expect.any(String)] });
    // Earlier exports are not part of a later archive.
    expect(manifest.files.map((x) => x.table)).not.toContain('export_chunks');
  });

  it('needs the admin token', async () => {
    expect((await server.request('POST', `/v1/tenants/${b.id}/exports`)).status).toBe(401);
    const key = await tenantry.apiKeys.create(b.id, { name: 'k', environment: 'test', scopes: ['items:read'] });
    expect((await server.request('POST', `/v1/tenants/${b.id}/exports`, { token: key.key })).status).toBe(401);
    expect((await server.request('GET', `/v1/tenants/${b.id}/exports/${crypto.randomUUID()}`)).status).toBe(401);
    expect((await download(`/v1/tenants/${b.id}/exports/${crypto.randomUUID()}/download`)).status).toBe(401);
    const jobsOfB = await superuserQuery<{ n: number }>(
      db.name,
      'SELECT count(*)::int AS n FROM tenantry.export_jobs WHERE tenant_id = $1',
      [b.id],
    );
    expect(jobsOfB).toEqual([{ n: 0 }]);
  });

  it('bad and unknown job ids are 400 and 404; the routes are in the OpenAPI document', async () => {
    expect((await server.request('GET', `/v1/tenants/${b.id}/exports/nope`, { token: ADMIN })).status).toBe(400);
    const unknown = await server.request('GET', `/v1/tenants/${b.id}/exports/${crypto.randomUUID()}`, {
      token: ADMIN,
    });
    expect(unknown).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    expect((await server.request('POST', '/v1/tenants/no-such-tenant/exports', { token: ADMIN })).status).toBe(404);
    const doc = await server.request('GET', '/openapi.json');
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining([
        '/v1/tenants/{tenant}/exports',
        '/v1/tenants/{tenant}/exports/{jobId}',
        '/v1/tenants/{tenant}/exports/{jobId}/download',
      ]),
    );
    expect(doc.body.components.schemas.ExportJob).toBeDefined();
  });

  it('a finished job is removed after its retention, and an erased tenant takes its archives with it', async () => {
    const jobs = new ExportJobs(tenantry, { retentionMs: 1, heartbeatMs: 20 });
    const job = await jobs.start(b, { actor: 'test' });
    for (let i = 0; i < 500 && (await jobs.get(b.id, job.id).catch(() => undefined))?.status === 'running'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await expect(jobs.get(b.id, job.id)).rejects.toMatchObject({ code: 'NOT_FOUND' }); // past retention
    expect((await jobs.sweep()).expired).toBeGreaterThanOrEqual(1);
    const chunks = (id: string) =>
      superuserQuery<{ n: number }>(
        db.name,
        'SELECT count(*)::int AS n FROM tenantry.export_chunks WHERE tenant_id = $1',
        [id],
      );
    expect((await chunks(b.id))[0]?.n).toBe(0);

    const kept = await server.request('POST', `/v1/tenants/${b.id}/exports`, { token: ADMIN });
    await untilFinished(b.id, kept.body.id);
    expect((await chunks(b.id))[0]?.n).toBeGreaterThan(0);
    const report = await tenantry.eraseTenant(b.id);
    expect(report.verification.rows).toMatchObject({ 'tenantry.export_chunks': 0, 'tenantry.export_jobs': 0 });
    expect((await chunks(b.id))[0]?.n).toBe(0);
  });
});
