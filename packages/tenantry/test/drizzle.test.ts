import { count, eq, sql } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { comments, drizzleSchema, items } from '../../../test-support/drizzle-schema.ts';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { type TenantPgPool, tenantDrizzleClient, withTenantDrizzle } from '../src/drizzle/index.ts';
import { type TenantRecord, withTenant } from '../src/index.ts';

/** Drizzle specifics; the cross-tenant assertions are in orm-isolation.test.ts. */

let f: Fixture;
let db: NodePgDatabase<typeof drizzleSchema> & { $client: TenantPgPool };

beforeAll(async () => {
  f = await createFixture('drizzle');
  db = drizzle({ client: tenantDrizzleClient(f.tenantry), schema: drizzleSchema });
});

afterAll(async () => {
  await f?.close();
});

const codeOf = (e: unknown) =>
  (e as { code?: string; cause?: { code?: string } }).code ?? (e as { cause?: { code?: string } }).cause?.code;

it('db.transaction() of two tenants at once: each bound to its tenant when it begins', async () => {
  const t1 = await f.tenantry.tenants.create({ slug: 'drizzle-concurrent-1', name: 'One' });
  const t2 = await f.tenantry.tenants.create({ slug: 'drizzle-concurrent-2', name: 'Two', tier: 'schema' });
  const run = (t: TenantRecord) =>
    withTenant({ id: t.id, slug: t.slug, tier: t.tier, plan: t.plan, status: t.status }, () =>
      db.transaction(async (tx) => {
        await tx.insert(items).values({ title: t.slug });
        await new Promise((resolve) => setTimeout(resolve, 20));
        return (await tx.select({ title: items.title, tenantId: items.tenantId }).from(items)).map((r) => [
          r.title,
          r.tenantId,
        ]);
      }),
    );
  const [one, two] = await Promise.all([run(t1), run(t2)]);
  expect(one).toEqual([[t1.slug, t1.id]]);
  expect(two).toEqual([[t2.slug, t2.id]]);
});

describe.each(['pool', 'schema'] as const)('%s tier', (tier) => {
  let acme: TenantRecord;
  const titles = async () =>
    (await db.select({ title: items.title }).from(items).orderBy(items.title)).map((r) => r.title);

  beforeAll(async () => {
    acme = await f.tenantry.tenants.create({ slug: `drizzle-${tier}`, name: 'Acme', tier });
  });

  it('withTenantDrizzle runs its callback in one tenant transaction: all or nothing', async () => {
    const n = await withTenantDrizzle(db, acme.slug, async (tx) => {
      await tx.insert(items).values([{ title: 'one' }, { title: 'two' }]);
      return tx.$count(items);
    });
    expect(n).toBe(2);
    await expect(
      withTenantDrizzle(db, acme.slug, async (tx) => {
        await tx.insert(items).values({ title: 'ghost' });
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await f.tenantry.transaction(acme, () => titles())).toEqual(['one', 'two']);
  });

  it('db.transaction() nests in the tenant transaction as a savepoint, and nests again', async () => {
    const result = await f.tenantry.transaction(acme, async (tx) => {
      await db.insert(items).values({ title: 'outer' });
      await expect(
        db.transaction(async (inner) => {
          await inner.insert(items).values({ title: 'inner, rolled back' });
          throw new Error('inner fails');
        }),
      ).rejects.toThrow('inner fails');
      await db.transaction(async (inner) => {
        await inner.insert(items).values({ title: 'inner, kept' });
        await inner
          .transaction(async (deeper) => {
            await deeper.insert(items).values({ title: 'deeper, rolled back' });
            deeper.rollback();
          })
          .catch(() => {});
      });
      // The same transaction seen through Tenantry's own raw SQL.
      return (await tx.query<{ n: string }>('SELECT count(*) AS n FROM items')).rows[0]?.n;
    });
    expect(result).toBe('4');
    expect(await f.tenantry.transaction(acme, () => titles())).toEqual(['inner, kept', 'one', 'outer', 'two']);
  });

  it('rows keep their columns in array row mode (a join of two `id`s) and Drizzle’s own type parsing', async () => {
    const rows = await withTenantDrizzle(db, acme.slug, async (tx) => {
      const [item] = await tx.insert(items).values({ title: 'joined' }).returning();
      if (!item) throw new Error('no item');
      await tx.insert(comments).values({ itemId: item.id, body: 'hello' });
      return tx.select().from(items).innerJoin(comments, eq(comments.itemId, items.id));
    });
    expect(rows).toHaveLength(1);
    const [row] = rows;
    expect(row?.items.id).toBe(row?.comments.itemId);
    expect(row?.comments.id).not.toBe(row?.items.id);
    expect(row?.items.createdAt).toBeInstanceOf(Date);
    expect(row?.items.tenantId).toBe(acme.id);
  });

  it('refuses transaction control as a plain statement, and isolation levels', async () => {
    await withTenant({ id: acme.id, slug: acme.slug, tier, plan: acme.plan, status: 'active' }, async () => {
      await expect(
        f.tenantry.transaction(async () => {
          await db.execute(sql`COMMIT`);
        }),
      ).rejects.toSatisfy((e) => codeOf(e) === 'USAGE_ERROR');
      await expect(db.transaction(async () => {}, { isolationLevel: 'serializable' })).rejects.toSatisfy(
        (e) => codeOf(e) === 'USAGE_ERROR',
      );
      // A plain statement in the context is a one-statement tenant transaction.
      const [row] = await db.select({ n: count() }).from(items);
      expect(row?.n).toBeGreaterThan(0);
    });
  });
});
