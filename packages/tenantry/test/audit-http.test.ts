import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import type { Tenantry } from '../src/index.ts';

const ADMIN = 'audit-admin-token';
let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
const keys: Record<string, { key: string; id: string; tenantId: string }> = {};

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('audit_http'));
  server = await startServer(tenantry, { adminToken: ADMIN });
  for (const slug of ['aud-a', 'aud-b']) {
    const tenant = await tenantry.tenants.create({ slug, name: slug });
    const { key, record } = await tenantry.apiKeys.create(tenant.id, {
      name: 'app',
      environment: 'test',
      scopes: ['items:read', 'items:write', 'audit:read'],
    });
    keys[slug] = { key, id: record.id, tenantId: tenant.id };
  }
});

afterAll(async () => {
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

const a = () => keys['aud-a'] as { key: string; id: string; tenantId: string };
const b = () => keys['aud-b'] as { key: string; id: string; tenantId: string };

describe('GET /v1/audit', () => {
  it('item writes are audited with actor, target and request id, in the transaction of the change', async () => {
    const created = await server.request('POST', '/v1/items', {
      token: a().key,
      body: { title: 'first' },
      headers: { 'x-request-id': 'req-audit-1' },
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await server.request('PATCH', `/v1/items/${id}`, { token: a().key, body: { title: 'x' } })).status).toBe(
      200,
    );
    expect((await server.request('DELETE', `/v1/items/${id}`, { token: a().key })).status).toBe(204);

    const page = await server.request('GET', '/v1/audit', { token: a().key });
    expect(page.status).toBe(200);
    const items = page.body.entries.filter((e: { action: string }) => e.action.startsWith('item.'));
    expect(items).toMatchObject([
      { action: 'item.deleted', target: `item:${id}`, actor: `api-key:${a().id}` },
      { action: 'item.updated', target: `item:${id}`, metadata: { fields: ['title'] } },
      { action: 'item.created', target: `item:${id}`, requestId: 'req-audit-1', metadata: { title: 'first' } },
    ]);
    expect(page.body.entries.map((e: { action: string }) => e.action)).toContain('tenant.created');
  });

  it("tenant B's key sees none of A's entries", async () => {
    await server.request('POST', '/v1/items', { token: b().key, body: { title: 'b item' } });
    const page = await server.request('GET', '/v1/audit?limit=200', { token: b().key });
    expect(page.status).toBe(200);
    const mine = await tenantry.audit.list(b().tenantId, { limit: 200 });
    expect(page.body.entries.map((e: { id: string }) => e.id)).toEqual(mine.entries.map((e) => e.id));
    const ofA = await tenantry.audit.list(a().tenantId, { limit: 200 });
    const seen = new Set(page.body.entries.map((e: { id: string }) => e.id));
    expect(ofA.entries.filter((e) => seen.has(e.id))).toEqual([]);
    expect(JSON.stringify(page.body)).not.toContain(a().tenantId);
  });

  it('B cannot write or read an entry as A, whatever SQL it runs', async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const id = await tenantry.transaction(b().tenantId, async (tx) => {
        const { rows } = await tx.query<{ id: string }>(
          "SELECT tenantry_context.audit_append('item.created', 'item:forged', '{}', 'user:x', NULL)::text AS id",
        );
        for (const sql of [
          `INSERT INTO tenantry.audit_log (actor, tenant_id, action) VALUES ('x', '${a().tenantId}', 'item.created')`,
          `SELECT * FROM tenantry.audit_entries('${a().tenantId}', NULL, NULL, NULL, NULL, NULL, 10)`,
        ]) {
          await tx.query('SAVEPOINT s');
          await expect(tx.query(sql)).rejects.toMatchObject({ code: '42501' });
          await tx.query('ROLLBACK TO SAVEPOINT s');
        }
        return rows[0]?.id;
      });
      const { rows } = await admin.query('SELECT tenant_id FROM tenantry.audit_log WHERE id = $1', [id]);
      expect(rows).toEqual([{ tenant_id: b().tenantId }]);
      // Outside a verified context there is no tenant to append for.
      await expect(
        tenantry.runtimePool.query("SELECT tenantry_context.audit_append('item.created', NULL, '{}', NULL, NULL)"),
      ).rejects.toMatchObject({ code: 'TN001' });
    } finally {
      await admin.end();
    }
  });

  it('filters by action, actor and time, and pages with a cursor', async () => {
    for (const title of ['p1', 'p2', 'p3']) {
      await server.request('POST', '/v1/items', { token: a().key, body: { title } });
    }
    const first = await server.request('GET', '/v1/audit?action=item.created&limit=2', { token: a().key });
    expect(first.body.entries).toHaveLength(2);
    expect(first.body.entries.map((e: { metadata: { title: string } }) => e.metadata.title)).toEqual(['p3', 'p2']);
    const second = await server.request(
      'GET',
      `/v1/audit?action=item.created&limit=2&cursor=${first.body.nextCursor}`,
      { token: a().key },
    );
    expect(second.body.entries.map((e: { metadata: { title: string } }) => e.metadata.title)).toEqual(['p1', 'first']);
    expect(second.body.nextCursor).toBeUndefined();

    const byActor = await server.request('GET', `/v1/audit?actor=api-key:${a().id}`, { token: a().key });
    expect(byActor.body.entries.length).toBeGreaterThanOrEqual(6);
    expect(new Set(byActor.body.entries.map((e: { actor: string }) => e.actor))).toEqual(
      new Set([`api-key:${a().id}`]),
    );

    const future = new Date(Date.now() + 60_000).toISOString();
    expect((await server.request('GET', `/v1/audit?since=${future}`, { token: a().key })).body.entries).toEqual([]);
    const until = await server.request('GET', `/v1/audit?until=${future}&action=tenant.created`, { token: a().key });
    expect(until.body.entries).toHaveLength(1);

    const bad = await server.request('GET', '/v1/audit?cursor=nonsense', { token: a().key });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('INVALID_INPUT');
  });

  it('needs audit:read', async () => {
    const { key } = await tenantry.apiKeys.create(a().tenantId, {
      name: 'no-audit',
      environment: 'test',
      scopes: ['items:read'],
    });
    const res = await server.request('GET', '/v1/audit', { token: key });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('FORBIDDEN');
  });
});

describe('GET /v1/tenants/{id}/audit', () => {
  it('reads any tenant’s log with the admin token only', async () => {
    const res = await server.request('GET', '/v1/tenants/aud-a/audit?action=tenant.created', { token: ADMIN });
    expect(res.status).toBe(200);
    expect(res.body.entries).toMatchObject([{ action: 'tenant.created', seq: 1 }]);
    expect((await server.request('GET', '/v1/tenants/aud-a/audit', { token: a().key })).status).toBe(401);
    expect((await server.request('GET', '/v1/tenants/missing/audit', { token: ADMIN })).status).toBe(404);
  });

  it('is in the OpenAPI document, as is GET /v1/audit', async () => {
    const doc = await server.request('GET', '/openapi.json');
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/v1/audit', '/v1/tenants/{tenant}/audit']));
  });
});

describe('tenantry audit verify', () => {
  const exec = promisify(execFile);
  const main = new URL('../src/cli/main.ts', import.meta.url).pathname;
  const cli = async (...args: string[]) => {
    const env = {
      ...process.env,
      DATABASE_URL: db.url,
      TENANTRY_SECRET: db.secret,
      TENANTRY_OWNER_ROLE: db.roles.owner,
      TENANTRY_RUNTIME_ROLE: db.roles.runtime,
    };
    try {
      const { stdout } = await exec(process.execPath, [main, ...args], { env });
      return { code: 0, stdout };
    } catch (error) {
      const e = error as { code: number; stdout: string };
      return { code: e.code, stdout: e.stdout };
    }
  };

  it('exits 0 on intact chains, 1 naming the first bad entry once one is edited', async () => {
    const ok = await cli('audit', 'verify');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/0 broken/);
    const { rows } = await tenantry.adminPool.query<{ id: string; seq: number }>(
      "SELECT id::text, seq::int FROM tenantry.audit_log WHERE tenant_id = $1 AND action = 'item.updated'",
      [a().tenantId],
    );
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query('BEGIN');
      await admin.query('SET LOCAL session_replication_role = replica');
      await admin.query("UPDATE tenantry.audit_log SET actor = 'someone else' WHERE id = $1", [rows[0]?.id]);
      await admin.query('COMMIT');
    } finally {
      await admin.end();
    }
    const bad = await cli('audit', 'verify', '--tenant', 'aud-a');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`BROKEN aud-a: entry #${rows[0]?.seq} (id ${rows[0]?.id}) changed`);
    const list = await cli('audit', 'list', 'aud-b', '--action', 'item.created', '--json');
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).entries.length).toBeGreaterThan(0);
  });
});
