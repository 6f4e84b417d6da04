import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { type AppDB, appMigrations, createTenants } from '../../../test-support/fixture.ts';
import {
  contextOf,
  getTenant,
  postgresDialect,
  type TenantRecord,
  Tenantry,
  TenantryError,
  type TenantTransaction,
  withTenant,
} from '../src/index.ts';
import { prepareTenantQuery, type QueryParam } from '../src/kysely/prepared-query.ts';
import { KeyRing } from '../src/secrets/keys.ts';

/**
 * A TCP forwarder between pg and PostgreSQL that reads the frontend/backend protocol
 * (no TLS: pg only asks for it when the URL does). For each request the client ends
 * with Sync ('S') or sends as a simple Query ('Q') — one round trip each — it records
 * the SQL texts sent (Parse and Query messages), and counts the server's ReadyForQuery
 * ('Z') messages, which end every round trip.
 */
class ProtocolProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** SQL texts per round trip, in order. */
  requests: string[][] = [];
  readyForQuery = 0;
  #pending: string[] = [];

  constructor(upstreamHost: string, upstreamPort: number) {
    this.#server = createServer((client) => {
      const server = tcpConnect(upstreamPort, upstreamHost);
      this.#sockets.add(client).add(server);
      const fromClient = messageReader(true, (type, body) => this.#clientMessage(type, body));
      const fromServer = messageReader(false, (type) => {
        if (type === 'Z') this.readyForQuery++;
      });
      client.on('data', (chunk) => {
        fromClient(chunk);
        server.write(chunk);
      });
      server.on('data', (chunk) => {
        fromServer(chunk);
        client.write(chunk);
      });
      const close = () => {
        client.destroy();
        server.destroy();
      };
      client.on('close', close).on('error', close);
      server.on('close', close).on('error', close);
    });
  }

  #clientMessage(type: string, body: Buffer): void {
    if (type === 'P') {
      const nameEnd = body.indexOf(0);
      this.#pending.push(body.toString('utf8', nameEnd + 1, body.indexOf(0, nameEnd + 1)));
    } else if (type === 'Q') {
      this.requests.push([...this.#pending, body.toString('utf8', 0, body.indexOf(0))]);
      this.#pending = [];
    } else if (type === 'S') {
      this.requests.push(this.#pending);
      this.#pending = [];
    }
  }

  listen(): Promise<number> {
    return new Promise((resolve) => {
      this.#server.listen(0, '127.0.0.1', () => {
        const address = this.#server.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
  }

  reset(): void {
    this.requests = [];
    this.readyForQuery = 0;
    this.#pending = [];
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

/** Splits a protocol byte stream into messages; the client's first one (startup) has no type byte. */
function messageReader(startup: boolean, onMessage: (type: string, body: Buffer) => void): (chunk: Buffer) => void {
  let buffer = Buffer.alloc(0);
  let started = !startup;
  return (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (!started) {
        if (buffer.length < 4) return;
        const length = buffer.readInt32BE(0);
        if (buffer.length < length) return;
        buffer = buffer.subarray(length);
        started = true;
        continue;
      }
      if (buffer.length < 5) return;
      const length = buffer.readInt32BE(1);
      if (buffer.length < 1 + length) return;
      onMessage(String.fromCharCode(buffer[0] as number), buffer.subarray(5, 1 + length));
      buffer = buffer.subarray(1 + length);
    }
  };
}

let database: TestDatabase;
/** Runtime pool of exactly one connection: every transaction reuses the same backend. */
let tenantry: Tenantry<AppDB>;
let a: TenantRecord;
let b: TenantRecord;

function connect(pool: number, runtimeUrl?: string): Promise<Tenantry<AppDB>> {
  return Tenantry.connect<AppDB>({
    databaseUrl: database.url,
    secret: database.secret,
    roles: database.roles,
    migrations: appMigrations,
    pool: { max: pool },
    ...(runtimeUrl ? { runtimeUrl } : {}),
  });
}

beforeAll(async () => {
  database = await createTestDatabase('transactions');
  tenantry = await connect(1);
  await tenantry.setup();
  await tenantry.migrate();
  [a, b] = (await createTenants(tenantry, 'tx', 2)) as [TenantRecord, TenantRecord];
  // Rows that a connection still carrying a's context would reveal.
  await tenantry.transaction(a, (tx) =>
    tx.db
      .insertInto('items')
      .values([{ title: 'a seed 1' }, { title: 'a seed 2' }])
      .execute(),
  );
});

afterAll(async () => {
  await tenantry?.close();
  await database?.drop();
});

/** The backend pid of the transaction's connection. */
async function pidOf(tx: TenantTransaction<AppDB>): Promise<number> {
  const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]?.pid as number;
}

/**
 * The next checkout of the one-connection pool is the same backend, idle (not inside a
 * transaction), with no tenant context, no tenant statement timeout and no tenant rows visible.
 */
async function expectCleanConnection(pid: number): Promise<void> {
  const client = await tenantry.runtimePool.connect();
  try {
    expect(client.getTransactionStatus()).toBe('I');
    const who = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    expect(who.rows[0]?.pid).toBe(pid);
    const ctx = await client.query<{ ctx: string | null }>("SELECT current_setting('tenantry.ctx', true) AS ctx");
    expect(ctx.rows[0]?.ctx ?? '').toBe('');
    const timeout = await client.query<{ statement_timeout: string }>('SHOW statement_timeout');
    expect(timeout.rows[0]?.statement_timeout).toBe('0');
    const count = await client.query<{ n: string }>('SELECT count(*) AS n FROM items');
    expect(count.rows[0]?.n).toBe('0');
    expect(client.getTransactionStatus()).toBe('I');
  } finally {
    client.release();
  }
}

async function titlesOf(tenant: TenantRecord): Promise<string[]> {
  const { rows } = await tenantry.transaction(tenant, (tx) =>
    tx.query<{ title: string }>('SELECT title FROM items ORDER BY title'),
  );
  return rows.map((r) => r.title);
}

describe('the connection goes back to the pool clean', () => {
  it('after a committed transaction', async () => {
    let pid = 0;
    await tenantry.transaction(a, async (tx) => {
      pid = await pidOf(tx);
      await tx.query("INSERT INTO items (title) VALUES ('a committed')");
    });
    await expectCleanConnection(pid);
    expect(await titlesOf(a)).toContain('a committed');
  });

  it('after a first statement whose parameter cannot be sent: the error reaches the caller, nothing hangs', async () => {
    const unsendable = {
      toPostgres() {
        throw new Error('cannot be sent');
      },
    };
    const attempt = tenantry.transaction(a, (tx) => tx.query('SELECT $1::text AS v', [unsendable]));
    await expect(attempt).rejects.toThrow('cannot be sent');
    // Every connection of the pool still answers (a thrown send used to leave one waiting forever).
    const answers = await Promise.all(
      Array.from({ length: 4 }, () => tenantry.transaction(a, (tx) => tx.query<{ n: number }>('SELECT 1 AS n'))),
    );
    expect(answers.map((r) => r.rows[0]?.n)).toEqual([1, 1, 1, 1]);
  });

  it('after a callback that throws: rolled back, the error reaches the caller unchanged', async () => {
    let pid = 0;
    const boom = new Error('boom');
    await expect(
      tenantry.transaction(a, async (tx) => {
        pid = await pidOf(tx);
        await tx.query("INSERT INTO items (title) VALUES ('a thrown')");
        throw boom;
      }),
    ).rejects.toBe(boom);
    await expectCleanConnection(pid);
    expect(await titlesOf(a)).not.toContain('a thrown');
  });

  it('after an SQL error (division by zero)', async () => {
    let pid = 0;
    await expect(
      tenantry.transaction(a, async (tx) => {
        pid = await pidOf(tx);
        await tx.query("INSERT INTO items (title) VALUES ('a divided')");
        await tx.query('SELECT 1 / 0');
      }),
    ).rejects.toMatchObject({ code: '22012' });
    await expectCleanConnection(pid);
    expect(await titlesOf(a)).not.toContain('a divided');
  });

  it('after a statement aborted by the tenant’s statement timeout', async () => {
    const slow = await tenantry.tenants.create({ slug: 'tx-slow', name: 'Slow' });
    await tenantry.tenants.update(slow.id, { limits: { statementTimeoutMs: 100 } });
    let pid = 0;
    const error = await tenantry
      .transaction(slow, async (tx) => {
        pid = await pidOf(tx);
        await tx.query("INSERT INTO items (title) VALUES ('slow row')");
        await tx.query('SELECT pg_sleep(1)');
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TenantryError);
    expect(error).toMatchObject({ code: 'STATEMENT_TIMEOUT', status: 503 });
    await expectCleanConnection(pid);
    expect(await titlesOf(slow)).toEqual([]);
  });

  it('tenantry.query(): the implicit transaction commits a write, and a failure, a timeout or a refusal lands nothing', async () => {
    const one = await tenantry.tenants.create({ slug: 'tx-one-trip', name: 'One trip' });
    await tenantry.query(one, "INSERT INTO items (title) VALUES ('one-trip kept')");
    expect(await titlesOf(one)).toEqual(['one-trip kept']);
    // A statement that fails after its row was written: nothing of it commits.
    await expect(
      tenantry.query(
        one,
        "INSERT INTO items (title) SELECT x FROM (VALUES ('one-trip lost'), ('boom')) AS v (x) WHERE 1 / (length(x) - 4) <> 7",
      ),
    ).rejects.toMatchObject({ code: '22012' });
    // The context placed by the first message holds for the second: the tenant's timeout too.
    await tenantry.tenants.update(one.id, { limits: { statementTimeoutMs: 100 } });
    await expect(
      tenantry.query(one, "INSERT INTO items (title) SELECT 'one-trip slow' FROM pg_sleep(1)"),
    ).rejects.toMatchObject({ code: 'STATEMENT_TIMEOUT' });
    const stale = await tenantry.tenants.get(one.id);
    await tenantry.tenants.suspend(one.id);
    await expect(
      tenantry.query(stale, "INSERT INTO items (title) VALUES ('one-trip suspended')"),
    ).rejects.toMatchObject({ code: 'TENANT_SUSPENDED' });
    await tenantry.tenants.resume(one.id);
    expect(await titlesOf(one)).toEqual(['one-trip kept']);
  });

  it('after a refused context (suspended tenant): the failed BEGIN round trip is rolled back', async () => {
    // `stale` still says active, so only PostgreSQL's check at BEGIN can refuse it.
    const stale = await tenantry.tenants.create({ slug: 'tx-suspended', name: 'Suspended' });
    const suspended = await tenantry.tenants.suspend(stale.id);
    const { rows } = await tenantry.runtimePool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    let ran = false;
    await expect(
      tenantry.transaction(stale, async (tx) => {
        await tx.query("INSERT INTO items (title) VALUES ('must not land')");
        ran = true;
      }),
    ).rejects.toMatchObject({ code: 'TENANT_SUSPENDED' });
    expect(ran).toBe(false);
    await expectCleanConnection(rows[0]?.pid as number);
    // A context that already knows the tenant is suspended is refused before any round trip.
    await expect(tenantry.transaction(suspended, async () => 'never')).rejects.toMatchObject({
      code: 'TENANT_SUSPENDED',
    });
  });
});

describe('an SQL error swallowed by the callback', () => {
  it('does not commit half a transaction: COMMIT answers ROLLBACK and Tenantry throws', async () => {
    const error = await tenantry
      .transaction(a, async (tx) => {
        await tx.query("INSERT INTO items (title) VALUES ('half one')");
        try {
          await tx.query('SELECT 1 / 0');
        } catch {
          // swallowed on purpose: the transaction is aborted all the same
        }
        await tx.query("INSERT INTO items (title) VALUES ('half two')").catch(() => {});
        return 'looks fine';
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TenantryError);
    expect((error as TenantryError).code).toBe('TRANSACTION_ABORTED');
    expect((error as TenantryError).message).toMatch(/rolled back/);
    const titles = await titlesOf(a);
    expect(titles).not.toContain('half one');
    expect(titles).not.toContain('half two');
  });

  it('an error recovered with a savepoint commits the rest (the check is not over-eager)', async () => {
    const result = await tenantry.transaction(a, async (tx) => {
      await tx.query("INSERT INTO items (title) VALUES ('kept by savepoint')");
      await tx.query('SAVEPOINT s');
      await expect(tx.query('SELECT 1 / 0')).rejects.toMatchObject({ code: '22012' });
      await tx.query('ROLLBACK TO SAVEPOINT s');
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(await titlesOf(a)).toContain('kept by savepoint');
  });
});

describe('statement timeout of the tenant’s plan', () => {
  it('applies inside its transactions and not outside', async () => {
    const custom = await tenantry.tenants.create({
      slug: 'tx-timeout',
      name: 'Timeout',
      limits: { statementTimeoutMs: 1234 },
    });
    const show = (t: TenantRecord) =>
      tenantry.transaction(
        t,
        async (tx) => (await tx.query<{ v: string }>("SELECT current_setting('statement_timeout') AS v")).rows[0]?.v,
      );
    expect(await show(custom)).toBe('1234ms');
    expect(await show(b)).toBe('30s');
    await tenantry.tenants.update(custom.id, { limits: { statementTimeoutMs: 2500 } });
    expect(await show(custom)).toBe('2500ms');
    const outside = await tenantry.runtimePool.query<{ statement_timeout: string }>('SHOW statement_timeout');
    expect(outside.rows[0]?.statement_timeout).toBe('0');
  });
});

describe('concurrency', () => {
  it('200 interleaved transactions of 20 tenants each see only their own rows', async () => {
    const wide = await connect(20);
    try {
      const tenants = await createTenants(wide, 'conc', 20);
      const jobs = Array.from({ length: 200 }, (_, n) => ({ tenant: tenants[n % 20] as TenantRecord, n }));
      const results = await Promise.all(
        jobs.map(({ tenant, n }) =>
          wide.transaction(tenant, async (tx) => {
            await tx.query('SELECT pg_sleep($1)', [Math.random() * 0.01]);
            await tx.db
              .insertInto('items')
              .values({ title: `${tenant.slug}#${n}` })
              .execute();
            await tx.query('SELECT pg_sleep($1)', [Math.random() * 0.01]);
            const seen = await tx.query<{ tenant_id: string; title: string }>('SELECT tenant_id, title FROM items');
            const viaKysely = await tx.db.selectFrom('items').select(['tenant_id', 'title']).execute();
            return { tenant, n, seen: [...seen.rows, ...viaKysely], current: getTenant().id };
          }),
        ),
      );
      for (const { tenant, n, seen, current } of results) {
        expect(current).toBe(tenant.id);
        expect(seen.map((r) => r.title)).toContain(`${tenant.slug}#${n}`);
        for (const row of seen) {
          expect(row.tenant_id).toBe(tenant.id);
          expect(row.title.startsWith(`${tenant.slug}#`)).toBe(true);
        }
        expect(seen.length).toBeLessThanOrEqual(20);
      }
      for (const tenant of tenants) {
        const { rows } = await wide.transaction(tenant, (tx) =>
          tx.query<{ title: string }>('SELECT title FROM items ORDER BY title'),
        );
        const expected = jobs.filter((j) => j.tenant === tenant).map((j) => `${tenant.slug}#${j.n}`);
        expect(rows.map((r) => r.title)).toEqual(expected.sort());
      }
      const total = await wide.adminPool.query<{ n: string }>(
        'SELECT count(*) AS n FROM items WHERE tenant_id = ANY($1)',
        [tenants.map((t) => t.id)],
      );
      expect(total.rows[0]?.n).toBe('200');
    } finally {
      await wide.close();
    }
  });
});

describe('round trips', () => {
  let proxy: ProtocolProxy;
  let proxied: Tenantry<AppDB>;

  beforeAll(async () => {
    const upstream = new URL(database.url);
    proxy = new ProtocolProxy(upstream.hostname, Number(upstream.port || 5432));
    const port = await proxy.listen();
    const runtime = database.roles.runtime;
    const password = new KeyRing(database.secret).runtimePassword(runtime);
    proxied = await connect(
      1,
      `postgres://${runtime}:${encodeURIComponent(password)}@127.0.0.1:${port}${upstream.pathname}`,
    );
    // Warm up: the connection is opened and the runtime role checked once per Tenantry.
    await proxied.transaction(a, (tx) => tx.query('SELECT 1'));
  });

  afterAll(async () => {
    await proxied?.close();
    await proxy?.close();
  });

  it('a one-statement transaction costs 2 round trips: BEGIN + context + the statement, then COMMIT', async () => {
    proxy.reset();
    const { rows } = await proxied.transaction(a, (tx) => tx.query<{ n: string }>('SELECT count(*) AS n FROM items'));
    expect(Number(rows[0]?.n)).toBeGreaterThan(0);
    // The context statement is prepared once per connection: its text is parsed (and
    // seen here) only the first time, then executed by name.
    expect(proxy.requests).toHaveLength(2);
    expect(proxy.requests[0]?.[0]).toBe('BEGIN');
    expect(proxy.requests[0]?.at(-1)).toBe('SELECT count(*) AS n FROM items');
    expect(proxy.requests[0]?.length === 2 || proxy.requests[0]?.[1] === postgresDialect.enterSql).toBe(true);
    expect(proxy.requests[1]).toEqual(['COMMIT']);
    expect(proxy.readyForQuery).toBe(2);
    proxy.reset();
    await proxied.transaction(a, (tx) => tx.query('SELECT 1'));
    expect(proxy.requests).toEqual([['BEGIN', 'SELECT 1'], ['COMMIT']]);
  });

  it('tenantry.query() is a whole one-statement transaction in 1 round trip: context and statement, one implicit transaction', async () => {
    proxy.reset();
    const { rows } = await proxied.query<{ n: string }>(a, 'SELECT count(*) AS n FROM items');
    expect(Number(rows[0]?.n)).toBeGreaterThan(0);
    expect(proxy.requests).toEqual([['SELECT count(*) AS n FROM items']]);
    expect(proxy.readyForQuery).toBe(1);
    // A failing statement commits nothing, surfaces as usual and leaves the connection usable
    // (PostgreSQL ended the implicit transaction at the Sync: no ROLLBACK to send).
    proxy.reset();
    await expect(proxied.query(a, 'SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
    expect(proxy.requests).toEqual([['SELECT 1/0']]);
    const again = await proxied.query<{ n: string }>(a, 'SELECT count(*) AS n FROM items');
    expect(again.rows).toEqual(rows);
  });

  it('tenantry.query() takes a Kysely query compiled in the tenant context, still in 1 round trip', async () => {
    const compiled = withTenant(contextOf(a), () => proxied.db.selectFrom('items').select('title').compile());
    expect(compiled.sql).toMatch(/^select "title" from "items" where "items"."tenant_id" = \$1$/);
    proxy.reset();
    const own = await proxied.query<{ title: string }>(a, compiled);
    expect(own.rows.length).toBeGreaterThan(0);
    expect(proxy.requests).toEqual([[compiled.sql]]);
    // Compiled for A, run for B: the predicate names A, row-level security B, so nothing.
    expect((await proxied.query(b, compiled)).rows).toEqual([]);
    // Neither a transaction nor a tenant context while compiling: there is no default tenant.
    expect(() => proxied.db.selectFrom('items').select('title').compile()).toThrow(
      expect.objectContaining({ code: 'NO_TENANT_TRANSACTION' }),
    );
  });

  it('prepareTenantQuery() compiles once and fills in the values and the calling context’s tenant', async () => {
    const titled = prepareTenantQuery(proxied.db, (db, p: QueryParam<{ title: string; n: number }>) =>
      db.selectFrom('items').select(['title']).where('title', '=', p('title')).limit(p('n')),
    );
    const own = await proxied.transaction(a, (tx) => tx.query<{ title: string }>('SELECT title FROM items LIMIT 1'));
    const title = own.rows[0]?.title as string;
    const forA = withTenant(contextOf(a), () => titled({ title, n: 5 }));
    expect(forA.parameters).toEqual([a.id, title, 5]);
    expect((await proxied.query<{ title: string }>(a, forA)).rows.map((r) => r.title)).toContain(title);
    // The same template in B's context names B: A's title is not found there.
    const forB = withTenant(contextOf(b), () => titled({ title, n: 5 }));
    expect(forB.sql).toBe(forA.sql);
    expect(forB.parameters).toEqual([b.id, title, 5]);
    expect((await proxied.query(b, forB)).rows).toEqual([]);
    expect(() => titled({ title, n: 1 })).toThrow(expect.objectContaining({ code: 'NO_TENANT_CONTEXT' }));
    // A placeholder that does not become a parameter is a programming error, said at once.
    const dropped = prepareTenantQuery(proxied.db, (db, p: QueryParam<{ id: string }>) => {
      p('id');
      return db.selectFrom('items').select('id');
    });
    const inlined = prepareTenantQuery(proxied.db, (db, p: QueryParam<{ id: string }>) =>
      db
        .selectFrom('items')
        .select('id')
        .where(sql.raw<boolean>(p('id'))),
    );
    for (const misuse of [dropped, inlined]) {
      expect(() => withTenant(contextOf(a), () => misuse({ id: 'x' }))).toThrow(
        expect.objectContaining({ code: 'USAGE_ERROR' }),
      );
    }
  });

  it('the same through Kysely, one more round trip per further statement, none without a statement', async () => {
    proxy.reset();
    await proxied.transaction(a, (tx) => tx.db.selectFrom('items').select('title').execute());
    expect(proxy.requests).toHaveLength(2);
    expect(proxy.requests[0]?.[0]).toBe('BEGIN');
    expect(proxy.requests[0]?.at(-1)).toMatch(/^select "title" from "items" where "items"."tenant_id" = \$1$/);
    expect(proxy.readyForQuery).toBe(2);
    proxy.reset();
    await proxied.transaction(a, async (tx) => {
      await tx.query('SELECT 1');
      await tx.query('SELECT 2');
    });
    expect(proxy.requests).toHaveLength(3);
    expect(proxy.readyForQuery).toBe(3);
    proxy.reset();
    await proxied.transaction(a, async () => 'no statement');
    expect(proxy.requests).toHaveLength(0);
  });
});

describe('statements prepared by tenantry.query()', () => {
  /** The session's prepared statements with this text (run unprepared in the same session). */
  async function preparedCopies(db: Tenantry<AppDB>, tenant: TenantRecord, text: string): Promise<string[]> {
    const { rows } = await db.query<{ name: string }>(
      tenant,
      'SELECT name FROM pg_prepared_statements WHERE statement = $1',
      [text],
    );
    return rows.map((r) => r.name);
  }

  it('is parsed once per connection, then bound by name; every call sees its own tenant only, the generic plan too', async () => {
    await tenantry.query(b, "INSERT INTO items (title) VALUES ('b prepared')");
    const text = 'SELECT title FROM items WHERE tenant_id = $1 ORDER BY title';
    const own = { a: await titlesOf(a), b: await titlesOf(b) };
    expect(own.a.length).toBeGreaterThan(0);
    expect(own.b).toEqual(['b prepared']);
    // The round-trip proxy sees every Parse: the statement's text is sent once.
    const proxy = new ProtocolProxy(new URL(database.url).hostname, Number(new URL(database.url).port || 5432));
    const port = await proxy.listen();
    const password = new KeyRing(database.secret).runtimePassword(database.roles.runtime);
    const proxied = await connect(
      1,
      `postgres://${database.roles.runtime}:${encodeURIComponent(password)}@127.0.0.1:${port}${new URL(database.url).pathname}`,
    );
    try {
      // More than five runs: PostgreSQL then plans it once for any value (a generic plan).
      for (let i = 0; i < 8; i++) {
        for (const [tenant, titles] of [
          [a, own.a],
          [b, own.b],
        ] as const) {
          const { rows } = await proxied.query<{ title: string }>(tenant, {
            sql: text,
            parameters: [tenant.id],
            prepare: true,
          });
          expect(rows.map((r) => r.title)).toEqual(titles);
          // The other tenant's id as the value: row-level security still answers nothing.
          const other = tenant === a ? b : a;
          const cross = await proxied.query(tenant, { sql: text, parameters: [other.id], prepare: true });
          expect(cross.rows).toEqual([]);
        }
      }
      expect(proxy.requests.flat().filter((sent) => sent === text)).toHaveLength(1);
      expect(await preparedCopies(proxied, a, text)).toHaveLength(1);
    } finally {
      await proxied.close();
      await proxy.close();
    }
  });

  it('one removed by DEALLOCATE is prepared again, transparently; so is everything after DEALLOCATE ALL', async () => {
    const text = "SELECT count(*) AS n FROM items WHERE tenant_id = $1 AND title <> 'deallocated'";
    const count = async () =>
      Number((await tenantry.query<{ n: string }>(a, { sql: text, parameters: [a.id], prepare: true })).rows[0]?.n);
    const n = await count();
    expect(n).toBeGreaterThan(0);
    const [name] = await preparedCopies(tenantry, a, text);
    expect(name).toMatch(/^tenantry_q_/);
    await tenantry.query(a, `DEALLOCATE "${name}"`);
    expect(await preparedCopies(tenantry, a, text)).toEqual([]);
    expect(await count()).toBe(n);
    expect(await preparedCopies(tenantry, a, text)).toEqual([name]);
    await tenantry.query(a, 'DEALLOCATE ALL');
    expect(await count()).toBe(n);
    expect(await preparedCopies(tenantry, a, text)).toEqual([name]);
  });

  it('a migration that changes a prepared SELECT *’s columns: prepared again, the new shape answered', async () => {
    const text = 'SELECT * FROM items WHERE tenant_id = $1 ORDER BY title LIMIT 1';
    const columns = async () =>
      Object.keys((await tenantry.query(a, { sql: text, parameters: [a.id], prepare: true })).rows[0] ?? {});
    const before = await columns();
    expect(before).toContain('title');
    await tenantry.adminPool.query('ALTER TABLE items ADD COLUMN prepared_probe text');
    try {
      expect(await columns()).toEqual([...before, 'prepared_probe']);
    } finally {
      await tenantry.adminPool.query('ALTER TABLE items DROP COLUMN prepared_probe');
    }
    expect(await columns()).toEqual(before);
    expect(await preparedCopies(tenantry, a, text)).toHaveLength(1);
  });

  it('a first use that fails leaves one prepared copy, not one per attempt, and nothing committed', async () => {
    const text = 'INSERT INTO items (title) SELECT $2 WHERE 1 / $1::int > 0 RETURNING title';
    for (let i = 0; i < 3; i++) {
      await expect(tenantry.query(a, { sql: text, parameters: [0, 'never'], prepare: true })).rejects.toMatchObject({
        code: '22012',
      });
    }
    const { rows } = await tenantry.query<{ title: string }>(a, { sql: text, parameters: [1, 'once'], prepare: true });
    expect(rows).toEqual([{ title: 'once' }]);
    expect(await preparedCopies(tenantry, a, text)).toHaveLength(1);
    expect((await titlesOf(a)).filter((t) => t === 'never' || t === 'once')).toEqual(['once']);
  });

  it('schema tier: one prepared statement follows each tenant’s search_path to its own tables', async () => {
    const [s1, s2] = [
      await tenantry.tenants.create({ slug: 'tx-schema-1', name: 'S1', tier: 'schema' }),
      await tenantry.tenants.create({ slug: 'tx-schema-2', name: 'S2', tier: 'schema' }),
    ];
    await tenantry.query(s1, "INSERT INTO items (title) VALUES ('s1 row')");
    await tenantry.query(s2, "INSERT INTO items (title) VALUES ('s2 row')");
    const text = 'SELECT title FROM items ORDER BY title';
    for (let i = 0; i < 7; i++) {
      for (const [tenant, title] of [
        [s1, 's1 row'],
        [s2, 's2 row'],
        [a, undefined],
      ] as const) {
        const { rows } = await tenantry.query<{ title: string }>(tenant, { sql: text, parameters: [], prepare: true });
        const titles = rows.map((r) => r.title);
        if (title) expect(titles).toEqual([title]);
        else expect(titles).toEqual(await titlesOf(a));
      }
    }
  });
});

describe('the lazily opened transaction', () => {
  it('two first statements issued at once share one opening, and both see the tenant', async () => {
    const [x, y] = await tenantry.transaction(a, (tx) =>
      Promise.all([
        tx.query<{ n: string }>('SELECT count(*) AS n FROM items'),
        tx.query<{ t: string }>('SELECT 1 AS t'),
      ]),
    );
    expect(Number(x.rows[0]?.n)).toBeGreaterThan(0);
    expect(y.rows).toEqual([{ t: 1 }]);
  });

  it('a prepared context statement removed by DEALLOCATE ALL is prepared again, transparently', async () => {
    const pids = new Set<number>();
    for (let i = 0; i < 3; i++) {
      await tenantry.transaction(a, async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        pids.add(rows[0]?.pid as number);
        await tx.query('DEALLOCATE ALL');
      });
    }
    expect(pids.size).toBe(1); // pool of one: the same session each time
    const { rows } = await tenantry.transaction(a, (tx) => tx.query<{ n: string }>('SELECT count(*) AS n FROM items'));
    expect(Number(rows[0]?.n)).toBeGreaterThan(0);
  });
});
