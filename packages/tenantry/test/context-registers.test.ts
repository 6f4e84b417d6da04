import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppDB, appMigrations, createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { CONTEXT_SETTING, postgresDialect } from '../src/context/context-dialect.ts';
import { type ContextPurpose, mintContextToken } from '../src/context/context-token.ts';
import { type TenantRecord, Tenantry } from '../src/index.ts';
import { KeyRing } from '../src/secrets/keys.ts';

/**
 * The surfaces the fast context opens (docs/security-model.md, "The verified context"):
 * the per-session registers `enter()` writes and policies read, and the one-time session
 * secret that replaces the signed token after a session's first transaction. Each test works
 * on a raw runtime-role connection, as injected SQL would.
 */
let f: Fixture;
let a: TenantRecord;
let b: TenantRecord;
let key: Buffer;
const clients: pg.Client[] = [];

beforeAll(async () => {
  f = await createFixture('ctxregs');
  key = new KeyRing(f.database.secret).key('context-hmac');
  a = await f.tenantry.tenants.create({ slug: 'reg-a', name: 'A' });
  b = await f.tenantry.tenants.create({ slug: 'reg-b', name: 'B' });
  await f.tenantry.transaction(a, (tx) => tx.db.insertInto('items').values({ title: 'alpha' }).execute());
  await f.tenantry.transaction(b, (tx) => tx.db.insertInto('items').values({ title: 'bravo' }).execute());
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await f?.close();
});

async function runtimeClient(): Promise<pg.Client> {
  const url = (f.tenantry.runtimePool as unknown as { options: { connectionString: string } }).options.connectionString;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  clients.push(c);
  return c;
}

const pidOf = (c: pg.Client) => (c as unknown as { processID: number }).processID;
const signed = (c: pg.Client, t: TenantRecord) => mintContextToken(key, 'work', t.id, pidOf(c), Date.now() + 10_000);
const titles = async (c: pg.Client) => (await c.query<{ title: string }>('SELECT title FROM items')).rows;

/**
 * The ways into a context: `enter(token, next_secret)` itself, and the dialect's statement
 * (`enter(token, next_secret, shared, tenant_id, secret)`) given a token, or given a session
 * token's tenant and secret apart, as Tenantry sends its common call. All must keep every
 * rule of the secret.
 */
const FORMS = {
  'enter(token, next)': (c: pg.Client, token: string, next: string | null) =>
    c.query('SELECT tenantry_context.enter($1, $2::int8)', [token, next]),
  "the dialect's statement, with the token": (c: pg.Client, token: string, next: string | null) =>
    c.query(postgresDialect.enterSql, [
      token,
      next,
      f.tenantry.config.tenantSchema,
      token.split('.')[2],
      null,
      null,
      null,
      null,
    ]),
  // What Tenantry sends: a session token's tenant and secret passed apart (the common call).
  "the dialect's statement, as Tenantry sends it": (c: pg.Client, token: string, next: string | null) => {
    const [form, purpose, tenantId, secret] = token.split('.');
    const values = postgresDialect.enterValues?.({
      purpose: purpose as ContextPurpose,
      tenantId: tenantId ?? '',
      secret: form === 's1' ? secret : undefined,
      nextSecret: next,
      sharedSchema: f.tenantry.config.tenantSchema,
      signedToken: () => token,
    });
    return c.query(postgresDialect.enterSql, values);
  },
};
let call = FORMS['enter(token, next)'];

/** BEGIN and enter `t` with `token`, storing `next` as the session's next secret. */
async function enter(c: pg.Client, token: string, next: string | null = null): Promise<void> {
  await c.query('BEGIN');
  await call(c, token, next);
}

describe.each(Object.keys(FORMS) as (keyof typeof FORMS)[])('the one-time session secret, through %s', (form) => {
  beforeAll(() => {
    call = FORMS[form];
  });
  afterAll(() => {
    call = FORMS['enter(token, next)'];
  });

  it('enters with the secret the previous enter() stored, once', async () => {
    const c = await runtimeClient();
    await enter(c, signed(c, a), '1234567890123');
    expect(await titles(c)).toEqual([{ title: 'alpha' }]);
    await c.query('COMMIT');
    await enter(c, `s1.work.${a.id}.1234567890123`, '-42');
    expect(await titles(c)).toEqual([{ title: 'alpha' }]);
    await c.query('COMMIT');
    // Spent: the same value again is refused, and the refusal destroys the next secret too.
    await c.query('BEGIN');
    await expect(call(c, `s1.work.${a.id}.1234567890123`, '7')).rejects.toMatchObject({ code: 'TN001' });
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    await expect(call(c, `s1.work.${b.id}.-42`, '7')).rejects.toMatchObject({
      code: 'TN001',
    });
    await c.query('ROLLBACK');
    // A signed token still works and starts a new chain.
    await enter(c, signed(c, b), '99');
    expect(await titles(c)).toEqual([{ title: 'bravo' }]);
    await c.query('COMMIT');
  });

  it('a secret is spent even when enter() then refuses (suspended tenant)', async () => {
    const c = await runtimeClient();
    const gone = await f.tenantry.tenants.create({ slug: `reg-suspended-${form.length}`, name: 'S' });
    await enter(c, signed(c, a), '31337');
    await c.query('COMMIT');
    await f.tenantry.tenants.suspend(gone.id);
    await c.query('BEGIN');
    await expect(call(c, `s1.work.${gone.id}.31337`, '8')).rejects.toMatchObject({
      code: 'TN002',
    });
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    await expect(call(c, `s1.work.${a.id}.31337`, '9')).rejects.toMatchObject({
      code: 'TN001',
    });
    await c.query('ROLLBACK');
  });

  it('a secret is worthless on another backend, and the runtime role can neither read nor write a register', async () => {
    const one = await runtimeClient();
    const two = await runtimeClient();
    await enter(one, signed(one, a), '555');
    await one.query('COMMIT');
    await enter(two, signed(two, a), '777');
    await two.query('COMMIT');
    await two.query('BEGIN');
    await expect(call(two, `s1.work.${b.id}.555`, '1')).rejects.toMatchObject({
      code: 'TN001',
    });
    await two.query('ROLLBACK');
    for (const attempt of [
      "SELECT pg_sequence_last_value('pg_temp.tenantry_ctx_s')",
      "SELECT setval('pg_temp.tenantry_ctx_v', 1)",
      "SELECT nextval('pg_temp.tenantry_ctx_v')",
      "SELECT setval('pg_temp.tenantry_ctx_p', 0)",
      'DROP SEQUENCE pg_temp.tenantry_ctx_v',
      'ALTER SEQUENCE pg_temp.tenantry_ctx_p OWNED BY NONE',
      'CREATE TEMPORARY SEQUENCE mine',
    ]) {
      await expect(one.query(attempt), attempt).rejects.toMatchObject({ code: '42501' });
    }
  });
});

describe('nothing of a context outlives its transaction', () => {
  it('a rolled-back transaction leaves registers that vouch for no later transaction', async () => {
    const c = await runtimeClient();
    await enter(c, signed(c, a));
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    expect(await titles(c)).toEqual([]);
    await c.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [a.id]);
    await expect(titles(c)).rejects.toMatchObject({ code: 'TN001' });
    await c.query('ROLLBACK');
  });

  it('a forged or copied setting is refused inside a verified transaction', async () => {
    const c = await runtimeClient();
    await enter(c, signed(c, a));
    await c.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [b.id]);
    await expect(titles(c)).rejects.toMatchObject({ code: 'TN001' });
    await c.query('ROLLBACK');
  });

  it('only the canonical text of the vouched id passes: another spelling of the same uuid is refused', async () => {
    const c = await runtimeClient();
    await enter(c, signed(c, a));
    expect(await titles(c)).toEqual([{ title: 'alpha' }]);
    for (const spelling of [a.id.toUpperCase(), `{${a.id}}`, a.id.replaceAll('-', ''), `${a.id} `]) {
      await c.query('SAVEPOINT s');
      await c.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [spelling]);
      await expect(titles(c), spelling).rejects.toMatchObject({ code: 'TN001' });
      await c.query('ROLLBACK TO SAVEPOINT s');
    }
    await c.query('ROLLBACK');
  });

  it('RESET ALL inside the transaction drops the context; DISCARD ALL drops the registers, and enter() makes new ones', async () => {
    const c = await runtimeClient();
    await enter(c, signed(c, a));
    await c.query('RESET ALL');
    expect(await titles(c)).toEqual([]);
    await c.query('COMMIT');
    await c.query('DISCARD ALL');
    await c.query('BEGIN');
    expect(
      (await c.query<{ r: string | null }>("SELECT to_regclass('pg_temp.tenantry_ctx_v')::text AS r")).rows[0]?.r,
    ).toBeNull();
    await c.query(`SELECT set_config('${CONTEXT_SETTING}', $1, true)`, [a.id]);
    await expect(titles(c)).rejects.toMatchObject({ code: 'TN001' });
    await c.query('ROLLBACK');
    await enter(c, signed(c, a));
    expect(await titles(c)).toEqual([{ title: 'alpha' }]);
    await c.query('COMMIT');
  });

  it("search_path: the runtime role's default is the shared tables'; the dialect's statement keeps it, or replaces the session's own for the transaction", async () => {
    const c = await runtimeClient();
    const path = async () => (await c.query<{ p: string }>("SELECT current_setting('search_path') AS p")).rows[0]?.p;
    const shared = `${f.tenantry.config.tenantSchema}, pg_temp`;
    expect(await path()).toBe(shared);
    await c.query('BEGIN');
    await FORMS["the dialect's statement, with the token"](c, signed(c, a), null);
    expect(await path()).toBe(shared);
    expect(await titles(c)).toEqual([{ title: 'alpha' }]);
    await c.query('COMMIT');
    // Injected SQL sets a path for the session: the next transaction runs with the shared one,
    // and the session's own is back after it (it was never Tenantry's to keep).
    await c.query('SET search_path = public');
    await c.query('BEGIN');
    await FORMS["the dialect's statement, with the token"](c, signed(c, b), '5');
    expect(await path()).toBe(shared);
    expect(await titles(c)).toEqual([{ title: 'bravo' }]);
    await c.query('COMMIT');
    expect(await path()).toBe('public');
    await c.query('BEGIN');
    await c.query('SET search_path = public');
    await c.query('BEGIN');
    await FORMS["the dialect's statement, as Tenantry sends it"](c, `s1.work.${b.id}.5`, '6');
    expect(await path()).toBe(shared);
    expect(await titles(c)).toEqual([{ title: 'bravo' }]);
    await c.query('COMMIT');
    expect(await path()).toBe('public');
    await c.query('BEGIN');
    await FORMS["the dialect's statement, as Tenantry sends it"](c, `s1.work.${b.id}.6`, '7');
    expect(await path()).toBe(shared);
    await c.query('COMMIT');
  });

  it("the dialect's common call refuses a missing or wrong secret as enter() does, and spends the session's", async () => {
    const c = await runtimeClient();
    const schema = f.tenantry.config.tenantSchema;
    await enter(c, signed(c, a), '4242');
    await c.query('COMMIT');
    // Injected SQL without the secret: no secret at all, then (too late) the right one.
    await c.query('BEGIN');
    await expect(
      c.query(postgresDialect.enterSql, [null, '1', schema, b.id, null, null, null, null]),
    ).rejects.toMatchObject({
      code: 'TN001',
    });
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    await expect(
      c.query(postgresDialect.enterSql, [null, '2', schema, a.id, '4242', null, null, null]),
    ).rejects.toMatchObject({
      code: 'TN001',
    });
    await c.query('ROLLBACK');
    expect(await titles(c)).toEqual([]);
  });

  it('SET ROLE to the owner is refused, so the registers stay the owner’s', async () => {
    const c = await runtimeClient();
    await expect(c.query(`SET ROLE ${f.database.roles.owner}`)).rejects.toMatchObject({ code: '42501' });
  });

  it('one message cannot end the verified transaction and reuse its registers in the next (extended protocol only)', async () => {
    await expect(
      f.tenantry.transaction(a, (tx) => tx.query("COMMIT; SELECT set_config('tenantry.ctx', 'x', false)")),
    ).rejects.toMatchObject({ code: '42601' });
  });

  it('Tenantry recovers when a backend lost its secret (DISCARD ALL by someone else)', async () => {
    const pool = f.tenantry.runtimePool;
    // Serially, so the same few backends are reused.
    for (let i = 0; i < 3; i++) await f.tenantry.transaction(a, (tx) => tx.query('SELECT 1'));
    const client = await pool.connect();
    try {
      await client.query('DISCARD ALL');
    } finally {
      client.release();
    }
    for (let i = 0; i < 3; i++) {
      const { rows } = await f.tenantry.transaction(a, (tx) => tx.query<{ title: string }>('SELECT title FROM items'));
      expect(rows).toEqual([{ title: 'alpha' }]);
    }
  });
});

describe('a runtime role that may create temporary objects', () => {
  it('is refused before any tenant work: it could make its own registers', async () => {
    const admin = new pg.Client({ connectionString: f.database.url });
    await admin.connect();
    const grant = `ON DATABASE "${f.database.name}" TO "${f.database.roles.runtime}"`;
    await admin.query(`GRANT TEMPORARY ${grant}`);
    const other = await Tenantry.connect<AppDB>({
      databaseUrl: f.database.url,
      secret: f.database.secret,
      roles: f.database.roles,
      migrations: appMigrations,
    });
    try {
      await expect(other.transaction(a, (tx) => tx.query('SELECT 1'))).rejects.toMatchObject({
        code: 'UNSAFE_RUNTIME_ROLE',
        message: expect.stringContaining('TEMPORARY'),
      });
    } finally {
      await other.close();
      await admin.query(`REVOKE TEMPORARY ${grant.replace(' TO ', ' FROM ')}`);
      await admin.end();
    }
  });
});
