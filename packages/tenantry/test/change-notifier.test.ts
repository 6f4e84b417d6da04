import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppDB, appMigrations, createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { CHANNELS, ChangeFeed } from '../src/control/change-feed.ts';
import { TenantCache } from '../src/identify/tenant-cache.ts';
import { emit, Tenantry } from '../src/index.ts';
import { OUTBOX_CHANNEL } from '../src/migrate/outbox-migration.ts';

/** Resolves with the payloads seen on `channel` once `done(payloads)` holds; rejects after `ms`. */
function collect(feed: ChangeFeed, channel: string, done: (seen: string[]) => boolean, ms: number) {
  const seen: string[] = [];
  return new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`${channel}: only ${seen.length} notifications within ${ms} ms`));
    }, ms);
    const off = feed.on(channel, (payload) => {
      if (payload === undefined) return; // (re)connected: not a change
      seen.push(payload);
      if (done(seen)) {
        clearTimeout(timer);
        off();
        resolve(seen);
      }
    });
  });
}

describe('tenant creates notify other instances after their commit', () => {
  let f: Fixture;
  /** A second instance on the same database, with its own change feed and tenant cache. */
  let other: Tenantry<AppDB>;
  let feed: ChangeFeed;
  let cache: TenantCache;

  beforeAll(async () => {
    f = await createFixture('notifier');
    other = await Tenantry.connect<AppDB>({
      databaseUrl: f.database.url,
      secret: f.database.secret,
      roles: f.database.roles,
      migrations: appMigrations,
    });
    feed = new ChangeFeed(f.database.url);
    cache = new TenantCache(other.tenants, { feed, ttlMs: 60_000 });
    feed.on(OUTBOX_CHANNEL, () => {}); // listened on from the start
    await feed.start();
  }, 60_000);

  afterAll(async () => {
    await feed?.close();
    await other?.close();
    await f?.close();
  });

  it('another instance drops its cached miss within a second, and hears the tenant.created event', async () => {
    expect(await cache.get('late-comer')).toBeUndefined(); // a miss, cached on the other instance
    const heard = collect(feed, CHANNELS.tenants, (s) => s.length > 0, 1000);
    const event = collect(feed, OUTBOX_CHANNEL, (s) => s.length > 0, 1000);
    const created = await f.tenantry.tenants.create({ slug: 'late-comer', name: 'Late' });
    expect(await heard).toEqual([created.id]);
    expect(await event).toEqual([created.id]);
    // The miss is gone at once (it would otherwise be served until it expires).
    expect((await cache.get('late-comer'))?.id).toBe(created.id);
  });

  it('concurrent creates are all announced, and their events written', async () => {
    const n = 24;
    const heard = collect(feed, CHANNELS.tenants, (s) => s.length >= n, 5000);
    const created = await Promise.all(
      Array.from({ length: n }, (_, i) => f.tenantry.tenants.create({ slug: `burst-${i}`, name: `Burst ${i}` })),
    );
    expect((await heard).sort()).toEqual(created.map((t) => t.id).sort());
    const { rows } = await f.tenantry.adminPool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM tenantry.outbox WHERE type = 'tenant.created' AND payload->>'slug' LIKE 'burst-%'",
    );
    expect(rows[0]?.n).toBe(n);
  });

  it('an outbox write marked after_commit sends no NOTIFY from its transaction; unmarked, it does', async () => {
    const tenant = await f.tenantry.tenants.create({ slug: 'marked', name: 'Marked' });
    const listener = new pg.Client({ connectionString: f.database.url });
    await listener.connect();
    const seen: string[] = [];
    listener.on('notification', (m) => {
      if (m.channel === OUTBOX_CHANNEL && m.payload === tenant.id) seen.push('notified');
    });
    await listener.query(`LISTEN ${OUTBOX_CHANNEL}`);
    const write = async (marked: boolean) => {
      const client = await f.tenantry.adminPool.connect();
      try {
        await client.query('BEGIN');
        if (marked) await client.query("SELECT set_config('tenantry.outbox_notify', 'after_commit', true)");
        await client.query("INSERT INTO tenantry.outbox (tenant_id, type) VALUES ($1, 'test.marked')", [tenant.id]);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      // A notification from a committed transaction reaches a listener of the same server at
      // once; a round trip on the listener after the commit flushes what was queued.
      await listener.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, 200));
    };
    try {
      await write(true);
      expect(seen).toEqual([]);
      await write(false);
      expect(seen).toEqual(['notified']);
    } finally {
      await listener.end();
    }
  });

  it('a data-plane event still notifies inside its transaction', async () => {
    const tenant = await f.tenantry.tenants.create({ slug: 'data-plane', name: 'Data plane' });
    const heard = collect(feed, OUTBOX_CHANNEL, (s) => s.includes(tenant.id), 1000);
    await f.tenantry.transaction(tenant, async (tx) => emit(tx, 'item.created', { id: 1 }));
    expect(await heard).toContain(tenant.id);
  });
});
