import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, serverUrl, type TestDatabase } from '../../../test-support/database.ts';
import { type AppDB, appMigrations } from '../../../test-support/fixture.ts';
import { hasPgBouncer, PGBOUNCER_MISSING, type PgBouncer, startPgBouncer } from '../../../test-support/pgbouncer.ts';
import { CONTEXT_SETTING } from '../src/context/context-dialect.ts';
import { mintContextToken } from '../src/context/context-token.ts';
import { type TenantRecord, Tenantry } from '../src/index.ts';
import { KeyRing } from '../src/secrets/keys.ts';

/**
 * Tenant isolation through a real PgBouncer in transaction mode, where consecutive
 * transactions of one client connection run on whichever server connection is free.
 * Session-level tenant scoping (`SET app.tenant`, `SET search_path`: django-tenants,
 * Apartment) reads other tenants' data there; Tenantry keeps tenant state
 * transaction-local and verified by PostgreSQL, so it must show no leak at all.
 */

if (!hasPgBouncer) console.warn(`pgbouncer.test.ts: ${PGBOUNCER_MISSING}`);

/** Server connections PgBouncer keeps per database and user: far fewer than clients. */
const POOL_SIZE = 3;

/** mulberry32: a seeded generator, so a failing load can be replayed with its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The title every row gets: its tenant first, so a row in the wrong place shows whose it is. */
const tag = (tenantId: string, label: string | number) => `${tenantId}:${label}`;

const runtimeCode = (e: unknown) => (e as { code?: string }).code;

/**
 * The naive scoping: each client sets its tenant with session-level `SET` (the setting
 * and the `search_path` to its schema), then queries, as separate statements, the way
 * an ORM hook does at the start of a request. Counts reads that saw another client's.
 */
async function naiveScoping(
  connect: () => Promise<pg.Client>,
  clients: number,
  rounds: number,
): Promise<{ reads: number; settingLeaks: number; rowLeaks: number }> {
  const conns = await Promise.all(Array.from({ length: clients }, connect));
  let reads = 0;
  let settingLeaks = 0;
  let rowLeaks = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      await Promise.all(
        conns.map(async (c, i) => {
          await c.query(`SET app.tenant = 'naive_${i}'`);
          await c.query(`SET search_path TO naive_${i}`);
        }),
      );
      const seen = await Promise.all(
        conns.map((c) =>
          c.query<{ tenant: string | null; owners: string[] | null }>(
            `SELECT current_setting('app.tenant', true) AS tenant,
                    (SELECT array_agg(owner) FROM naive_accounts) AS owners`,
          ),
        ),
      );
      seen.forEach((r, i) => {
        const row = r.rows[0];
        const mine = `naive_${i}`;
        reads++;
        if (row?.tenant && row.tenant !== mine) settingLeaks++;
        if (row?.owners?.some((o) => o !== mine && o.startsWith('naive_'))) rowLeaks++;
      });
    }
  } finally {
    await Promise.all(conns.map((c) => c.end()));
  }
  return { reads, settingLeaks, rowLeaks };
}

describe.skipIf(!hasPgBouncer)('through PgBouncer in transaction mode', () => {
  let db: TestDatabase;
  let bouncer: PgBouncer;
  let tenantry: Tenantry<AppDB>;
  /** A raw runtime-role connection through the pooler, no Tenantry in between. */
  const runtimeViaBouncer = async () => {
    const c = new pg.Client({ connectionString: bouncer.url(db.name, db.roles.runtime) });
    await c.connect();
    return c;
  };
  const adminQuery = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return await c.query<R>(text, values);
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    db = await createTestDatabase('pgbouncer');
    bouncer = await startPgBouncer({
      upstream: serverUrl(),
      // The password setup() gives the runtime role, derived from the secret.
      users: { [db.roles.runtime]: new KeyRing(db.secret).runtimePassword(db.roles.runtime) },
      poolSize: POOL_SIZE,
    });
    tenantry = await Tenantry.connect<AppDB>({
      databaseUrl: db.url,
      runtimeUrl: bouncer.url(db.name, db.roles.runtime),
      secret: db.secret,
      roles: db.roles,
      migrations: appMigrations,
      // Many more client connections than PgBouncer has server connections.
      pool: { max: 24 },
      contextBinding: 'pooler',
      // PgBouncer < 1.21 cannot carry a named prepared statement from one transaction to the next.
      prepareContextStatement: false,
    });
    await tenantry.setup();
    await tenantry.migrate();
    // What is tested is which rows a transaction sees, not their durability: without this,
    // a flush of the WAL per commit bounds the load to a few hundred transactions a second
    // over three server connections. (Server connections open later, so they all get it.)
    await adminQuery(`ALTER ROLE "${db.roles.runtime}" IN DATABASE "${db.name}" SET synchronous_commit = off`);
  });

  afterAll(async () => {
    await tenantry?.close();
    await bouncer?.stop();
    await db?.drop();
  });

  it('is a real transaction-mode pooler: clients share a few backends, none of them the pid a client was told', async () => {
    const clients = await Promise.all(Array.from({ length: 3 * POOL_SIZE }, runtimeViaBouncer));
    try {
      // All at once and each holding its server a while: every server connection is in use.
      const seen = await Promise.all(
        clients.map((c) => c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)')),
      );
      const backends = new Set(seen.map((r) => r.rows[0]?.pid));
      // At most the pool size (fewer when a slow machine lets one backend finish early).
      expect(backends.size).toBeGreaterThan(0);
      expect(backends.size).toBeLessThanOrEqual(POOL_SIZE);
      expect(backends.size).toBeLessThan(clients.length);
      for (const c of clients) expect(backends.has((c as unknown as { processID: number }).processID)).toBe(false);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  describe('counter-example: session-level SET (django-tenants, Apartment)', () => {
    const CLIENTS = 24;

    beforeAll(async () => {
      const ddl = ['CREATE TABLE public.naive_accounts (owner text)', "INSERT INTO public.naive_accounts VALUES ('-')"];
      for (let i = 0; i < CLIENTS; i++) {
        ddl.push(`CREATE SCHEMA naive_${i}`);
        ddl.push(`CREATE TABLE naive_${i}.naive_accounts AS SELECT 'naive_${i}'::text AS owner`);
      }
      await adminQuery(ddl.join(';\n'));
    });

    it('reads another client’s tenant behind PgBouncer, and never on direct connections', async () => {
      const viaBouncer = await naiveScoping(
        async () => {
          const c = new pg.Client({ connectionString: bouncer.url(db.name) });
          await c.connect();
          return c;
        },
        CLIENTS,
        5,
      );
      console.log('naive session SET through PgBouncer (transaction mode):', viaBouncer);
      // At most POOL_SIZE clients can find their own SET on the server their SELECT lands on.
      expect(viaBouncer.settingLeaks).toBeGreaterThan(0);
      expect(viaBouncer.rowLeaks).toBeGreaterThan(0);

      // The same code on a connection per client: it is the pooler that breaks it.
      const direct = await naiveScoping(
        async () => {
          const c = new pg.Client({ connectionString: db.url });
          await c.connect();
          return c;
        },
        CLIENTS,
        2,
      );
      expect(direct).toEqual({ reads: CLIENTS * 2, settingLeaks: 0, rowLeaks: 0 });
    });
  });

  describe('core isolation checks', () => {
    let a: TenantRecord;
    let b: TenantRecord;
    let s: TenantRecord;

    beforeAll(async () => {
      a = await tenantry.tenants.create({ slug: 'core-a', name: 'A' });
      b = await tenantry.tenants.create({ slug: 'core-b', name: 'B' });
      s = await tenantry.tenants.create({ slug: 'core-s', name: 'S', tier: 'schema' });
      for (const t of [a, b, s]) {
        await tenantry.transaction(t, (tx) =>
          tx.db
            .insertInto('items')
            .values([{ title: tag(t.id, 'one') }, { title: tag(t.id, 'two') }])
            .execute(),
        );
      }
    });

    it('a query with no tenant filter returns only the caller’s rows, in both tiers', async () => {
      for (const t of [a, b, s]) {
        const rows = await tenantry.transaction(t, (tx) =>
          tx.query<{ tenant_id: string; title: string }>('SELECT tenant_id, title FROM items ORDER BY title'),
        );
        expect(rows.rows).toEqual([
          { tenant_id: t.id, title: tag(t.id, 'one') },
          { tenant_id: t.id, title: tag(t.id, 'two') },
        ]);
      }
    });

    it('inserting with another tenant’s id is rejected by WITH CHECK', async () => {
      for (const [me, other] of [
        [a, b],
        [s, a],
      ] as const) {
        await expect(
          tenantry.transaction(me, (tx) =>
            tx.query('INSERT INTO items (tenant_id, title) VALUES ($1, $2)', [other.id, tag(other.id, 'planted')]),
          ),
        ).rejects.toMatchObject({ code: '42501' });
      }
    });

    it('a forged or replayed session value is refused', async () => {
      await expect(
        tenantry.transaction(a, async (tx) => {
          await tx.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [`${b.id}.0.0.deadbeef`]);
          return tx.query('SELECT title FROM items');
        }),
      ).rejects.toMatchObject({ code: 'INVALID_TENANT_CONTEXT' });
      const stolen = await tenantry.transaction(b, (tx) =>
        tx.query<{ v: string }>(`SELECT current_setting('${CONTEXT_SETTING}') AS v`),
      );
      const value = stolen.rows[0]?.v as string;
      // Through the pooler the replay may even land on the backend that issued it: still
      // refused, the value is bound to that transaction.
      for (let i = 0; i < 2 * POOL_SIZE; i++) {
        await expect(
          tenantry.transaction(a, async (tx) => {
            await tx.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [value]);
            return tx.query('SELECT title FROM items');
          }),
        ).rejects.toMatchObject({ code: 'INVALID_TENANT_CONTEXT' });
      }
    });

    it('an unbound (pid 0) token is accepted only while fresh, signed with the key, and for pid 0', async () => {
      const key = new KeyRing(db.secret).key('context-hmac');
      const c = await runtimeViaBouncer();
      const enter = async (token: string) => {
        await c.query('BEGIN');
        try {
          await c.query('SELECT tenantry_context.enter($1, NULL)', [token]);
          return (await c.query<{ title: string }>('SELECT title FROM items ORDER BY title')).rows.map((r) => r.title);
        } finally {
          await c.query('ROLLBACK');
        }
      };
      try {
        expect(await enter(mintContextToken(key, 'work', a.id, 0, Date.now() + 10_000))).toEqual([
          tag(a.id, 'one'),
          tag(a.id, 'two'),
        ]);
        const refused = [
          mintContextToken(key, 'work', a.id, 0, Date.now() - 1), // expired: its lifetime is now the binding
          mintContextToken(new KeyRing('x'.repeat(40)).key('context-hmac'), 'work', a.id, 0, Date.now() + 10_000),
          // pid-bound to the pid PgBouncer made up for this client: no backend has it
          mintContextToken(key, 'work', a.id, (c as unknown as { processID: number }).processID, Date.now() + 10_000),
        ];
        for (const token of refused) await expect(enter(token)).rejects.toMatchObject({ code: 'TN001' });
      } finally {
        await c.end();
      }
    });

    it('the runtime role reaches no control-plane table through the pooler', async () => {
      for (const table of ['tenantry.tenants', 'tenantry.context_key', 'tenantry.placements']) {
        await expect(tenantry.transaction(a, (tx) => tx.query(`SELECT * FROM ${table}`))).rejects.toMatchObject({
          code: '42501',
        });
      }
    });

    it('in session binding, Tenantry behind PgBouncer fails closed instead of leaking', async () => {
      // Same database and roles; the token carries the pid PgBouncer reported, which is
      // not the server process that runs the transaction (allow_unbound is on here, too).
      const bound = await Tenantry.connect<AppDB>({
        databaseUrl: db.url,
        runtimeUrl: bouncer.url(db.name, db.roles.runtime),
        secret: db.secret,
        roles: db.roles,
        migrations: appMigrations,
        contextBinding: 'session',
        prepareContextStatement: false,
      });
      try {
        for (const t of [a, s]) {
          for (let i = 0; i < 5; i++) {
            await expect(bound.transaction(t, (tx) => tx.query('SELECT title FROM items'))).rejects.toMatchObject({
              code: 'INVALID_TENANT_CONTEXT',
            });
          }
        }
      } finally {
        await bound.close();
      }
    });
  });

  it('a concurrent random load of 5,000 transactions over 20 tenants has no leak, and leaves nothing behind', async () => {
    const tenants: TenantRecord[] = [];
    for (let i = 0; i < 20; i++) {
      const tier = i % 2 === 0 ? 'pool' : 'schema';
      tenants.push(await tenantry.tenants.create({ slug: `load-${i}`, name: `Load ${i}`, tier }));
    }
    const seed = Number(process.env.TENANTRY_LOAD_SEED ?? Date.now() % 2 ** 31);
    const rnd = random(seed);
    const TRANSACTIONS = 5_000;
    const WORKERS = 64;
    const committed = new Map<string, number>(tenants.map((t) => [t.id, 0]));
    const leaks: string[] = [];
    const failures: string[] = [];
    let started = 0;
    let rowsRead = 0;
    class Abort extends Error {}
    // A pause inside a transaction, so other clients' statements interleave on PgBouncer's
    // few server connections.
    const pause = () => new Promise((r) => (rnd() < 0.8 ? setImmediate(r) : setTimeout(r, 1)));

    const one = async (n: number) => {
      const t = tenants[Math.floor(rnd() * tenants.length)] as TenantRecord;
      const kind = rnd();
      const leak = (what: string) => leaks.push(`tx ${n} (${t.slug}, ${t.tier}): ${what}`);
      try {
        await tenantry.transaction(t, async (tx) => {
          const who = await tx.query<{ id: string | null; path: string }>(
            `SELECT tenantry_context.current_tenant_id() AS id, current_setting('search_path') AS path`,
          );
          if (who.rows[0]?.id !== t.id) leak(`current_tenant_id() is ${who.rows[0]?.id}`);
          // Set transaction-locally for every tier, temporary objects last.
          const path = `${t.schemaName ?? 'public'}, pg_temp`;
          if (who.rows[0]?.path !== path) leak(`search_path is ${who.rows[0]?.path}`);
          await pause();
          if (kind < 0.6) {
            const inserted = await tx.db
              .insertInto('items')
              .values({ title: tag(t.id, n) })
              .returning(['tenant_id', 'title'])
              .executeTakeFirstOrThrow();
            if (inserted.tenant_id !== t.id) leak(`insert landed as ${inserted.tenant_id}`);
            await pause();
          }
          const rows = await tx.query<{ tenant_id: string; title: string }>('SELECT tenant_id, title FROM items');
          rowsRead += rows.rows.length;
          for (const r of rows.rows) {
            if (r.tenant_id !== t.id || !r.title.startsWith(`${t.id}:`)) leak(`read ${r.tenant_id} ${r.title}`);
          }
          // Rolled back: its insert must never be seen or counted.
          if (kind >= 0.5 && kind < 0.6) throw new Abort();
        });
        if (kind < 0.5) committed.set(t.id, (committed.get(t.id) ?? 0) + 1);
      } catch (error) {
        if (!(error instanceof Abort)) failures.push(`tx ${n} (${t.slug}): ${runtimeCode(error)} ${error}`);
      }
    };
    const began = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (started < TRANSACTIONS) await one(started++);
      }),
    );
    const ms = performance.now() - began;
    console.log(
      `PgBouncer load: ${TRANSACTIONS} transactions, ${tenants.length} tenants, ${WORKERS} workers, ` +
        `${tenantry.config.pool.max} client connections over ${POOL_SIZE} server connections, seed ${seed}: ` +
        `${leaks.length} leaks, ${failures.length} failures, ${rowsRead} rows read, ${Math.round(ms)} ms`,
    );
    expect(failures.slice(0, 5)).toEqual([]);
    expect(leaks.slice(0, 5)).toEqual([]);

    // Every write landed with its tenant, in its tier's table, and only the committed ones.
    const where = new Map<string, string>([['public', 'pool']]);
    for (const t of tenants) if (t.schemaName) where.set(t.schemaName, t.id);
    const counted = new Map<string, number>();
    for (const [schema, owner] of where) {
      const { rows } = await adminQuery<{ tenant_id: string; title: string }>(
        `SELECT tenant_id, title FROM "${schema}".items`,
      );
      for (const r of rows) {
        if (!r.title.startsWith(`${r.tenant_id}:`)) leaks.push(`row ${r.title} stored as ${r.tenant_id}`);
        if (owner !== 'pool' && r.tenant_id !== owner) leaks.push(`row of ${r.tenant_id} in ${schema}`);
        counted.set(r.tenant_id, (counted.get(r.tenant_id) ?? 0) + 1);
      }
    }
    expect(leaks.slice(0, 5)).toEqual([]);
    for (const t of tenants) expect(counted.get(t.id) ?? 0, t.slug).toBe(committed.get(t.id));

    // What the server connections carry once the load is over: nothing a client could see.
    const c = await runtimeViaBouncer();
    try {
      const others = await Promise.all(Array.from({ length: 2 * POOL_SIZE }, runtimeViaBouncer));
      try {
        const seen = await Promise.all(
          [c, ...others].map((o) =>
            o.query<{ n: string; ctx: string | null; pid: number }>(
              `SELECT (SELECT count(*) FROM public.items) AS n, current_setting('${CONTEXT_SETTING}', true) AS ctx,
                      pg_backend_pid() AS pid, pg_sleep(0.01)`,
            ),
          ),
        );
        expect(new Set(seen.map((r) => r.rows[0]?.pid)).size).toBe(POOL_SIZE);
        for (const r of seen) expect({ n: r.rows[0]?.n, ctx: r.rows[0]?.ctx ?? '' }).toEqual({ n: '0', ctx: '' });
      } finally {
        await Promise.all(others.map((o) => o.end()));
      }
    } finally {
      await c.end();
    }
  }, 180_000); // a few hundred transactions a second on a small, busy CI machine
});

describe('an unbound (pid 0) token without pooler binding', () => {
  let db: TestDatabase;
  let tenantry: Tenantry;

  beforeAll(async () => {
    db = await createTestDatabase('pid0');
    tenantry = await Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles });
    await tenantry.setup();
  });

  afterAll(async () => {
    await tenantry?.close();
    await db?.drop();
  });

  it('is refused by enter() when contextBinding is session (the default)', async () => {
    expect(tenantry.config.contextBinding).toBe('session');
    const t = await tenantry.tenants.create({ slug: 'pid0', name: 'Pid 0' });
    const key = new KeyRing(db.secret).key('context-hmac');
    const url = new URL(db.url);
    url.username = db.roles.runtime;
    url.password = new KeyRing(db.secret).runtimePassword(db.roles.runtime);
    const c = new pg.Client({ connectionString: url.toString() });
    await c.connect();
    try {
      const enter = async (pid: number) => {
        await c.query('BEGIN');
        try {
          return await c.query('SELECT tenantry_context.enter($1, NULL)', [
            mintContextToken(key, 'work', t.id, pid, Date.now() + 10_000),
          ]);
        } finally {
          await c.query('ROLLBACK');
        }
      };
      await expect(enter(0)).rejects.toMatchObject({ code: 'TN001' });
      // The same token bound to this connection's backend is fine: only the pid made the difference.
      await expect(enter((c as unknown as { processID: number }).processID)).resolves.toBeDefined();
    } finally {
      await c.end();
    }
  });
});
