import { execFile } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { emit, isPrivateAddress, type Tenantry, verifyWebhook, WebhookDeliverer } from '../src/index.ts';

const ADMIN = 'webhooks-admin-token-0123456789abcdef';

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let strict: TestServer;
let receiver: Server;
let receiverUrl: string;

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}
const received: Received[] = [];
/** Paths that answer 503 this many more times before 204. */
const failures = new Map<string, number>();

const keys: Record<string, { tenantId: string; key: string }> = {};
const a = () => keys.a as { tenantId: string; key: string };
const b = () => keys.b as { tenantId: string; key: string };

async function emitEvent(tenantId: string, type: string, payload: Record<string, unknown>): Promise<void> {
  await tenantry.transaction(tenantId, async (tx) => {
    emit(tx, type, payload);
  });
}

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('webhooks'));
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const left = failures.get(path) ?? 0;
      if (left > 0) failures.set(path, left - 1);
      res.writeHead(left > 0 ? 503 : 204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  server = await startServer(tenantry, {
    adminToken: ADMIN,
    webhooks: { allowPrivateAddresses: true, retryDelayMs: 20, timeoutMs: 2000 },
  });
  strict = await startServer(tenantry, { adminToken: ADMIN, webhooks: { deliver: false } });
  for (const slug of ['a', 'b', 'c']) {
    const tenant = await tenantry.tenants.create({ slug: `hook-${slug}`, name: slug });
    const { key } = await tenantry.apiKeys.create(tenant.id, {
      name: 'app',
      environment: 'test',
      scopes: slug === 'c' ? ['items:read', 'webhooks:read'] : ['webhooks:read', 'webhooks:write'],
    });
    keys[slug] = { tenantId: tenant.id, key };
  }
  await tenantry.events.drain(); // the tenant.created events, before any endpoint exists
});

afterAll(async () => {
  await strict?.close();
  await server?.close();
  await new Promise((resolve) => receiver?.close(resolve));
  await tenantry?.close();
  await db?.drop();
});

async function until(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function register(key: string, path: string, eventTypes: string[], on: TestServer = server) {
  return on.request('POST', '/v1/webhooks', { token: key, body: { url: `${receiverUrl}${path}`, eventTypes } });
}

describe('webhooks', () => {
  it('delivers each event to its own tenant’s endpoints only, signed', async () => {
    const ra = await register(a().key, '/a', ['item.created']);
    expect(ra.status).toBe(201);
    expect(ra.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const rb = await register(b().key, '/b', ['*']);
    expect(rb.status).toBe(201);
    const secrets: Record<string, string> = { '/a': ra.body.secret, '/b': rb.body.secret };

    received.length = 0;
    await emitEvent(a().tenantId, 'item.created', { title: 'for a' });
    await emitEvent(b().tenantId, 'item.created', { title: 'for b' });
    await emitEvent(b().tenantId, 'item.deleted', { title: 'for b too' });
    await emitEvent(a().tenantId, 'item.deleted', { title: 'not subscribed' });
    await tenantry.events.drain();

    expect(received.map((r) => [r.path, JSON.parse(r.body).data.title])).toEqual([
      ['/a', 'for a'],
      ['/b', 'for b'],
      ['/b', 'for b too'],
    ]);
    for (const r of received) {
      const id = r.headers['webhook-id'] as string;
      const timestamp = Number(r.headers['webhook-timestamp']);
      const signature = r.headers['webhook-signature'] as string;
      expect(signature).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
      expect(verifyWebhook(secrets[r.path] as string, id, timestamp, r.body, signature)).toBe(true);
      // Signed with the other tenant's secret, or over another body, it does not verify.
      const other = secrets[r.path === '/a' ? '/b' : '/a'] as string;
      expect(verifyWebhook(other, id, timestamp, r.body, signature)).toBe(false);
      expect(verifyWebhook(secrets[r.path] as string, id, timestamp, `${r.body} `, signature)).toBe(false);
      const body = JSON.parse(r.body);
      expect(body.id).toBe(id);
      expect(body.tenantId).toBe(r.path === '/a' ? a().tenantId : b().tenantId);
    }
    // The secret is never shown again.
    const listed = await server.request('GET', '/v1/webhooks', { token: a().key });
    expect(listed.status).toBe(200);
    expect(listed.body.webhooks).toHaveLength(1);
    expect(JSON.stringify(listed.body)).not.toContain(ra.body.secret);
  });

  it('retries a failing receiver with backoff, then succeeds, recording each attempt', async () => {
    const created = await register(a().key, '/flaky', ['order.paid']);
    expect(created.status).toBe(201);
    failures.set('/flaky', 2);
    received.length = 0;
    await emitEvent(a().tenantId, 'order.paid', { n: 1 });
    await tenantry.events.drain();
    const flaky = received.filter((r) => r.path === '/flaky');
    expect(flaky).toHaveLength(3);
    // One message: the same id on every attempt, so receivers can deduplicate.
    expect(new Set(flaky.map((r) => r.headers['webhook-id'])).size).toBe(1);
    const history = await server.request('GET', `/v1/webhooks/${created.body.webhook.id}/deliveries`, {
      token: a().key,
    });
    expect(history.status).toBe(200);
    expect(
      history.body.deliveries.map((d: { attempt: number; status: number; ok: boolean }) => [d.attempt, d.status, d.ok]),
    ).toEqual([
      [3, 204, true],
      [2, 503, false],
      [1, 503, false],
    ]);
  });

  it('gives up after the bounded attempts without holding back the tenant’s later events', async () => {
    const created = await register(a().key, '/down', ['job.done']);
    failures.set('/down', 100);
    await emitEvent(a().tenantId, 'job.done', { n: 1 });
    await emitEvent(a().tenantId, 'item.created', { title: 'after' });
    received.length = 0;
    await tenantry.events.drain();
    expect(received.filter((r) => r.path === '/down')).toHaveLength(3);
    expect(received.some((r) => r.path === '/a' && JSON.parse(r.body).data.title === 'after')).toBe(true);
    const history = await server.request('GET', `/v1/webhooks/${created.body.webhook.id}/deliveries`, {
      token: a().key,
    });
    expect(history.body.deliveries.every((d: { ok: boolean }) => !d.ok)).toBe(true);
    failures.delete('/down');
  });

  it('dead-letters an event after the attempts, and a replay delivers it once (another tenant: 404)', async () => {
    const created = await register(a().key, '/dead', ['invoice.paid']);
    const endpointId = created.body.webhook.id as string;
    failures.set('/dead', 3);
    received.length = 0;
    await emitEvent(a().tenantId, 'invoice.paid', { amount: 42 });
    await tenantry.events.drain();
    expect(received.filter((r) => r.path === '/dead')).toHaveLength(3);
    const dead = await server.request('GET', `/v1/webhooks/${endpointId}/dead-letters`, { token: a().key });
    expect(dead.status).toBe(200);
    expect(dead.body.deadLetters).toEqual([
      expect.objectContaining({ eventType: 'invoice.paid', attempts: 3, lastError: 'HTTP 503' }),
    ]);
    const eventId = dead.body.deadLetters[0].eventId as string;
    const first = received.find((r) => r.path === '/dead') as Received;

    // Tenant B can neither see nor replay A's dead letters; unknown ids are 404 too.
    expect((await server.request('GET', `/v1/webhooks/${endpointId}/dead-letters`, { token: b().key })).status).toBe(
      404,
    );
    for (const path of [
      `/v1/webhooks/${endpointId}/deliveries/${eventId}/replay`,
      `/v1/webhooks/${endpointId}/deliveries/999999999/replay`,
      `/v1/webhooks/${endpointId}/deliveries/not-a-number/replay`,
    ]) {
      const res = await server.request('POST', path, { token: path.includes(eventId) ? b().key : a().key });
      expect(res.status, path).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    }
    expect(received.filter((r) => r.path === '/dead')).toHaveLength(3);
    // Replay needs webhooks:write (C holds webhooks:read only).
    expect(
      (await server.request('POST', `/v1/webhooks/${endpointId}/deliveries/${eventId}/replay`, { token: keys.c?.key }))
        .status,
    ).toBe(403);

    // The receiver is up again: a replay sends the same event (body and webhook-id), newly signed.
    const replay = await server.request('POST', `/v1/webhooks/${endpointId}/deliveries/${eventId}/replay`, {
      token: a().key,
    });
    expect(replay.status).toBe(202);
    expect(replay.body).toEqual({ endpointId, eventId, status: 'replaying' });
    await until(async () => {
      const r = await server.request('GET', `/v1/webhooks/${endpointId}/dead-letters`, { token: a().key });
      return r.body.deadLetters.length === 0;
    });
    const replayed = received.filter((r) => r.path === '/dead');
    expect(replayed).toHaveLength(4);
    const last = replayed[3] as Received;
    expect(last.body).toBe(first.body);
    expect(last.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect(
      verifyWebhook(
        created.body.secret,
        last.headers['webhook-id'] as string,
        Number(last.headers['webhook-timestamp']),
        last.body,
        last.headers['webhook-signature'] as string,
      ),
    ).toBe(true);
    // Replayed once: a second replay finds no dead letter.
    expect(
      (await server.request('POST', `/v1/webhooks/${endpointId}/deliveries/${eventId}/replay`, { token: a().key }))
        .status,
    ).toBe(404);
  });

  it('a replay that fails again stays a dead letter, with the attempts added up', async () => {
    const created = await register(b().key, '/still-down', ['invoice.paid']);
    const endpointId = created.body.webhook.id as string;
    failures.set('/still-down', 100);
    await emitEvent(b().tenantId, 'invoice.paid', { amount: 1 });
    await tenantry.events.drain();
    const [letter] = await tenantry.webhooks.deadLetters(b().tenantId, endpointId);
    expect(letter?.attempts).toBe(3);
    const deliverer = new WebhookDeliverer(tenantry.webhooks, { allowPrivateAddresses: true, retryDelayMs: 10 });
    expect(await deliverer.replay(b().tenantId, endpointId, letter?.eventId as string)).toBe(false);
    expect((await tenantry.webhooks.deadLetters(b().tenantId, endpointId))[0]?.attempts).toBe(6);
    failures.delete('/still-down');
    expect(await deliverer.replay(b().tenantId, endpointId, letter?.eventId as string)).toBe(true);
    expect(await tenantry.webhooks.deadLetters(b().tenantId, endpointId)).toEqual([]);
    await expect(deliverer.replay(a().tenantId, endpointId, letter?.eventId as string)).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('tenantry webhooks dead-letters | replay: the same, from the command line', async () => {
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
        return { code: 0, ...(await exec(process.execPath, [main, ...args], { env })) };
      } catch (error) {
        return error as { code: number; stdout: string; stderr: string };
      }
    };
    const created = await register(a().key, '/cli-dead', ['invoice.sent']);
    const endpointId = created.body.webhook.id as string;
    failures.set('/cli-dead', 3);
    await emitEvent(a().tenantId, 'invoice.sent', { n: 1 });
    await tenantry.events.drain();
    const listed = await cli('webhooks', 'dead-letters', 'hook-a', endpointId, '--json');
    expect(listed.code).toBe(0);
    const [letter] = JSON.parse(listed.stdout);
    expect(letter).toMatchObject({ eventType: 'invoice.sent', attempts: 3 });
    // Another tenant's endpoint is not found from the command line either.
    expect((await cli('webhooks', 'dead-letters', 'hook-b', endpointId)).code).toBe(1);
    // Without the address override, the loopback receiver is refused: the dead letter stays.
    expect((await cli('webhooks', 'replay', 'hook-a', endpointId, letter.eventId)).code).toBe(1);
    const replayed = await cli('webhooks', 'replay', 'hook-a', endpointId, letter.eventId, '--allow-private-addresses');
    expect(replayed.code).toBe(0);
    expect(replayed.stdout).toContain('delivered');
    expect(await tenantry.webhooks.deadLetters(a().tenantId, endpointId)).toEqual([]);
  });

  it('refuses loopback, link-local and private addresses unless allowed', async () => {
    for (const url of [
      `${receiverUrl}/x`,
      'http://localhost/x',
      'http://169.254.169.254/latest/meta-data',
      'http://10.1.2.3/',
      'http://[::1]/',
      'http://[::ffff:192.168.0.1]/',
      'ftp://example.com/',
      'http://user:pw@example.com/',
    ]) {
      const res = await strict.request('POST', '/v1/webhooks', {
        token: a().key,
        body: { url, eventTypes: ['item.created'] },
      });
      expect(res.status, url).toBe(400);
      expect(res.body.code, url).toBe('WEBHOOK_URL_REFUSED');
    }
    expect(isPrivateAddress('93.184.216.34')).toBe(false);
    expect(isPrivateAddress('2606:2800:220:1::1')).toBe(false);

    // Registered where allowed, refused at delivery by a deliverer that does not allow it.
    const created = await register(b().key, '/private', ['audit.ping']);
    expect(created.status).toBe(201);
    received.length = 0;
    const deliverer = new WebhookDeliverer(tenantry.webhooks, { attempts: 1 });
    await deliverer.deliver({
      id: '999999',
      tenantId: b().tenantId,
      seq: 1,
      type: 'audit.ping',
      payload: {},
      actor: null,
      requestId: null,
      createdAt: new Date(),
      attempt: 1,
    });
    expect(received).toEqual([]);
    const history = await server.request('GET', `/v1/webhooks/${created.body.webhook.id}/deliveries`, {
      token: b().key,
    });
    expect(history.body.deliveries).toMatchObject([
      { ok: false, status: null, error: expect.stringMatching(/private/) },
    ]);
  });

  it('needs webhooks:read / webhooks:write, and a credential', async () => {
    expect((await server.request('GET', '/v1/webhooks')).status).toBe(401);
    expect(
      (await server.request('POST', '/v1/webhooks', { body: { url: receiverUrl, eventTypes: ['*'] } })).status,
    ).toBe(401);
    const forbidden = await register(keys.c?.key as string, '/c', ['*']);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.code).toBe('FORBIDDEN');
    expect((await server.request('GET', '/v1/webhooks', { token: keys.c?.key as string })).status).toBe(200);
  });

  it('another tenant cannot see, read the history of, or delete an endpoint (404)', async () => {
    const created = await register(a().key, '/mine', ['item.created']);
    const id = created.body.webhook.id as string;
    const listed = await server.request('GET', '/v1/webhooks', { token: b().key });
    expect(listed.body.webhooks.map((w: { id: string }) => w.id)).not.toContain(id);
    const history = await server.request('GET', `/v1/webhooks/${id}/deliveries`, { token: b().key });
    expect(history.status).toBe(404);
    const deleted = await server.request('DELETE', `/v1/webhooks/${id}`, { token: b().key });
    expect(deleted.status).toBe(404);
    expect(deleted.body.code).toBe('NOT_FOUND');
    expect((await server.request('DELETE', '/v1/webhooks/not-a-uuid', { token: b().key })).status).toBe(404);
    // Still there for its owner, who can delete it.
    expect((await server.request('DELETE', `/v1/webhooks/${id}`, { token: a().key })).status).toBe(200);
    expect((await server.request('DELETE', `/v1/webhooks/${id}`, { token: a().key })).status).toBe(404);
  });

  it('rejects malformed registrations', async () => {
    const res = await server.request('POST', '/v1/webhooks', {
      token: a().key,
      body: { url: `${receiverUrl}/x`, eventTypes: ['Not A Type'] },
    });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('INVALID_INPUT');
  });
});
