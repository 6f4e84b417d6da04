import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, createTenants, type Fixture } from '../../../test-support/fixture.ts';
import { CONTEXT_SETTING, type TenantRecord, TenantryError, withTenant } from '../src/index.ts';

let f: Fixture;
let a: TenantRecord;
let b: TenantRecord;

beforeAll(async () => {
  f = await createFixture('isolation');
  [a, b] = (await createTenants(f.tenantry, 'iso', 2)) as [TenantRecord, TenantRecord];
  await f.tenantry.withTenant(a, (tx) =>
    tx.db
      .insertInto('items')
      .values([{ title: 'alpha one' }, { title: 'alpha two' }])
      .execute(),
  );
  await f.tenantry.withTenant(b, (tx) => tx.db.insertInto('items').values({ title: 'bravo secret' }).execute());
});

afterAll(async () => {
  await f?.close();
});

describe('two tenants', () => {
  it('a query with no tenant filter returns only the caller’s rows (raw SQL and Kysely)', async () => {
    const raw = await f.tenantry.withTenant(a, (tx) =>
      tx.query<{ title: string }>('SELECT title FROM items ORDER BY title'),
    );
    expect(raw.rows.map((r) => r.title)).toEqual(['alpha one', 'alpha two']);
    const viaKysely = await f.tenantry.withTenant(b, (tx) => tx.db.selectFrom('items').select('title').execute());
    expect(viaKysely.map((r) => r.title)).toEqual(['bravo secret']);
  });

  it('insert with another tenant’s id is rejected by WITH CHECK', async () => {
    await expect(
      f.tenantry.withTenant(a, (tx) =>
        tx.query('INSERT INTO items (tenant_id, title) VALUES ($1, $2)', [b.id, 'planted']),
      ),
    ).rejects.toMatchObject({ code: '42501' });
    const count = await f.tenantry.withTenant(b, (tx) => tx.query('SELECT 1 FROM items WHERE title = $1', ['planted']));
    expect(count.rowCount).toBe(0);
  });

  it('update moving a row to another tenant is rejected, and an update cannot reach the other’s rows', async () => {
    await expect(
      f.tenantry.withTenant(a, (tx) => tx.query('UPDATE items SET tenant_id = $1', [b.id])),
    ).rejects.toMatchObject({ code: '42501' });
    const touched = await f.tenantry.withTenant(a, (tx) =>
      tx.query("UPDATE items SET title = 'pwned' WHERE title = 'bravo secret'"),
    );
    expect(touched.rowCount).toBe(0);
    const deleted = await f.tenantry.withTenant(a, (tx) => tx.query('DELETE FROM items WHERE tenant_id = $1', [b.id]));
    expect(deleted.rowCount).toBe(0);
    const still = await f.tenantry.withTenant(b, (tx) => tx.query<{ title: string }>('SELECT title FROM items'));
    expect(still.rows).toEqual([{ title: 'bravo secret' }]);
  });

  it('a composite foreign key cannot reference the other tenant’s row', async () => {
    const bItem = await f.tenantry.withTenant(b, (tx) => tx.query<{ id: string }>('SELECT id FROM items'));
    const bId = bItem.rows[0]?.id as string;
    await expect(
      f.tenantry.withTenant(a, (tx) => tx.db.insertInto('comments').values({ item_id: bId, body: 'sneaky' }).execute()),
    ).rejects.toMatchObject({ code: '23503' });
  });
});

describe('forged and replayed context', () => {
  it('set_config with the other tenant’s id sees none of its rows', async () => {
    const attempt = f.tenantry.withTenant(a, async (tx) => {
      await tx.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [`${b.id}.0.0.deadbeef`]);
      return tx.query<{ title: string }>('SELECT title FROM items');
    });
    await expect(attempt).rejects.toMatchObject({ code: 'INVALID_TENANT_CONTEXT' });
  });

  it('a context value copied from another connection does not work', async () => {
    // Capture B's verified session value from inside B's transaction…
    const stolen = await f.tenantry.withTenant(b, (tx) =>
      tx.query<{ v: string }>(`SELECT current_setting('${CONTEXT_SETTING}') AS v`),
    );
    const value = stolen.rows[0]?.v as string;
    expect(value.startsWith(b.id)).toBe(true);
    // …and replay it inside A's transaction (another backend, another transaction).
    const replay = f.tenantry.withTenant(a, async (tx) => {
      await tx.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [value]);
      return tx.query<{ title: string }>('SELECT title FROM items');
    });
    await expect(replay).rejects.toBeInstanceOf(TenantryError);
    // Replaying on the very same backend in a later transaction fails too (bound to the transaction).
    const sameBackend = await f.tenantry.runtimePool.connect();
    try {
      await sameBackend.query('BEGIN');
      await sameBackend.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [value]);
      await expect(sameBackend.query('SELECT title FROM items')).rejects.toMatchObject({ code: 'TN001' });
    } finally {
      await sameBackend.query('ROLLBACK');
      sameBackend.release();
    }
  });

  it('an entry token from another connection is refused by enter()', async () => {
    const other = await f.tenantry.runtimePool.connect();
    const mine = await f.tenantry.runtimePool.connect();
    try {
      const { mintContextToken } = await import('../src/index.ts');
      const { KeyRing } = await import('../src/secrets/keys.ts');
      const key = new KeyRing(f.database.secret).key('context-hmac');
      const token = mintContextToken(
        key,
        'work',
        b.id,
        (other as unknown as { processID: number }).processID,
        Date.now() + 10_000,
      );
      await mine.query('BEGIN');
      await expect(mine.query('SELECT tenantry_context.enter($1)', [token])).rejects.toMatchObject({ code: 'TN001' });
      await mine.query('ROLLBACK');
    } finally {
      other.release();
      mine.release();
    }
  });

  it('the runtime role cannot read the control plane or the context key', async () => {
    for (const table of ['tenantry.tenants', 'tenantry.context_key', 'tenantry.placements', 'tenantry.audit_log']) {
      await expect(f.tenantry.withTenant(a, (tx) => tx.query(`SELECT * FROM ${table}`))).rejects.toMatchObject({
        code: '42501',
      });
    }
  });

  it('without a context, the runtime role sees no tenant rows at all', async () => {
    const c = new pg.Client({
      connectionString: (f.tenantry.runtimePool as unknown as { options: { connectionString: string } }).options
        .connectionString,
    });
    await c.connect();
    try {
      expect((await c.query('SELECT * FROM items')).rowCount).toBe(0);
      // No verified tenant: the default tenant_id is NULL, which RLS (and NOT NULL) refuse.
      await expect(c.query("INSERT INTO items (title) VALUES ('x')")).rejects.toMatchObject({
        code: expect.stringMatching(/^(42501|23502)$/),
      });
    } finally {
      await c.end();
    }
  });
});

describe('automatic tenant filter', () => {
  it('adds the tenant predicate to select, update and delete, and tenant_id to inserts', async () => {
    const compiled = await f.tenantry.withTenant(a, async (tx) => ({
      select: tx.db.selectFrom('items').selectAll().compile(),
      update: tx.db.updateTable('items').set({ title: 'x' }).where('title', '=', 'y').compile(),
      del: tx.db.deleteFrom('items').compile(),
      insert: tx.db.insertInto('items').values({ title: 'z' }).compile(),
      join: tx.db
        .selectFrom('comments as c')
        .innerJoin('items as i', 'i.id', 'c.item_id')
        .select(['c.body', 'i.title'])
        .compile(),
    }));
    expect(compiled.select.sql).toBe('select * from "items" where "items"."tenant_id" = $1');
    expect(compiled.select.parameters).toEqual([a.id]);
    expect(compiled.update.sql).toBe(
      'update "items" set "title" = $1 where "items"."tenant_id" = $2 and ("title" = $3)',
    );
    expect(compiled.del.sql).toBe('delete from "items" where "items"."tenant_id" = $1');
    expect(compiled.insert.sql).toBe('insert into "items" ("title", "tenant_id") values ($1, $2)');
    expect(compiled.insert.parameters).toEqual(['z', a.id]);
    expect(compiled.join.sql).toContain('"i"."tenant_id" = $');
    expect(compiled.join.sql).toContain('"c"."tenant_id" = $');
  });

  it('the compiled queries execute and stay within the tenant', async () => {
    const rows = await f.tenantry.withTenant(a, async (tx) => {
      await tx.db.insertInto('items').values({ title: 'alpha three' }).execute();
      const n = await tx.db.updateTable('items').set({ description: 'seen' }).executeTakeFirst();
      expect(n.numUpdatedRows).toBe(3n);
      return tx.db.selectFrom('items').select(['title', 'description']).orderBy('title').execute();
    });
    expect(rows.map((r) => r.title)).toEqual(['alpha one', 'alpha three', 'alpha two']);
    const bRows = await f.tenantry.withTenant(b, (tx) => tx.db.selectFrom('items').select('description').execute());
    expect(bRows).toEqual([{ description: null }]);
  });

  it('a subquery on a tenant table gets the predicate too', async () => {
    const q = await f.tenantry.withTenant(a, async (tx) =>
      tx.db
        .selectFrom('comments')
        .select('body')
        .where('item_id', 'in', (eb) => eb.selectFrom('items').select('id'))
        .compile(),
    );
    expect(q.sql.match(/"tenant_id" = \$/g)?.length).toBe(2);
  });

  it('Kysely outside a tenant transaction throws NO_TENANT_TRANSACTION', async () => {
    const db = await f.tenantry.withTenant(a, async (tx) => tx.db);
    await expect(db.selectFrom('items').selectAll().execute()).rejects.toMatchObject({ code: 'NO_TENANT_TRANSACTION' });
  });

  it('raw SQL still relies on RLS', async () => {
    const r = await f.tenantry.withTenant(b, (tx) => tx.query(sql`SELECT title FROM items`.compile(tx.db).sql));
    expect(r.rows).toEqual([{ title: 'bravo secret' }]);
  });
});

describe('tenant context', () => {
  it('transaction() needs a tenant context; there is no default tenant', async () => {
    await expect(f.tenantry.transaction(async () => 1)).rejects.toMatchObject({ code: 'NO_TENANT_CONTEXT' });
    const ctx = { id: a.id, slug: a.slug, tier: a.tier, plan: a.plan, status: a.status };
    const n = await withTenant(ctx, () => f.tenantry.transaction((tx) => tx.query('SELECT * FROM items')));
    expect(n.rowCount).toBe(3);
  });
});
