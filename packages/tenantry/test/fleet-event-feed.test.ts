import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry } from '../../../test-support/http.ts';
import { ChangeFeed } from '../src/control/change-feed.ts';
import { type FleetEvent, FleetEventFeed } from '../src/effects/fleet-event-feed.ts';
import type { Tenantry } from '../src/index.ts';

/**
 * The operator's feed of every tenant's events (the console's Live page), on real
 * PostgreSQL: commits out of id order, tenants created after it started, the tenant filter,
 * its bounds, and that it stops with its last viewer.
 */

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let changes: ChangeFeed;

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('fleet-event-feed'));
  changes = new ChangeFeed(db.url);
});

afterAll(async () => {
  await changes?.close();
  await tenantry?.close();
  await db?.drop();
});

/** Appends an event as the outbox's trigger sees any writer's: positioned and notified on commit. */
const append = (
  tenantId: string,
  type: string,
  client: { query: typeof tenantry.adminPool.query } = tenantry.adminPool,
) => client.query('INSERT INTO tenantry.outbox (tenant_id, type) VALUES ($1, $2)', [tenantId, type]);

describe('fleet event feed', () => {
  it('passes every commit once, even one that commits after a later-numbered event of another tenant', async () => {
    const x = await tenantry.tenants.create({ slug: 'feed-x', name: 'X' });
    const y = await tenantry.tenants.create({ slug: 'feed-y', name: 'Y' });
    const feed = new FleetEventFeed({ pool: tenantry.adminPool, feed: changes });
    const seen: FleetEvent[] = [];
    const off = await feed.subscribe((events) => seen.push(...events));
    expect(feed.recent().map((e) => e.tenantSlug)).toEqual(['feed-x', 'feed-y']);

    const open = await tenantry.adminPool.connect();
    try {
      await open.query('BEGIN');
      await append(x.id, 'slow.committed', open); // takes the lower outbox id, commits last
      await append(y.id, 'fast.committed');
      await expect.poll(() => seen.map((e) => e.type)).toEqual(['fast.committed']);
      await open.query('COMMIT');
    } finally {
      open.release();
    }
    await expect.poll(() => seen.map((e) => e.type)).toEqual(['fast.committed', 'slow.committed']);
    expect(seen.map((e) => [e.tenantSlug, e.seq])).toEqual([
      ['feed-y', 2],
      ['feed-x', 2],
    ]);
    // A rolled-back event is never shown; a tenant created after the start is.
    const rolled = await tenantry.adminPool.connect();
    await rolled.query('BEGIN');
    await append(x.id, 'rolled.back', rolled);
    await rolled.query('ROLLBACK');
    rolled.release();
    const z = await tenantry.tenants.create({ slug: 'feed-z', name: 'Z' });
    await append(z.id, 'z.first');
    await expect
      .poll(() => seen.filter((e) => e.tenantSlug === 'feed-z').map((e) => e.type))
      .toEqual(['tenant.created', 'z.first']);
    expect(seen.map((e) => e.type)).not.toContain('rolled.back');
    expect(new Set(seen.map((e) => e.id)).size).toBe(seen.length);
    off();
    expect(feed.size).toEqual({ listeners: 0, tenants: 0, running: false });
  });

  it("gives a filtered viewer only its tenant's events, and keeps its buffers bounded", async () => {
    const a = await tenantry.tenants.create({ slug: 'feed-a', name: 'A' });
    const b = await tenantry.tenants.create({ slug: 'feed-b', name: 'B' });
    const feed = new FleetEventFeed({ pool: tenantry.adminPool, feed: changes }, { recent: 5, tenants: 2, batch: 3 });
    const everyone: FleetEvent[] = [];
    const onlyA: FleetEvent[] = [];
    const offAll = await feed.subscribe((events) => everyone.push(...events));
    const offA = await feed.subscribe((events) => onlyA.push(...events), a.id);
    // Seven events in one commit: more than a read's batch, all arrive, in order.
    await tenantry.adminPool.query(
      `INSERT INTO tenantry.outbox (tenant_id, type) SELECT $1, 'bulk.' || i FROM generate_series(1, 7) AS i`,
      [a.id],
    );
    await append(b.id, 'b.only');
    await expect.poll(() => onlyA.length).toBe(7);
    await expect.poll(() => everyone.filter((e) => e.tenantSlug === 'feed-b').length).toBe(1);
    expect(onlyA.every((e) => e.tenantId === a.id)).toBe(true);
    expect(onlyA.map((e) => e.seq)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(feed.recent()).toHaveLength(5);
    // Over the bound of two tenants, but none was quiet for two minutes: none forgotten yet.
    expect(feed.size.tenants).toBeGreaterThan(2);
    const history = await feed.history(a.id, 3);
    expect(history.map((e) => e.seq)).toEqual([6, 7, 8]);
    await expect(feed.subscribe(() => {}, 'not-a-uuid')).rejects.toThrow(TypeError);
    offA();
    offAll();
    expect(feed.size.running).toBe(false);
  });

  it('forgets a quiet tenant past its bound, and shows its next event once, from a floor that moves with time', async () => {
    const p = await tenantry.tenants.create({ slug: 'feed-p', name: 'P' });
    const q = await tenantry.tenants.create({ slug: 'feed-q', name: 'Q' });
    // Two minutes shrunk to 600 ms: one tenant kept, the other forgotten once quiet for that.
    const feed = new FleetEventFeed({ pool: tenantry.adminPool, feed: changes }, { tenants: 1, quietMs: 600 });
    const seen: FleetEvent[] = [];
    const off = await feed.subscribe((events) => seen.push(...events));
    await append(p.id, 'p.first');
    await expect.poll(() => seen.map((e) => e.type)).toEqual(['p.first']);
    await new Promise((resolve) => setTimeout(resolve, 800));
    await append(q.id, 'q.first');
    await expect.poll(() => seen.map((e) => e.type)).toEqual(['p.first', 'q.first']);
    expect(feed.size.tenants).toBe(1); // p was quiet long enough: forgotten
    await new Promise((resolve) => setTimeout(resolve, 800)); // q's checkpoint ages: the floor moves past p.first
    await append(p.id, 'p.second');
    await append(q.id, 'q.second');
    await expect.poll(() => seen.map((e) => e.type)).toEqual(['p.first', 'q.first', 'p.second', 'q.second']);
    expect(seen.map((e) => [e.tenantSlug, e.seq])).toEqual([
      ['feed-p', 2],
      ['feed-q', 2],
      ['feed-p', 3],
      ['feed-q', 3],
    ]);
    off();
  });
});
