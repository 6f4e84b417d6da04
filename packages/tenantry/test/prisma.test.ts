import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { PrismaClient } from '../../../test-support/prisma/generated/client.ts';
import { type TenantRecord, withTenant } from '../src/index.ts';
import { createTenantPrismaAdapter, tenantPrisma } from '../src/prisma/index.ts';

/** Prisma specifics; the cross-tenant assertions are in orm-isolation.test.ts. */

let f: Fixture;
let prisma: PrismaClient;

beforeAll(async () => {
  f = await createFixture('prisma');
  prisma = tenantPrisma(new PrismaClient({ adapter: createTenantPrismaAdapter(f.tenantry) }));
});

afterAll(async () => {
  await prisma?.$disconnect();
  await f?.close();
});

describe.each(['pool', 'schema', 'database'] as const)('%s tier', (tier) => {
  let a: TenantRecord;
  let b: TenantRecord;
  const as = <T>(t: TenantRecord, fn: () => Promise<T>) =>
    withTenant({ id: t.id, slug: t.slug, tier: t.tier, plan: t.plan, status: t.status }, fn);
  const titles = async () => (await prisma.item.findMany({ orderBy: { title: 'asc' } })).map((r) => r.title);

  beforeAll(async () => {
    a = await f.tenantry.tenants.create({ slug: `prisma-${tier}-a`, name: 'A', tier });
    b = await f.tenantry.tenants.create({ slug: `prisma-${tier}-b`, name: 'B', tier });
  });

  it('batch $transaction([...]) of two tenants in the same tick: each in its own tenant, in order, all or nothing', async () => {
    const [fromA, fromB] = await Promise.all([
      as(a, () =>
        prisma.$transaction([
          prisma.item.create({ data: { title: 'a1' } }),
          prisma.item.count(),
          prisma.item.findMany(),
        ]),
      ),
      as(b, () => prisma.$transaction([prisma.item.create({ data: { title: 'b1' } }), prisma.item.count()])),
    ]);
    expect(fromA[0].tenant_id).toBe(a.id);
    expect(fromA[1]).toBe(1);
    expect(fromA[2].map((r) => r.title)).toEqual(['a1']);
    expect(fromB[0].tenant_id).toBe(b.id);
    expect(fromB[1]).toBe(1);
    await expect(
      as(a, () =>
        prisma.$transaction([
          prisma.item.create({ data: { title: 'a-ghost' } }),
          prisma.$executeRawUnsafe('SELECT 1/0'),
        ]),
      ),
    ).rejects.toThrow();
    expect(await as(a, titles)).toEqual(['a1']);
  });

  it('interactive $transaction of two tenants at once: each sees and writes only its own', async () => {
    const run = (t: TenantRecord, title: string) =>
      as(t, () =>
        prisma.$transaction(async (tx) => {
          await tx.item.create({ data: { title } });
          await new Promise((resolve) => setTimeout(resolve, 20));
          return (await tx.item.findMany({ orderBy: { title: 'asc' } })).map((r) => r.title);
        }),
      );
    const [seenA, seenB] = await Promise.all([run(a, 'a2'), run(b, 'b2')]);
    expect(seenA).toEqual(['a1', 'a2']);
    expect(seenB).toEqual(['b1', 'b2']);
  });

  it('inside tenantry.transaction, Prisma runs on it and its $transaction is a savepoint', async () => {
    await f.tenantry.transaction(a, async (tx) => {
      await prisma.item.create({ data: { title: 'a3' } });
      await expect(
        prisma.$transaction(async (inner) => {
          await inner.item.create({ data: { title: 'a-inner-ghost' } });
          throw new Error('inner fails');
        }),
      ).rejects.toThrow('inner fails');
      // Tenantry's raw SQL in the same transaction sees Prisma's write.
      const { rows } = await tx.query<{ title: string }>("SELECT title FROM items WHERE title LIKE 'a%' ORDER BY 1");
      expect(rows.map((r) => r.title)).toEqual(['a1', 'a2', 'a3']);
    });
    expect(await as(a, titles)).toEqual(['a1', 'a2', 'a3']);
    // A Prisma query starts when awaited: returned unawaited from the callback, it still
    // runs in the transaction (outside any other tenant context here).
    const found = await f.tenantry.transaction(a, () => prisma.item.findMany({ where: { title: 'a3' } }));
    expect(found.map((r) => r.tenant_id)).toEqual([a.id]);
  });

  it('raw queries are confined, typed results come back, and COMMIT as a raw statement is refused', async () => {
    const rows = await as(
      b,
      () => prisma.$queryRaw<{ title: string; created_at: Date }[]>`SELECT title, created_at FROM items ORDER BY title`,
    );
    expect(rows.map((r) => r.title)).toEqual(['b1', 'b2']);
    expect(rows[0]?.created_at).toBeInstanceOf(Date);
    expect(await as(b, () => prisma.$executeRaw`UPDATE items SET description = 'seen' WHERE title LIKE 'a%'`)).toBe(0);
    await expect(as(b, () => prisma.$executeRawUnsafe('COMMIT'))).rejects.toThrow(/transaction control/);
  });

  it('findUnique by a compound selector, two tenants in one tick: each for its own tenant', async () => {
    const [item] = await as(b, () => prisma.item.findMany({ where: { title: 'b1' } }));
    const where = { tenant_id_id: { tenant_id: b.id, id: item?.id ?? '' } };
    for (let round = 0; round < 3; round++) {
      const found = await Promise.all([
        as(a, () => prisma.item.findUnique({ where })),
        as(b, () => prisma.item.findUnique({ where })),
        as(a, () => prisma.item.findUnique({ where: { id: item?.id ?? '' } })),
      ]);
      expect(found.map((r) => r?.title ?? null)).toEqual([null, 'b1', null]);
    }
    await expect(as(a, () => prisma.item.findUniqueOrThrow({ where: { id: item?.id ?? '' } }))).rejects.toMatchObject({
      code: 'P2025',
    });
  });

  it('Prisma’s own error codes survive (a unique violation is P2002)', async () => {
    const [item] = await as(a, () => prisma.item.findMany({ where: { title: 'a1' } }));
    await expect(as(a, () => prisma.item.create({ data: { id: item?.id, title: 'dup' } }))).rejects.toMatchObject({
      code: 'P2002',
    });
  });
});
