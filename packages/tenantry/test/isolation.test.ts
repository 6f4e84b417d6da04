import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { CONTEXT_SETTING } from '../src/context/context-dialect.ts';
import { type IsolationTier, type TenantRecord, TenantryError, withTenant } from '../src/index.ts';

let f: Fixture;

beforeAll(async () => {
  f = await createFixture('isolation');
});

afterAll(async () => {
  await f?.close();
});

/** The core isolation suite, once per tier: the same application code must isolate on each. */
const TIERS: IsolationTier[] = ['pool', 'schema', 'database'];

describe.each(TIERS)('%s tier', (tier) => {
  let a: TenantRecord;
  let b: TenantRecord;

  /** A raw runtime-role connection to the database holding `t`'s rows (no Tenantry in between). */
  const runtimeClient = async (t: TenantRecord): Promise<pg.Client> => {
    const url = new URL(
      (f.tenantry.runtimePool as unknown as { options: { connectionString: string } }).options.connectionString,
    );
    if (t.databaseName) url.pathname = `/${t.databaseName}`;
    const c = new pg.Client({ connectionString: url.toString() });
    await c.connect();
    return c;
  };
  /** `items` where `t`'s rows are, schema-qualified for the schema tier. */
  const itemsOf = (t: TenantRecord) => (t.schemaName ? `"${t.schemaName}".items` : 'items');

  beforeAll(async () => {
    a = await f.tenantry.tenants.create({ slug: `iso-${tier}-a`, name: 'A', tier });
    b = await f.tenantry.tenants.create({ slug: `iso-${tier}-b`, name: 'B', tier });
    expect(a.tier).toBe(tier);
    await f.tenantry.transaction(a, (tx) =>
      tx.db
        .insertInto('items')
        .values([{ title: 'alpha one' }, { title: 'alpha two' }])
        .execute(),
    );
    await f.tenantry.transaction(b, (tx) => tx.db.insertInto('items').values({ title: 'bravo secret' }).execute());
  });

  describe('two tenants', () => {
    it('a query with no tenant filter returns only the caller’s rows (raw SQL and Kysely)', async () => {
      const raw = await f.tenantry.transaction(a, (tx) =>
        tx.query<{ title: string }>('SELECT title FROM items ORDER BY title'),
      );
      expect(raw.rows.map((r) => r.title)).toEqual(['alpha one', 'alpha two']);
      const viaKysely = await f.tenantry.transaction(b, (tx) => tx.db.selectFrom('items').select('title').execute());
      expect(viaKysely.map((r) => r.title)).toEqual(['bravo secret']);
    });

    it('insert with another tenant’s id is rejected by WITH CHECK', async () => {
      await expect(
        f.tenantry.transaction(a, (tx) =>
          tx.query('INSERT INTO items (tenant_id, title) VALUES ($1, $2)', [b.id, 'planted']),
        ),
      ).rejects.toMatchObject({ code: '42501' });
      const count = await f.tenantry.transaction(b, (tx) =>
        tx.query('SELECT 1 FROM items WHERE title = $1', ['planted']),
      );
      expect(count.rowCount).toBe(0);
    });

    it('update moving a row to another tenant is rejected, and an update cannot reach the other’s rows', async () => {
      await expect(
        f.tenantry.transaction(a, (tx) => tx.query('UPDATE items SET tenant_id = $1', [b.id])),
      ).rejects.toMatchObject({ code: '42501' });
      const touched = await f.tenantry.transaction(a, (tx) =>
        tx.query("UPDATE items SET title = 'pwned' WHERE title = 'bravo secret'"),
      );
      expect(touched.rowCount).toBe(0);
      const deleted = await f.tenantry.transaction(a, (tx) =>
        tx.query('DELETE FROM items WHERE tenant_id = $1', [b.id]),
      );
      expect(deleted.rowCount).toBe(0);
      const still = await f.tenantry.transaction(b, (tx) => tx.query<{ title: string }>('SELECT title FROM items'));
      expect(still.rows).toEqual([{ title: 'bravo secret' }]);
    });

    it('a composite foreign key cannot reference the other tenant’s row', async () => {
      const bItem = await f.tenantry.transaction(b, (tx) => tx.query<{ id: string }>('SELECT id FROM items'));
      const bId = bItem.rows[0]?.id as string;
      await expect(
        f.tenantry.transaction(a, (tx) =>
          tx.db.insertInto('comments').values({ item_id: bId, body: 'sneaky' }).execute(),
        ),
      ).rejects.toMatchObject({ code: '23503' });
    });
  });

  describe('forged and replayed context', () => {
    it('set_config with the other tenant’s id sees none of its rows', async () => {
      const attempt = f.tenantry.transaction(a, async (tx) => {
        await tx.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [`${b.id}.0.0.deadbeef`]);
        return tx.query<{ title: string }>('SELECT title FROM items');
      });
      await expect(attempt).rejects.toMatchObject({ code: 'INVALID_TENANT_CONTEXT' });
    });

    it('a context value copied from another connection does not work', async () => {
      // Capture B's verified session value from inside B's transaction…
      const stolen = await f.tenantry.transaction(b, (tx) =>
        tx.query<{ v: string }>(`SELECT current_setting('${CONTEXT_SETTING}') AS v`),
      );
      const value = stolen.rows[0]?.v as string;
      expect(value.startsWith(b.id)).toBe(true);
      // …and replay it inside A's transaction (another backend, another transaction).
      const replay = f.tenantry.transaction(a, async (tx) => {
        await tx.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [value]);
        return tx.query<{ title: string }>('SELECT title FROM items');
      });
      await expect(replay).rejects.toBeInstanceOf(TenantryError);
      // Replaying on the very same backend in a later transaction fails too (bound to the transaction).
      const sameBackend = await runtimeClient(a);
      try {
        await sameBackend.query('BEGIN');
        await sameBackend.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [value]);
        await expect(sameBackend.query('SELECT title FROM items')).rejects.toMatchObject({ code: 'TN001' });
      } finally {
        await sameBackend.query('ROLLBACK');
        await sameBackend.end();
      }
    });

    it('an entry token from another connection is refused by enter()', async () => {
      const other = await runtimeClient(b);
      const mine = await runtimeClient(b);
      try {
        const { mintContextToken } = await import('../src/context/context-token.ts');
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
        await expect(mine.query('SELECT tenantry_context.enter($1, NULL)', [token])).rejects.toMatchObject({
          code: 'TN001',
        });
        await mine.query('ROLLBACK');
      } finally {
        await other.end();
        await mine.end();
      }
    });

    it('the runtime role cannot read the control plane or the context key', async () => {
      const tables = ['tenantry.tenants', 'tenantry.context_key'];
      if (tier !== 'database') tables.push('tenantry.placements', 'tenantry.audit_log', 'tenantry.targets');
      for (const table of tables) {
        await expect(f.tenantry.transaction(a, (tx) => tx.query(`SELECT * FROM ${table}`))).rejects.toMatchObject({
          code: '42501',
        });
      }
    });

    it('without a context, the runtime role sees no tenant rows at all', async () => {
      const c = await runtimeClient(a);
      try {
        expect((await c.query(`SELECT * FROM ${itemsOf(a)}`)).rowCount).toBe(0);
        // No verified tenant: the default tenant_id is NULL, which RLS (and NOT NULL) refuse.
        await expect(c.query(`INSERT INTO ${itemsOf(a)} (title) VALUES ('x')`)).rejects.toMatchObject({
          code: expect.stringMatching(/^(42501|23502)$/),
        });
      } finally {
        await c.end();
      }
    });
  });

  describe('automatic tenant filter', () => {
    it('adds the tenant predicate to select, update and delete, and tenant_id to inserts', async () => {
      const compiled = await f.tenantry.transaction(a, async (tx) => ({
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
      const rows = await f.tenantry.transaction(a, async (tx) => {
        await tx.db.insertInto('items').values({ title: 'alpha three' }).execute();
        const n = await tx.db.updateTable('items').set({ description: 'seen' }).executeTakeFirst();
        expect(n.numUpdatedRows).toBe(3n);
        return tx.db.selectFrom('items').select(['title', 'description']).orderBy('title').execute();
      });
      expect(rows.map((r) => r.title)).toEqual(['alpha one', 'alpha three', 'alpha two']);
      const bRows = await f.tenantry.transaction(b, (tx) => tx.db.selectFrom('items').select('description').execute());
      expect(bRows).toEqual([{ description: null }]);
    });

    it('a subquery on a tenant table gets the predicate too', async () => {
      const q = await f.tenantry.transaction(a, async (tx) =>
        tx.db
          .selectFrom('comments')
          .select('body')
          .where('item_id', 'in', (eb) => eb.selectFrom('items').select('id'))
          .compile(),
      );
      expect(q.sql.match(/"tenant_id" = \$/g)?.length).toBe(2);
    });

    it('Kysely outside a tenant transaction throws NO_TENANT_TRANSACTION', async () => {
      const db = await f.tenantry.transaction(a, async (tx) => tx.db);
      await expect(db.selectFrom('items').selectAll().execute()).rejects.toMatchObject({
        code: 'NO_TENANT_TRANSACTION',
      });
    });

    it('raw SQL still relies on RLS', async () => {
      const r = await f.tenantry.transaction(b, (tx) => tx.query(sql`SELECT title FROM items`.compile(tx.db).sql));
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

  it('session state that injected SQL leaves on a pooled connection does not reach the next tenant', async () => {
    // No temporary objects: a temp table would outlive the transaction on the connection and
    // could shadow `items` for whoever gets the connection next.
    await expect(
      f.tenantry.transaction(b, (tx) => tx.query('CREATE TEMP TABLE items (tenant_id uuid, title text)')),
    ).rejects.toMatchObject({ code: '42501' });
    // A session-level search_path (not LOCAL) survives the transaction on that backend…
    const pid = await f.tenantry.transaction(b, async (tx) => {
      await tx.query(`SET search_path TO ${b.schemaName ? `"${b.schemaName}"` : 'public'}, public`);
      return (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    });
    // …but the next tenant on the same backend gets its own, set in its own transaction.
    const next = await f.tenantry.transaction(a, (tx) =>
      tx.query<{ pid: number; path: string; n: string }>(
        "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS path, (SELECT count(*) FROM items)::text AS n",
      ),
    );
    if (next.rows[0]?.pid === pid) {
      expect(next.rows[0]?.path).toBe(`${a.schemaName ?? 'public'}, pg_temp`);
    }
    expect(next.rows[0]?.n).toBe('3');
  });

  it('reaching for another tenant’s copy of the tables by name finds nothing', async () => {
    if (tier === 'pool') return; // one shared copy: covered by the tests above
    if (tier === 'database') {
      // B's database is not even reachable from A's connection: another database.
      const other = await f.tenantry.transaction(a, (tx) => tx.query('SELECT current_database() AS db'));
      expect(other.rows[0]?.db).toBe(a.databaseName);
      expect(a.databaseName).not.toBe(b.databaseName);
      return;
    }
    const where = await f.tenantry.transaction(a, (tx) =>
      tx.query<{ path: string; n: string }>(
        `SELECT current_setting('search_path') AS path, count(*) AS n FROM ${itemsOf(b)}`,
      ),
    );
    // The schema tier keeps RLS as defence in depth: B's schema is visible, its rows are not…
    expect(where.rows[0]?.n).toBe('0');
    // …and A cannot plant its own rows in a copy that is not its own: B's schema, or the
    // shared tables (the policy of each copy accepts only the tenants that live in it).
    for (const elsewhere of [itemsOf(b), 'public.items']) {
      await expect(
        f.tenantry.transaction(a, (tx) => tx.query(`INSERT INTO ${elsewhere} (title) VALUES ('planted')`)),
      ).rejects.toMatchObject({ code: '42501' });
    }
    expect(where.rows[0]?.path).toBe(`${a.schemaName}, pg_temp`);
  });
});
