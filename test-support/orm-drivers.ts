import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { tenantDrizzleClient } from '../packages/tenantry/src/drizzle/index.ts';
import type { Tenantry } from '../packages/tenantry/src/index.ts';
import { createTenantPrismaAdapter, tenantPrisma } from '../packages/tenantry/src/prisma/index.ts';
import { comments, drizzleSchema, items } from './drizzle-schema.ts';
import type { AppDB } from './fixture.ts';
import { PrismaClient } from './prisma/generated/client.ts';

/**
 * One ORM's way of doing the cross-tenant suite's operations on the test application's
 * `items` and `comments`. Every call runs in the current tenant context (`withTenant`):
 * the driver names no tenant, as application code would not.
 */
export interface OrmDriver {
  readonly name: string;
  /** Titles of every item the tenant sees, sorted, with no filter of the application's. */
  titles(): Promise<string[]>;
  /** Titles through the ORM's raw SQL (`SELECT title FROM items`), sorted. */
  rawTitles(): Promise<string[]>;
  /** Creates an item; its id. */
  insert(title: string): Promise<string>;
  /** Creates an item naming `tenantId` explicitly (another tenant's id must fail). */
  insertAs(tenantId: string, title: string): Promise<void>;
  /** The title of the item `id`, or null. */
  find(id: string): Promise<string | null>;
  /** Renames items titled `from`; rows affected. */
  rename(from: string, to: string): Promise<number>;
  /** Deletes the item `id`; rows affected. */
  remove(id: string): Promise<number>;
  /** An item with comments in one write (nested write / ORM transaction); the item's id. */
  insertWithComments(title: string, bodies: string[]): Promise<string>;
  /** Comment bodies of item `id`, through the ORM's relation loading, sorted. */
  commentsOf(id: string): Promise<string[]>;
  /** Inserts `title` in the ORM's own transaction and then fails: nothing may stay. */
  insertThenFail(title: string): Promise<void>;
  close(): Promise<void>;
}

const sorted = (values: string[]) => [...values].sort();

/** Kysely: `tx.db` in `tenantry.transaction()`, the existing integration. */
export function kyselyDriver(tenantry: Tenantry<AppDB>): OrmDriver {
  const tx = <T>(fn: (db: Tenantry<AppDB>['db']) => Promise<T>) => tenantry.transaction((t) => fn(t.db));
  return {
    name: 'kysely',
    titles: () =>
      tx(async (db) => sorted((await db.selectFrom('items').select('title').execute()).map((r) => r.title))),
    rawTitles: () =>
      tenantry.transaction(async (t) =>
        sorted((await t.query<{ title: string }>('SELECT title FROM items')).rows.map((r) => r.title)),
      ),
    insert: (title) =>
      tx(async (db) => (await db.insertInto('items').values({ title }).returning('id').executeTakeFirstOrThrow()).id),
    insertAs: async (tenantId, title) => {
      await tx((db) => db.insertInto('items').values({ tenant_id: tenantId, title }).execute());
    },
    find: (id) =>
      tx(
        async (db) =>
          (await db.selectFrom('items').select('title').where('id', '=', id).executeTakeFirst())?.title ?? null,
      ),
    rename: (from, to) =>
      tx(async (db) =>
        Number(
          (await db.updateTable('items').set({ title: to }).where('title', '=', from).executeTakeFirst())
            .numUpdatedRows,
        ),
      ),
    remove: (id) =>
      tx(async (db) => Number((await db.deleteFrom('items').where('id', '=', id).executeTakeFirst()).numDeletedRows)),
    insertWithComments: (title, bodies) =>
      tx(async (db) => {
        const { id } = await db.insertInto('items').values({ title }).returning('id').executeTakeFirstOrThrow();
        if (bodies.length > 0)
          await db
            .insertInto('comments')
            .values(bodies.map((body) => ({ item_id: id, body })))
            .execute();
        return id;
      }),
    commentsOf: (id) =>
      tx(async (db) =>
        sorted((await db.selectFrom('comments').select('body').where('item_id', '=', id).execute()).map((r) => r.body)),
      ),
    insertThenFail: (title) =>
      tx(async (db) => {
        await db.insertInto('items').values({ title }).execute();
        throw new Error('rolled back on purpose');
      }),
    close: async () => {},
  };
}

/** Drizzle through `tenantry/drizzle`: statements outside a transaction are one-statement tenant transactions. */
export function drizzleDriver(tenantry: Tenantry<AppDB>): OrmDriver {
  const db = drizzle({ client: tenantDrizzleClient(tenantry), schema: drizzleSchema });
  return {
    name: 'drizzle',
    titles: async () => sorted((await db.select({ title: items.title }).from(items)).map((r) => r.title)),
    rawTitles: async () =>
      sorted((await db.execute<{ title: string }>(sql`SELECT title FROM items`)).rows.map((r) => r.title)),
    insert: async (title) => {
      const [row] = await db.insert(items).values({ title }).returning({ id: items.id });
      return row?.id ?? '';
    },
    insertAs: async (tenantId, title) => {
      await db.insert(items).values({ tenantId, title });
    },
    find: async (id) => (await db.query.items.findFirst({ where: eq(items.id, id) }))?.title ?? null,
    rename: async (from, to) => (await db.update(items).set({ title: to }).where(eq(items.title, from))).rowCount ?? 0,
    remove: async (id) => (await db.delete(items).where(eq(items.id, id))).rowCount ?? 0,
    insertWithComments: (title, bodies) =>
      db.transaction(async (tx) => {
        const [row] = await tx.insert(items).values({ title }).returning({ id: items.id });
        const id = row?.id ?? '';
        if (bodies.length > 0) await tx.insert(comments).values(bodies.map((body) => ({ itemId: id, body })));
        return id;
      }),
    commentsOf: async (id) => {
      const item = await db.query.items.findFirst({ where: eq(items.id, id), with: { comments: true } });
      return sorted((item?.comments ?? []).map((c) => c.body));
    },
    insertThenFail: (title) =>
      db.transaction(async (tx) => {
        await tx.insert(items).values({ title });
        throw new Error('rolled back on purpose');
      }),
    close: async () => {},
  };
}

/** Prisma 7 through `tenantry/prisma`: the generated client on Tenantry's adapter. */
export function prismaDriver(tenantry: Tenantry<AppDB>): OrmDriver {
  const prisma = tenantPrisma(new PrismaClient({ adapter: createTenantPrismaAdapter(tenantry) }));
  return {
    name: 'prisma',
    titles: async () => sorted((await prisma.item.findMany({ select: { title: true } })).map((r) => r.title)),
    rawTitles: async () =>
      sorted((await prisma.$queryRaw<{ title: string }[]>`SELECT title FROM items`).map((r) => r.title)),
    insert: async (title) => (await prisma.item.create({ data: { title } })).id,
    insertAs: async (tenantId, title) => {
      await prisma.item.create({ data: { tenant_id: tenantId, title } });
    },
    find: async (id) => (await prisma.item.findUnique({ where: { id } }))?.title ?? null,
    rename: async (from, to) => (await prisma.item.updateMany({ where: { title: from }, data: { title: to } })).count,
    remove: async (id) => (await prisma.item.deleteMany({ where: { id } })).count,
    insertWithComments: async (title, bodies) =>
      (await prisma.item.create({ data: { title, comments: { create: bodies.map((body) => ({ body })) } } })).id,
    commentsOf: async (id) => {
      const item = await prisma.item.findUnique({ where: { id }, include: { comments: true } });
      return sorted((item?.comments ?? []).map((c) => c.body));
    },
    insertThenFail: async (title) => {
      await prisma.$transaction(async (tx) => {
        await tx.item.create({ data: { title } });
        throw new Error('rolled back on purpose');
      });
    },
    close: () => prisma.$disconnect(),
  };
}

export const ORM_DRIVERS = { kysely: kyselyDriver, drizzle: drizzleDriver, prisma: prismaDriver } as const;
