import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { TokenService } from '../src/auth/tokens.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { emit, Tenantry } from '../src/index.ts';
import { KeyRing } from '../src/secrets/keys.ts';

const ADMIN = 'events-admin-token-0123456789abcdef';
const PASSWORD = 'correct horse battery staple';

let db: TestDatabase;
let one: Tenantry<unknown>;
let two: Tenantry<unknown>;
/** Two instances of the server, each with its own Tenantry, on one database. */
let s1: TestServer;
let s2: TestServer;
/** A third, with a small bound of unsent bytes and a fast heartbeat. */
let tight: TestServer;

interface Tenant {
  id: string;
  slug: string;
  key: string;
  keyId: string;
  /** A key without events:read. */
  itemsOnly: string;
}
const tenants: Record<string, Tenant> = {};
const A = () => tenants.a as Tenant;
const B = () => tenants.b as Tenant;

interface Client {
  ws: WebSocket;
  /** Every message received, parsed. */
  // biome-ignore lint/suspicious/noExplicitAny: frames are whatever JSON the server sent
  messages: any[];
  /** Settles with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves on `ready`, rejects on a refused upgrade (with the HTTP status) or a close first. */
  ready: Promise<void>;
  // biome-ignore lint/suspicious/noExplicitAny: see above
  events(): any[];
}

function open(server: TestServer, options: { token?: string; query?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const ws = new WebSocket(`${server.url.replace('http', 'ws')}/v1/events${options.query ?? ''}`, { headers });
  const messages: Client['messages'] = [];
  let ready!: () => void;
  let refused!: (error: Error) => void;
  const readyPromise = new Promise<void>((resolve, reject) => {
    ready = resolve;
    refused = reject;
  });
  readyPromise.catch(() => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      refused(new Error(`closed ${code}`));
      resolve({ code, reason: reason.toString() });
    });
  });
  ws.on('unexpected-response', (_req, res) => {
    refused(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }));
    ws.terminate();
  });
  ws.on('error', () => {});
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString());
    messages.push(message);
    if (message.type === 'ready') ready();
  });
  const client: Client = {
    ws,
    messages,
    closed,
    ready: readyPromise,
    events: () => messages.filter((m) => m.type === 'event').map((m) => m.event),
  };
  return client;
}

async function connected(server: TestServer, options: Parameters<typeof open>[1] = {}): Promise<Client> {
  const client = open(server, options);
  await client.ready;
  return client;
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const opened: Client[] = [];
const track = (c: Client) => {
  opened.push(c);
  return c;
};

async function makeTenant(slug: string, tier: 'pool' | 'schema' = 'pool'): Promise<Tenant> {
  const t = await one.tenants.create({ slug: `ev-${slug}`, name: slug, tier });
  const k = await one.apiKeys.create(t.id, {
    name: 'rt',
    environment: 'test',
    scopes: ['items:read', 'items:write', 'events:read'],
  });
  const i = await one.apiKeys.create(t.id, {
    name: 'items',
    environment: 'test',
    scopes: ['items:read', 'items:write'],
  });
  return { id: t.id, slug: t.slug, key: k.key, keyId: k.record.id, itemsOnly: i.key };
}

beforeAll(async () => {
  ({ db, tenantry: one } = await createAppTenantry('events-socket'));
  two = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
  });
  const events = { heartbeatMs: 300, authTimeoutMs: 500 };
  s1 = await startServer(one, { adminToken: ADMIN, events });
  s2 = await startServer(two, { adminToken: ADMIN, events });
  // A long heartbeat: the slow consumer must be dropped for its buffer, not for a missed pong.
  tight = await startServer(one, {
    adminToken: ADMIN,
    events: { ...events, heartbeatMs: 60_000, maxBufferedBytes: 64 * 1024, maxSocketsPerTenant: 2 },
  });
  // Both instances run their dispatcher: socket delivery must not depend on which delivers.
  await one.events.start();
  await two.events.start();
  tenants.a = await makeTenant('a');
  tenants.b = await makeTenant('b', 'schema');
});

afterAll(async () => {
  for (const c of opened) c.ws.terminate();
  await tight?.close();
  await s2?.close();
  await s1?.close();
  await two?.events.close();
  await one?.events.close();
  await two?.close();
  await one?.close();
  await db?.drop();
});

describe('GET /v1/events: two tenants, two server instances', () => {
  it("every event reaches all and only its tenant's sockets, once, in order; a rolled-back write sends nothing", async () => {
    const sockets = {
      a: [
        await connected(s1, { token: A().key }),
        await connected(s1, { token: A().key }),
        await connected(s2, { token: A().key }),
      ],
      b: [
        await connected(s1, { token: B().key }),
        await connected(s2, { token: B().key }),
        await connected(s2, { token: B().key }),
      ],
    };
    for (const c of [...sockets.a, ...sockets.b]) track(c);
    expect(sockets.a[0]?.messages[0]).toMatchObject({ type: 'ready', tenantId: A().id });

    // Writes through both instances' HTTP APIs, interleaved between the tenants.
    const created: Record<'a' | 'b', string[]> = { a: [], b: [] };
    for (let i = 0; i < 4; i++) {
      for (const [name, tenant, server] of [
        ['a', A(), i % 2 ? s1 : s2],
        ['b', B(), i % 2 ? s2 : s1],
      ] as const) {
        const res = await server.request('POST', '/v1/items', { token: tenant.key, body: { title: `${name}-${i}` } });
        expect(res.status).toBe(201);
        created[name].push(res.body.id);
      }
    }
    const patched = await s2.request('PATCH', `/v1/items/${created.a[0]}`, { token: A().key, body: { title: 'a-0!' } });
    expect(patched.status).toBe(200);
    expect((await s1.request('DELETE', `/v1/items/${created.b[1]}`, { token: B().key })).status).toBe(204);
    // A write that rolls back leaves no event.
    await expect(
      one.transaction(A().id, async (tx) => {
        emit(tx, 'item.created', { item: { id: 'rolled-back' } });
        await tx.query('SELECT 1');
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    // A last event per tenant: once it arrived, everything before it did (order per tenant).
    for (const t of [A(), B()]) {
      await one.transaction(t.id, async (tx) => {
        emit(tx, 'test.marker', {});
      });
    }
    await until(() => [...sockets.a, ...sockets.b].every((c) => c.events().some((e) => e.type === 'test.marker')));

    for (const [name, tenant, clients] of [
      ['a', A(), sockets.a],
      ['b', B(), sockets.b],
    ] as const) {
      for (const c of clients) {
        const events = c.events();
        expect(events.every((e) => e.tenantId === tenant.id)).toBe(true);
        const seqs = events.map((e) => e.seq);
        expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
        expect(new Set(seqs).size).toBe(seqs.length);
        const items = events.filter((e) => e.type.startsWith('item.'));
        expect(items.map((e) => e.type)).toEqual([
          'item.created',
          'item.created',
          'item.created',
          'item.created',
          name === 'a' ? 'item.updated' : 'item.deleted',
        ]);
        // The item itself travels with the event; another tenant's never does.
        expect(items.slice(0, 4).map((e) => e.payload.item.id)).toEqual(created[name]);
        expect(items[0]?.payload.item.title).toBe(`${name}-0`);
        const other = name === 'a' ? created.b : created.a;
        expect(JSON.stringify(events)).not.toContain(other[0]);
        expect(JSON.stringify(events)).not.toContain('rolled-back');
      }
      // Same events, same order, on every socket of the tenant, whichever instance holds it.
      const first = JSON.stringify(clients[0]?.events());
      for (const c of clients) expect(JSON.stringify(c.events())).toBe(first);
    }
  });

  it("a database-tier tenant's sockets get its control-plane events, and only its own", async () => {
    const own = await one.tenants.create({ slug: 'ev-own-db', name: 'Own database', tier: 'database' });
    const key = await one.apiKeys.create(own.id, { name: 'rt', environment: 'test', scopes: ['events:read'] });
    const mine = track(await connected(s2, { token: key.key }));
    const other = track(await connected(s1, { token: A().key }));
    const created = await one.apiKeys.create(own.id, { name: 'second', environment: 'test', scopes: [] });
    await one.transaction(A().id, async (tx) => {
      emit(tx, 'test.tier_marker', {});
    });
    await until(() => mine.events().some((e) => e.type === 'api_key.created'));
    await until(() => other.events().some((e) => e.type === 'test.tier_marker'));
    expect(mine.events().map((e) => [e.tenantId, e.type, e.payload.keyId])).toEqual([
      [own.id, 'api_key.created', created.record.id],
    ]);
    expect(other.events().every((e) => e.tenantId === A().id)).toBe(true);
  });

  it('filters by ?types= and answers ping with pong', async () => {
    const c = track(await connected(s2, { token: A().key, query: '?types=item.deleted' }));
    const res = await s1.request('POST', '/v1/items', { token: A().key, body: { title: 'filtered' } });
    await s1.request('DELETE', `/v1/items/${res.body.id}`, { token: A().key });
    await until(() => c.events().length > 0);
    expect(c.events().map((e) => e.type)).toEqual(['item.deleted']);
    c.ws.send('{"type":"ping"}');
    await until(() => c.messages.some((m) => m.type === 'pong'));
  });

  it('authenticates with a first message {"type":"auth"} too, within the deadline', async () => {
    const c = track(open(s2));
    c.ws.on('open', () => c.ws.send(JSON.stringify({ type: 'auth', token: B().key })));
    await c.ready;
    await one.transaction(B().id, async (tx) => {
      emit(tx, 'test.first_message', {});
    });
    await until(() => c.events().some((e) => e.type === 'test.first_message'));
    expect(c.events().every((e) => e.tenantId === B().id)).toBe(true);

    const silent = track(open(s1));
    expect((await silent.closed).code).toBe(4408);
    expect(silent.messages).toEqual([expect.objectContaining({ type: 'error', code: 'SOCKET_AUTH_TIMEOUT' })]);

    const garbled = track(open(s1));
    garbled.ws.on('open', () => garbled.ws.send('not json'));
    expect((await garbled.closed).code).toBe(4400);
  });
});

describe('GET /v1/events: credentials', () => {
  it('a forged credential cannot connect: 401 on the upgrade, 4401 on the first message', async () => {
    const forged = `${A().key.slice(0, -4)}AAAA`;
    await expect(open(s1, { token: forged }).ready).rejects.toMatchObject({ status: 401 });
    await expect(open(s1, { token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl' }).ready).rejects.toMatchObject({
      status: 401,
    });
    const c = track(open(s2));
    c.ws.on('open', () => c.ws.send(JSON.stringify({ type: 'auth', token: forged })));
    expect((await c.closed).code).toBe(4401);
    expect(c.events()).toEqual([]);
  });

  it('a key without events:read is refused (403 / 4403), and a claim of another tenant too', async () => {
    await expect(open(s1, { token: A().itemsOnly }).ready).rejects.toMatchObject({ status: 403 });
    const c = track(open(s1));
    c.ws.on('open', () => c.ws.send(JSON.stringify({ type: 'auth', token: A().itemsOnly })));
    expect((await c.closed).code).toBe(4403);
    await expect(open(s1, { token: A().key, headers: { 'x-tenant-id': B().slug } }).ready).rejects.toMatchObject({
      status: 403,
    });
  });

  it('a plain GET is 426 with a credential, 401 without', async () => {
    expect((await s1.request('GET', '/v1/events', { token: A().key })).body).toMatchObject({
      status: 426,
      code: 'UPGRADE_REQUIRED',
    });
    expect((await s1.request('GET', '/v1/events')).status).toBe(401);
  });

  it('revoking a key closes its sockets on every instance at once, and only its sockets', async () => {
    const k = await one.apiKeys.create(A().id, { name: 'doomed', environment: 'test', scopes: ['events:read'] });
    const doomed = [track(await connected(s1, { token: k.key })), track(await connected(s2, { token: k.key }))];
    const bystander = track(await connected(s2, { token: A().key }));
    const other = track(await connected(s1, { token: B().key }));
    await one.apiKeys.revoke(A().id, k.record.id);
    const revoked = performance.now();
    const closes = await Promise.all(doomed.map((c) => c.closed));
    expect(closes.map((c) => c.code)).toEqual([4401, 4401]);
    // The bound: closed within a second of the revocation's commit, on both instances.
    expect(performance.now() - revoked).toBeLessThan(1000);
    // The revoked key cannot come back; the tenant's other key and the other tenant stay.
    await expect(open(s2, { token: k.key }).ready).rejects.toMatchObject({ status: 401 });
    await one.transaction(A().id, async (tx) => {
      emit(tx, 'test.after_revoke', {});
    });
    await until(() => bystander.events().some((e) => e.type === 'test.after_revoke'));
    expect(bystander.ws.readyState).toBe(WebSocket.OPEN);
    expect(other.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('an access token works while valid and is cut off when it expires; an expired one cannot connect', async () => {
    await one.users.create(A().id, { email: 'owner@ev.test', password: PASSWORD, role: 'owner' });
    await one.users.create(A().id, { email: 'member@ev.test', password: PASSWORD, role: 'member' });
    const shortLived = new TokenService(one.adminPool, new KeyRing(db.secret), { accessTtlSeconds: 2 });
    const { accessToken } = await shortLived.login({ tenant: A().id, email: 'owner@ev.test', password: PASSWORD });
    const c = track(await connected(s2, { token: accessToken }));
    expect((await c.closed).code).toBe(4401);
    await expect(open(s1, { token: accessToken }).ready).rejects.toMatchObject({ status: 401 });
    // A member's role does not hold events:read.
    const member = await shortLived.login({ tenant: A().id, email: 'member@ev.test', password: PASSWORD });
    await expect(open(s1, { token: member.accessToken }).ready).rejects.toMatchObject({ status: 403 });
  });
});

describe('GET /v1/events: tenant lifecycle and bounds', () => {
  it("suspending a tenant closes its sockets on every instance (4410) and refuses new ones; other tenants' stay", async () => {
    const c = await makeTenant('suspended');
    const sockets = [track(await connected(s1, { token: c.key })), track(await connected(s2, { token: c.key }))];
    const other = track(await connected(s1, { token: A().key }));
    await one.tenants.suspend(c.id);
    const suspended = performance.now();
    expect((await Promise.all(sockets.map((s) => s.closed))).map((s) => s.code)).toEqual([4410, 4410]);
    expect(performance.now() - suspended).toBeLessThan(1000);
    await expect(open(s2, { token: c.key }).ready).rejects.toMatchObject({ status: 403 });
    expect(other.ws.readyState).toBe(WebSocket.OPEN);

    const d = await makeTenant('deleted');
    const gone = track(await connected(s2, { token: d.key }));
    await one.tenants.delete(d.id);
    expect((await gone.closed).code).toBe(4410);
  });

  it('drops a slow consumer instead of buffering without bound', async () => {
    const c = await makeTenant('slow');
    const slow = track(await connected(tight, { token: c.key }));
    const healthy = track(await connected(tight, { token: c.key }));
    // The slow client stops reading: what the server sends piles up in its buffers.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const before = tight.app.eventSockets.stats();
    // More than the kernel's socket buffers hold on loopback (a few MiB), so bytes pile up in
    // the process; one event at a time, each read by the healthy client before the next.
    const blob = 'x'.repeat(32 * 1024);
    for (let i = 0; i < 400 && tight.app.eventSockets.stats().slowConsumers === before.slowConsumers; i++) {
      await one.transaction(c.id, async (tx) => {
        emit(tx, 'test.blob', { i, blob });
      });
      await until(() => healthy.events().length === i + 1);
    }
    expect(tight.app.eventSockets.stats().slowConsumers).toBe(before.slowConsumers + 1);
    const stats = tight.app.eventSockets.stats();
    // Megabytes went out, and no socket ever held more than the bound (64 KiB) plus the one
    // frame that crossed it unsent, nor more than that waiting.
    expect(stats.maxBufferedAmount).toBeLessThanOrEqual(64 * 1024 + 33 * 1024);
    expect(stats.maxBacklog).toBeLessThanOrEqual(64 * 1024 + 33 * 1024);
    expect(stats.sent - before.sent).toBeGreaterThan(64); // 2 MiB and more
    expect(healthy.ws.readyState).toBe(WebSocket.OPEN);
    // The server let go of it; once the client reads again it sees the close (4413, or a reset).
    expect(tight.app.eventSockets.stats().sockets).toBe(1);
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect([4413, 1006]).toContain((await slow.closed).code);
  });

  it("refuses a socket past the per-tenant bound (4429), not the other tenants'", async () => {
    const c = await makeTenant('crowd');
    track(await connected(tight, { token: c.key }));
    track(await connected(tight, { token: c.key }));
    const third = track(open(tight, { token: c.key }));
    expect((await third.closed).code).toBe(4429);
    expect(third.messages).toEqual([expect.objectContaining({ type: 'error', code: 'SOCKET_LIMIT' })]);
    track(await connected(tight, { token: A().key }));
  });

  it('terminates a connection that stops answering pings', async () => {
    const c = await makeTenant('dead');
    const dead = track(await connected(s1, { token: c.key }));
    const before = s1.app.eventSockets.stats().dead;
    (dead.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await until(() => s1.app.eventSockets.stats().dead > before);
    expect(s1.app.eventSockets.tenantIds()).not.toContain(c.id);
  });
});
