import { request as httpRequest } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry } from '../../../test-support/http.ts';
import { IdempotencyStore } from '../src/effects/idempotency-store.ts';
import { createServer } from '../src/http/server.ts';
import type { Tenantry } from '../src/index.ts';

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let app: FastifyInstance;
let url: string;
const keys: Record<string, string> = {};
const tenantIds: Record<string, string> = {};
/** Opens the slow route's gate. */
let release: () => void = () => {};
let gate = Promise.resolve();

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('idempotency'));
  app = await createServer(tenantry, { logger: false, cache: false });
  // A write that stays in flight until the test lets it finish.
  app.post('/v1/slow', { config: { tenantry: { tenant: true } } }, async (_req, reply) => {
    await gate;
    return reply.code(201).send({ done: true });
  });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
  for (const slug of ['idem-a', 'idem-b']) {
    const tenant = await tenantry.tenants.create({ slug, name: slug });
    tenantIds[slug] = tenant.id;
    keys[slug] = (
      await tenantry.apiKeys.create(tenant.id, {
        name: 'k',
        environment: 'test',
        scopes: ['items:read', 'items:write'],
      })
    ).key;
  }
});

afterAll(async () => {
  await app?.close();
  await tenantry?.close();
  await db?.drop();
});

async function send(slug: string, method: string, path: string, body?: unknown, key?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${keys[slug]}` };
  if (key !== undefined) headers['idempotency-key'] = key;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${url}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: text ? JSON.parse(text) : undefined };
}

async function itemsTitled(slug: string, title: string): Promise<number> {
  const { rows } = await tenantry.adminPool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${tenantry.config.tenantSchema}.items WHERE tenant_id = $1 AND title = $2`,
    [tenantIds[slug], title],
  );
  return rows[0]?.n ?? 0;
}

/** Sends a POST and hangs up as soon as it is written: the client never sees the response. */
function sendAndLoseResponse(slug: string, path: string, body: unknown, key: string): Promise<void> {
  const payload = JSON.stringify(body);
  const target = new URL(path, url);
  return new Promise((resolve) => {
    const req = httpRequest(target, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${keys[slug]}`,
        'idempotency-key': key,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
      },
    });
    req.on('error', () => resolve());
    req.end(payload, () => {
      req.destroy();
      resolve();
    });
  });
}

describe('Idempotency-Key', () => {
  it('a retry after a lost response creates exactly one row and gets the same response', async () => {
    await sendAndLoseResponse('idem-a', '/v1/items', { title: 'lost' }, 'key-lost-1');
    let retry = await send('idem-a', 'POST', '/v1/items', { title: 'lost' }, 'key-lost-1');
    // The first request may still be running when the retry arrives: the client waits and retries.
    for (let i = 0; retry.status === 409 && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 50));
      retry = await send('idem-a', 'POST', '/v1/items', { title: 'lost' }, 'key-lost-1');
    }
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotency-replayed')).toBe('true');
    expect(await itemsTitled('idem-a', 'lost')).toBe(1);
    const again = await send('idem-a', 'POST', '/v1/items', { title: 'lost' }, 'key-lost-1');
    expect(again.text).toBe(retry.text);
    expect(again.headers.get('content-type')).toMatch(/application\/json/);
  });

  it('the first answer is replayed byte for byte, without running the handler again', async () => {
    const first = await send('idem-a', 'POST', '/v1/items', { title: 'once' }, 'key-once');
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotency-replayed')).toBeNull();
    const second = await send('idem-a', 'POST', '/v1/items', { title: 'once' }, 'key-once');
    expect(second).toMatchObject({ status: 201, text: first.text });
    expect(second.headers.get('idempotency-replayed')).toBe('true');
    expect(await itemsTitled('idem-a', 'once')).toBe(1);
    // A replayed DELETE answers its 204 again instead of 404.
    const id = first.body.id as string;
    expect((await send('idem-a', 'DELETE', `/v1/items/${id}`, undefined, 'key-del')).status).toBe(204);
    expect((await send('idem-a', 'DELETE', `/v1/items/${id}`, undefined, 'key-del')).status).toBe(204);
    expect((await send('idem-a', 'DELETE', `/v1/items/${id}`)).status).toBe(404);
  });

  it('the same key with another body (or path) is 422 and changes nothing', async () => {
    expect((await send('idem-a', 'POST', '/v1/items', { title: 'one body' }, 'key-body')).status).toBe(201);
    const other = await send('idem-a', 'POST', '/v1/items', { title: 'another body' }, 'key-body');
    expect(other.status).toBe(422);
    expect(other.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(other.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', status: 422 });
    expect(await itemsTitled('idem-a', 'another body')).toBe(0);
    const a = await send('idem-a', 'POST', '/v1/items', { title: 'p' }, 'key-path');
    const patchA = await send('idem-a', 'PATCH', `/v1/items/${a.body.id}`, { title: 'q' }, 'key-patch');
    expect(patchA.status).toBe(200);
    const b = await send('idem-a', 'POST', '/v1/items', { title: 'p2' }, 'key-path-2');
    const patchB = await send('idem-a', 'PATCH', `/v1/items/${b.body.id}`, { title: 'q' }, 'key-patch');
    expect(patchB.status).toBe(422);
  });

  it('a concurrent duplicate while the first is in flight is 409', async () => {
    gate = new Promise((r) => {
      release = r;
    });
    const first = send('idem-a', 'POST', '/v1/slow', { n: 1 }, 'key-slow');
    // Wait until the first has claimed its key.
    for (let i = 0; i < 100; i++) {
      const { rowCount } = await tenantry.adminPool.query(
        "SELECT 1 FROM tenantry.idempotency_keys WHERE key = 'key-slow' AND state = 'running'",
      );
      if (rowCount) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const duplicate = await send('idem-a', 'POST', '/v1/slow', { n: 1 }, 'key-slow');
    expect(duplicate.status).toBe(409);
    expect(duplicate.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_IN_USE' });
    release();
    expect((await first).status).toBe(201);
    expect((await send('idem-a', 'POST', '/v1/slow', { n: 1 }, 'key-slow')).status).toBe(201);
  });

  it('keys are per tenant: A’s key value used by B is another key', async () => {
    expect((await send('idem-a', 'POST', '/v1/items', { title: 'a shared' }, 'key-shared')).status).toBe(201);
    const b = await send('idem-b', 'POST', '/v1/items', { title: 'b shared' }, 'key-shared');
    expect(b.status).toBe(201);
    expect(b.headers.get('idempotency-replayed')).toBeNull();
    expect(await itemsTitled('idem-b', 'b shared')).toBe(1);
    const bAgain = await send('idem-b', 'POST', '/v1/items', { title: 'b shared' }, 'key-shared');
    expect(bAgain.text).toBe(b.text);
  });

  it('a malformed key is 400; requests without a key are not affected', async () => {
    const bad = await send('idem-a', 'POST', '/v1/items', { title: 'x' }, 'ü'.repeat(3));
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('INVALID_INPUT');
    expect((await send('idem-a', 'POST', '/v1/items', { title: 'no key' })).status).toBe(201);
    expect((await send('idem-a', 'POST', '/v1/items', { title: 'no key' })).status).toBe(201);
    expect(await itemsTitled('idem-a', 'no key')).toBe(2);
  });

  it('expired keys are cleaned up, and an expired key can be used again', async () => {
    const store = new IdempotencyStore(tenantry.adminPool);
    expect((await send('idem-a', 'POST', '/v1/items', { title: 'old' }, 'key-old')).status).toBe(201);
    await tenantry.adminPool.query(
      "UPDATE tenantry.idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'key-old'",
    );
    expect((await send('idem-a', 'POST', '/v1/items', { title: 'new' }, 'key-old')).status).toBe(201);
    await tenantry.adminPool.query(
      "UPDATE tenantry.idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'key-old'",
    );
    expect(await store.purgeExpired()).toBe(1);
    const { rowCount } = await tenantry.adminPool.query(
      "SELECT 1 FROM tenantry.idempotency_keys WHERE key = 'key-old'",
    );
    expect(rowCount).toBe(0);
  });
});
