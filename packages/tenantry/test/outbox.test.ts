import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppDB, appMigrations, createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { emit, getTenant, type TenantEvent, Tenantry } from '../src/index.ts';

let fx: Fixture;
const instances: Tenantry<AppDB>[] = [];

/** Another instance of the application on the test database (what a second server is). */
async function instance(events: Parameters<typeof Tenantry.connect>[0]['events'] = {}): Promise<Tenantry<AppDB>> {
  const t = await Tenantry.connect<AppDB>({
    databaseUrl: fx.database.url,
    secret: fx.database.secret,
    roles: fx.database.roles,
    migrations: appMigrations,
    events: { pollIntervalMs: 50, retryDelayMs: 20, maxRetryDelayMs: 100, ...events },
  });
  instances.push(t);
  return t;
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function outboxRows(tenantId: string, type?: string) {
  const { rows } = await fx.tenantry.adminPool.query<{ seq: number; type: string; state: string; attempts: number }>(
    `SELECT seq::int, type, state, attempts FROM tenantry.outbox
      WHERE tenant_id = $1 AND ($2::text IS NULL OR type = $2) ORDER BY seq`,
    [tenantId, type ?? null],
  );
  return rows;
}

/** Writes `n` events of `type` for `tenant`, one transaction each. */
async function emitMany(t: Tenantry<AppDB>, tenant: string, type: string, n: number, extra = {}): Promise<void> {
  for (let i = 0; i < n; i++) {
    await t.transaction(tenant, async (tx) => {
      emit(tx, type, { i, ...extra });
    });
  }
}

beforeAll(async () => {
  fx = await createFixture('outbox');
});

afterAll(async () => {
  for (const t of instances) await t.close().catch(() => {});
  await fx?.close();
});

describe('the outbox', () => {
  it('knows where a transaction runs: in a tenant database emit() is OUTBOX_UNAVAILABLE, before COMMIT', async () => {
    const shared = await fx.tenantry.tenants.create({ slug: 'ob-where-pool', name: 'Pool' });
    const own = await fx.tenantry.tenants.create({ slug: 'ob-where-db', name: 'Own', tier: 'database' });
    expect(await fx.tenantry.transaction(shared, async (tx) => tx.inMainDatabase)).toBe(true);
    let seen: boolean | undefined;
    await expect(
      fx.tenantry.transaction(own, async (tx) => {
        seen = tx.inMainDatabase;
        await tx.query('SELECT 1');
        emit(tx, 'item.created', { title: 'nowhere' });
      }),
    ).rejects.toMatchObject({ code: 'OUTBOX_UNAVAILABLE' });
    expect(seen).toBe(false);
    expect(await outboxRows(own.id, 'item.created')).toEqual([]);
  });

  it('holds an event if and only if its transaction commits', async () => {
    const t = await fx.tenantry.tenants.create({ slug: 'commit', name: 'Commit' });
    await fx.tenantry.transaction(t, async (tx) => {
      await tx.query("INSERT INTO items (title) VALUES ('kept')");
      emit(tx, 'item.created', { title: 'kept' });
    });
    await expect(
      fx.tenantry.transaction(t, async (tx) => {
        await tx.query("INSERT INTO items (title) VALUES ('lost')");
        emit(tx, 'item.created', { title: 'lost' });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    // A failing statement after emit() rolls back too: the event goes with COMMIT only.
    await expect(
      fx.tenantry.transaction(t, async (tx) => {
        emit(tx, 'item.created', { title: 'broken' });
        await tx.query('SELECT 1/0');
      }),
    ).rejects.toThrow();
    expect(await outboxRows(t.id)).toMatchObject([
      { seq: 1, type: 'tenant.created', state: 'pending' },
      { seq: 2, type: 'item.created', state: 'pending' },
    ]);
    const { rows } = await fx.tenantry.adminPool.query(
      'SELECT payload, actor FROM tenantry.outbox WHERE tenant_id = $1 AND seq = 2',
      [t.id],
    );
    expect(rows[0].payload).toEqual({ title: 'kept' });
  });

  it('records lifecycle and API key events in the transaction of the change', async () => {
    const t = await fx.tenantry.tenants.create({ slug: 'lifecycle', name: 'L' }, { actor: 'admin:ops' });
    await fx.tenantry.tenants.suspend(t.id);
    await fx.tenantry.tenants.resume(t.id);
    const { record } = await fx.tenantry.apiKeys.create(t.id, { name: 'bot', environment: 'test' });
    await fx.tenantry.apiKeys.revoke(t.id, record.id);
    await expect(fx.tenantry.tenants.resume(t.id)).rejects.toMatchObject({ code: 'INVALID_TENANT_STATE' });
    await fx.tenantry.tenants.delete(t.id);
    expect((await outboxRows(t.id)).map((r) => r.type)).toEqual([
      'tenant.created',
      'tenant.suspended',
      'tenant.resumed',
      'api_key.created',
      'api_key.revoked',
      'tenant.deleted',
    ]);
  });

  it('refuses a malformed event type or payload before anything runs', async () => {
    await expect(fx.tenantry.transaction('commit', async (tx) => emit(tx, 'Bad Type', {}))).rejects.toMatchObject({
      code: 'USAGE_ERROR',
    });
    await expect(
      fx.tenantry.transaction('commit', async (tx) => emit(tx, 'item.created', [] as never)),
    ).rejects.toMatchObject({ code: 'USAGE_ERROR' });
  });
});

describe('delivery', () => {
  it("runs a tenant.created handler in the new tenant's context, where it can write its rows", async () => {
    const app = await instance();
    const seen: { event: TenantEvent; context: string }[] = [];
    app.events.on('tenant.created', async (event) => {
      seen.push({ event, context: getTenant().id });
      await app.transaction((tx) => tx.query("INSERT INTO items (title) VALUES ('Welcome')"));
    });
    await app.events.start();
    const t = await app.tenants.create({ slug: 'seeded', name: 'Seeded' });
    await until(async () => (await outboxRows(t.id, 'tenant.created'))[0]?.state === 'delivered');
    const mine = seen.filter((s) => s.event.tenantId === t.id);
    expect(mine).toHaveLength(1);
    expect(mine[0]?.context).toBe(t.id);
    expect(mine[0]?.event).toMatchObject({
      seq: 1,
      type: 'tenant.created',
      payload: { tenantId: t.id, slug: 'seeded' },
    });
    const { rows } = await app.query(t, 'SELECT title FROM items');
    expect(rows).toEqual([{ title: 'Welcome' }]);
    await app.events.close();
  });

  it('keeps each tenant in order under concurrent writers, and two dispatchers deliver each event once', async () => {
    const [a, b] = [await instance({ concurrency: 3 }), await instance({ concurrency: 3 })];
    const tenants = await Promise.all(
      [1, 2, 3].map((i) => fx.tenantry.tenants.create({ slug: `order-${i}`, name: `O${i}` })),
    );
    const deliveries: { by: string; event: TenantEvent }[] = [];
    for (const [name, app] of [
      ['a', a],
      ['b', b],
    ] as const) {
      app.events.on('load.ping', (event) => {
        deliveries.push({ by: name, event });
      });
    }
    await Promise.all([a.events.start(), b.events.start()]);
    // 4 writers per tenant, 10 transactions each, all at once, while both dispatchers run.
    await Promise.all(
      tenants.flatMap((t) => [0, 1, 2, 3].map((w) => emitMany(w % 2 ? a : b, t.id, 'load.ping', 10, { w }))),
    );
    await until(() => deliveries.length >= 120, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a second delivery would show now
    expect(deliveries).toHaveLength(120);
    expect(new Set(deliveries.map((d) => d.event.id)).size).toBe(120);
    for (const t of tenants) {
      const mine = deliveries.filter((d) => d.event.tenantId === t.id);
      expect(mine.map((d) => d.event.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 2)); // 1: tenant.created
      // Each writer's events come out in the order it committed them.
      for (const w of [0, 1, 2, 3]) {
        const is = mine.filter((d) => d.event.payload.w === w).map((d) => d.event.payload.i);
        expect(is).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      }
    }
    expect(new Set(deliveries.map((d) => d.by))).toEqual(new Set(['a', 'b']));
    await Promise.all([a.events.close(), b.events.close()]);
  });

  it("delivers a tenant's events only to its subscribers, with its id", async () => {
    const app = await instance();
    const [x, y] = [
      await fx.tenantry.tenants.create({ slug: 'filter-x', name: 'X' }),
      await fx.tenantry.tenants.create({ slug: 'filter-y', name: 'Y' }),
    ];
    const forX: { tenantId: string; context: string; payload: unknown }[] = [];
    const all: string[] = [];
    app.events.on(
      'filter.ping',
      (e) => {
        forX.push({ tenantId: e.tenantId, context: getTenant().id, payload: e.payload });
      },
      { tenant: 'filter-x' },
    );
    app.events.on('filter.ping', (e) => {
      all.push(e.tenantId);
    });
    await emitMany(app, x.id, 'filter.ping', 3, { tenant: 'x' });
    await emitMany(app, y.id, 'filter.ping', 3, { tenant: 'y' });
    await app.events.drain();
    expect(forX).toHaveLength(3);
    for (const e of forX) expect(e).toMatchObject({ tenantId: x.id, context: x.id, payload: { tenant: 'x' } });
    expect(all.filter((id) => id === y.id)).toHaveLength(3);
  });

  it('retries a failing handler with backoff, then dead-letters the event; retry() puts it back', async () => {
    const app = await instance({ maxAttempts: 3 });
    const t = await fx.tenantry.tenants.create({ slug: 'failing', name: 'F' });
    const attempts: number[] = [];
    let healthy = false;
    const later: number[] = [];
    app.events.on('fail.ping', (e) => {
      attempts.push(e.attempt);
      if (!healthy) throw new Error('handler down');
    });
    app.events.on('after.ping', (e) => {
      later.push(e.seq);
      // The dead letter did not block the tenant's later events for ever, but it went first.
      expect(attempts).toEqual([1, 2, 3]);
    });
    await emitMany(app, t.id, 'fail.ping', 1);
    await emitMany(app, t.id, 'after.ping', 1);
    await app.events.start();
    await until(async () => (await outboxRows(t.id, 'after.ping'))[0]?.state === 'delivered');
    expect(attempts).toEqual([1, 2, 3]);
    expect(later).toEqual([3]);
    const failed = await app.events.failed({ tenantId: t.id });
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ type: 'fail.ping', tenantId: t.id, attempts: 3, lastError: 'handler down' });
    expect(await app.events.failed({ tenantId: (await fx.tenantry.tenants.get('commit')).id })).toEqual([]);
    healthy = true;
    await app.events.retry(failed[0]?.id as string);
    await until(async () => (await outboxRows(t.id, 'fail.ping'))[0]?.state === 'delivered');
    expect(attempts).toEqual([1, 2, 3, 1]);
    await expect(app.events.retry(failed[0]?.id as string)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await app.events.close();
  });
});

describe('a dispatcher that stops', () => {
  it('closed while a handler runs: the event stays pending and another dispatcher delivers it', async () => {
    const stuck = await instance();
    const t = await fx.tenantry.tenants.create({ slug: 'stopped', name: 'S' });
    let started = 0;
    stuck.events.on('slow.job', () => {
      started++;
      return new Promise(() => {}); // never ends
    });
    await stuck.events.start();
    await emitMany(stuck, t.id, 'slow.job', 1);
    await until(() => started === 1);
    await stuck.events.close({ timeoutMs: 50 });
    expect(await outboxRows(t.id, 'slow.job')).toMatchObject([{ state: 'pending', attempts: 0 }]);

    const rescuer = await instance();
    const delivered: number[] = [];
    rescuer.events.on('slow.job', (e) => {
      delivered.push(e.attempt);
    });
    await rescuer.events.start();
    await until(async () => (await outboxRows(t.id, 'slow.job'))[0]?.state === 'delivered');
    expect(delivered).toEqual([1]);
    await rescuer.events.close();
  });

  it('killed (SIGKILL) mid-delivery: nothing is lost', async () => {
    const t = await fx.tenantry.tenants.create({ slug: 'killed', name: 'K' });
    await emitMany(fx.tenantry, t.id, 'kill.job', 3);
    const script = fileURLToPath(new URL('./fixtures/outbox-worker.ts', import.meta.url));
    const child = spawn(process.execPath, [script], {
      env: {
        ...process.env,
        OUTBOX_DATABASE_URL: fx.database.url,
        OUTBOX_SECRET: fx.database.secret,
        OUTBOX_ROLES: JSON.stringify(fx.database.roles),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    await until(() => out.includes('holding'), 20_000);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    // The first event was being handled when the process died: still pending, like the rest.
    expect((await outboxRows(t.id, 'kill.job')).map((r) => r.state)).toEqual(['pending', 'pending', 'pending']);

    const rescuer = await instance();
    const seqs: number[] = [];
    rescuer.events.on('kill.job', (e) => {
      seqs.push(e.seq);
    });
    await rescuer.events.start();
    await until(() => seqs.length === 3);
    expect(seqs).toEqual([2, 3, 4]);
    await rescuer.events.close();
  });
});
