import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_TYPES, clientTypesSource } from '../../../scripts/client-source.ts';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { createTenantryClient } from '../src/client/index.ts';
import type { Tenantry } from '../src/index.ts';

// `npm run generate:client` runs this file with UPDATE_CLIENT=1: it rewrites the committed
// types from the server's document. Without it (CI), a difference is a failure: the client
// never drifts from the routes.

const ADMIN = 'client-admin-token-0123456789';
let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('client'));
  server = await startServer(tenantry, { adminToken: ADMIN });
});

afterAll(async () => {
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

describe('tenantry/client', () => {
  it('its committed types are those generated from GET /openapi.json now', async () => {
    const document = (await server.request('GET', '/openapi.json')).body as object;
    const fresh = await clientTypesSource(document);
    if (process.env.UPDATE_CLIENT === '1') await writeFile(CLIENT_TYPES, fresh);
    const committed = await readFile(CLIENT_TYPES, 'utf8');
    expect(committed, 'the client types drifted from the routes: run `npm run generate:client`').toBe(fresh);
  });

  it('drives the control and data plane, typed; problems come back as `error`', async () => {
    const admin = createTenantryClient({ baseUrl: server.url, token: ADMIN });
    const keys: string[] = [];
    for (const slug of ['client-a', 'client-b']) {
      const created = await admin.POST('/v1/tenants', { body: { slug, name: slug } });
      expect(created.response.status).toBe(201);
      const key = await admin.POST('/v1/tenants/{tenant}/api-keys', {
        params: { path: { tenant: slug } },
        body: { name: 'client', environment: 'test', scopes: ['items:read', 'items:write'] },
      });
      expect(key.response.status).toBe(201);
      keys.push(key.data?.key as string);
    }
    const [a, b] = keys.map((token) => createTenantryClient({ baseUrl: server.url, token }));
    const mine = await a?.POST('/v1/items', { body: { title: 'client alpha' } });
    const theirs = await b?.POST('/v1/items', { body: { title: 'client bravo secret' } });
    expect(mine?.data?.title).toBe('client alpha');
    const list = await a?.GET('/v1/items', {});
    expect(list?.data?.items.map((i) => i.title)).toEqual(['client alpha']);
    const stolen = await a?.GET('/v1/items/{id}', { params: { path: { id: theirs?.data?.id as string } } });
    expect(stolen?.response.status).toBe(404);
    expect(stolen?.data).toBeUndefined();
    expect(stolen?.error).toMatchObject({ code: 'NOT_FOUND', status: 404 });
    expect(JSON.stringify(stolen?.error)).not.toContain('bravo');
    const anonymous = await createTenantryClient({ baseUrl: server.url }).GET('/v1/items', {});
    expect(anonymous.error).toMatchObject({ code: 'UNAUTHORIZED' });
  });
});
