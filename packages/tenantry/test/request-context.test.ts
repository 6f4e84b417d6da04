import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry } from '../../../test-support/http.ts';
import { apiKeyAuthenticator } from '../src/auth/authenticators.ts';
import { TenantCache, tenantryPlugin } from '../src/http/fastify.ts';
import { toProblem } from '../src/http/problem.ts';
import { getTenant, type Tenantry, TenantryError, tryGetTenant } from '../src/index.ts';

/**
 * The Fastify plugin runs a tenant route's whole handler inside the tenant's context
 * (step 4 of the request path): `getTenant()` and `tenantry.transaction(fn)` work anywhere
 * in it, across awaits and with a parsed body, and never outside it.
 */
let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let app: FastifyInstance;
let url: string;
const keys: Record<string, string> = {};
const ids: Record<string, string> = {};

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('reqctx'));
  for (const slug of ['alpha', 'bravo']) {
    const tenant = await tenantry.tenants.create({ slug, name: slug });
    ids[slug] = tenant.id;
    keys[slug] = (
      await tenantry.apiKeys.create(tenant.id, { name: 't', environment: 'test', scopes: ['items:read'] })
    ).key;
  }
  app = Fastify({ logger: false });
  app.setErrorHandler((error, _req, reply) => {
    const problem = toProblem(error);
    return reply.code(problem.status).send(problem);
  });
  await app.register(tenantryPlugin, {
    tenantry,
    tenants: new TenantCache(tenantry.tenants),
    authenticators: [apiKeyAuthenticator(tenantry.apiKeys)],
  });
  const who = async () => {
    const before = getTenant().id;
    await sleep(5);
    // No tenant named: the transaction is the context's tenant's, verified by PostgreSQL.
    const inDatabase = await tenantry.transaction(async (tx) => {
      const { rows } = await tx.query<{ id: string }>('SELECT tenantry_context.current_tenant_id()::text AS id');
      return rows[0]?.id;
    });
    return { before, after: getTenant().id, inDatabase };
  };
  const config = { tenantry: { tenant: true, permission: 'items:read' as const } };
  app.get('/who', { config }, who);
  app.post('/who', { config }, who);
  app.get('/open', async () => ({ tenant: tryGetTenant()?.id ?? null }));
  url = await app.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await app?.close();
  await tenantry?.close();
  await db?.drop();
});

async function call(method: string, path: string, key?: string) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
    },
    ...(method === 'POST' ? { body: JSON.stringify({ some: 'body' }) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('the request runs in its tenant context', () => {
  it.each(['GET', 'POST'])('%s: getTenant() and tenantry.transaction(fn) see the caller’s tenant', async (method) => {
    for (const slug of ['alpha', 'bravo']) {
      const r = await call(method, '/who', keys[slug]);
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ before: ids[slug], after: ids[slug], inDatabase: ids[slug] });
    }
  });

  it('keeps concurrent requests of two tenants apart', async () => {
    const calls = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 'alpha' : 'bravo'));
    const results = await Promise.all(calls.map((slug) => call('GET', '/who', keys[slug])));
    results.forEach((r, i) => {
      const id = ids[calls[i] as string];
      expect(r.body).toEqual({ before: id, after: id, inDatabase: id });
    });
  });

  it('gives a route without config.tenantry no tenant, and refuses a tenant route without a credential', async () => {
    expect((await call('GET', '/open')).body).toEqual({ tenant: null });
    const refused = await call('GET', '/who');
    expect(refused.status).toBe(401);
    expect(refused.body.code).toBe('UNAUTHORIZED');
  });

  it('has no tenant outside a request: tenantry.transaction(fn) throws NO_TENANT_CONTEXT', async () => {
    await expect(tenantry.transaction(async () => 1)).rejects.toThrow(TenantryError);
    await expect(tenantry.transaction(async () => 1)).rejects.toMatchObject({ code: 'NO_TENANT_CONTEXT' });
  });
});
