import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverUrl } from '../../../test-support/database.ts';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { type IsolationTier, isTenantryError, type TenantRecord } from '../src/index.ts';

let f: Fixture;

beforeAll(async () => {
  f = await createFixture('move');
});

afterAll(async () => {
  await f?.close();
});

/** Every title in the tenant's current copy of `items`, read as superuser (no RLS, no Tenantry). */
async function titlesWhereItLives(t: TenantRecord): Promise<string[]> {
  const url = new URL(serverUrl());
  if (t.databaseName) url.pathname = `/${t.databaseName}`;
  else url.pathname = `/${f.database.name}`;
  const c = new pg.Client({ connectionString: url.toString() });
  await c.connect();
  try {
    const table = t.schemaName ? `"${t.schemaName}".items` : 'public.items';
    const { rows } = await c.query<{ title: string }>(`SELECT title FROM ${table} WHERE tenant_id = $1`, [t.id]);
    return rows.map((r) => r.title);
  } finally {
    await c.end();
  }
}

describe('moving a tenant between tiers', () => {
  it('pool → schema → database → pool under concurrent writes: every acknowledged write present exactly once', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'mover', name: 'Mover' });
    const other = await f.tenantry.tenants.create({ slug: 'bystander', name: 'Bystander' });
    await f.tenantry.transaction(other, (tx) => tx.db.insertInto('items').values({ title: 'not yours' }).execute());
    // Some rows with children before the first move.
    await f.tenantry.transaction(t, async (tx) => {
      for (let i = 0; i < 20; i++) {
        const [item] = await tx.db
          .insertInto('items')
          .values({ title: `seed ${i}` })
          .returning('id')
          .execute();
        await tx.db
          .insertInto('comments')
          .values({ item_id: item?.id as string, body: `comment ${i}` })
          .execute();
      }
    });
    const acknowledged: string[] = ['seed 0'];
    for (let i = 1; i < 20; i++) acknowledged.push(`seed ${i}`);
    let stop = false;
    let refused = 0;
    const writer = async (w: number) => {
      let n = 0;
      while (!stop) {
        const title = `w${w}-${n}`;
        try {
          // Resolved by slug each time, as a request would through the (invalidated) cache.
          await f.tenantry.transaction('mover', (tx) => tx.db.insertInto('items').values({ title }).execute());
          acknowledged.push(title);
          n++;
        } catch (error) {
          if (!isTenantryError(error, 'TENANT_MOVING') && !isTenantryError(error, 'TENANT_MOVED')) throw error;
          refused++;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    const path: IsolationTier[] = ['schema', 'database', 'pool'];
    const reports = [];
    try {
      for (const to of path) {
        await new Promise((resolve) => setTimeout(resolve, 150));
        reports.push(await f.tenantry.moveTenant('mover', { to }));
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    const now = await f.tenantry.tenants.get('mover');
    expect(now.tier).toBe('pool');
    const titles = await titlesWhereItLives(now);
    expect(titles.length).toBe(new Set(titles).size); // nothing duplicated
    expect(new Set(titles)).toEqual(new Set(acknowledged)); // nothing lost, nothing unacknowledged
    expect(acknowledged.length).toBeGreaterThan(20 + 3 * 4);
    for (const r of reports) {
      expect(r.tables.map((x) => x.table).sort()).toEqual(['comments', 'items']);
      expect(r.frozenMs).toBeLessThan(15_000);
    }
    // Children came along, pointing at the same parents.
    const comments = await f.tenantry.transaction('mover', (tx) =>
      tx.query(
        'SELECT count(*)::int AS n FROM comments c JOIN items i ON i.id = c.item_id AND i.tenant_id = c.tenant_id',
      ),
    );
    expect(comments.rows[0]?.n).toBe(20);
    // The bystander never noticed; no copy is left behind.
    const seen = await f.tenantry.transaction(other, (tx) => tx.db.selectFrom('items').select('title').execute());
    expect(seen).toEqual([{ title: 'not yours' }]);
    const leftovers = await f.tenantry.adminPool.query(
      "SELECT id, state FROM tenantry.targets WHERE kind IN ('schema', 'database') AND tenant_id IS NULL AND state <> 'warm'",
    );
    expect(leftovers.rows).toEqual([]);
    const audit = await f.tenantry.adminPool.query(
      "SELECT details FROM tenantry.audit_log WHERE tenant_id = $1 AND action = 'tenant.moved' ORDER BY id",
      [t.id],
    );
    expect(audit.rows.map((r) => r.details.to.tier)).toEqual(path);
    console.log(
      `moves: ${acknowledged.length} writes acknowledged, ${refused} refused and retried, frozen ${reports.map((r) => r.frozenMs).join('/')} ms`,
    );
  }, 120_000);

  it('refuses bad input and an impossible move, changing nothing', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'stay', name: 'Stay' });
    await expect(f.tenantry.moveTenant('stay', { to: 'cloud' as never })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(f.tenantry.moveTenant('stay', { to: 'pool' })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(f.tenantry.moveTenant('stay', { to: 'schema', placement: 'shared' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(f.tenantry.moveTenant('nobody', { to: 'schema' })).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND' });
    expect(await f.tenantry.tenants.get('stay')).toMatchObject({
      tier: 'pool',
      frozen: false,
      placementId: t.placementId,
    });
  });

  it('a move whose in-flight writes do not drain in time is undone: the tenant is thawed where it was', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'fails', name: 'Fails' });
    await f.tenantry.transaction(t, (tx) => tx.db.insertInto('items').values({ title: 'keep me' }).execute());
    const before = await f.tenantry.adminPool.query('SELECT count(*)::int AS n FROM tenantry.targets');
    // A long tenant transaction holds the tenant's work lock, so the drain times out.
    const blocking = f.tenantry.transaction(t, (tx) => tx.query('SELECT pg_sleep(2)'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(f.tenantry.moveTenant('fails', { to: 'schema', drainTimeoutMs: 300 })).rejects.toMatchObject({
      code: 'INVALID_TENANT_STATE',
    });
    await blocking;
    const after = await f.tenantry.tenants.get('fails');
    expect(after).toMatchObject({ tier: 'pool', frozen: false });
    expect((await f.tenantry.adminPool.query('SELECT count(*)::int AS n FROM tenantry.targets')).rows).toEqual(
      before.rows,
    );
    await f.tenantry.transaction('fails', (tx) =>
      tx.db.insertInto('items').values({ title: 'still writable' }).execute(),
    );
  });
});
