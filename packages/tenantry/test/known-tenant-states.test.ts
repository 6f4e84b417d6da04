import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { KNOWN_STATE_MAX_AGE_MS, KnownTenantStates } from '../src/context/known-tenant-states.ts';
import type { TenantRecord } from '../src/index.ts';

/**
 * The process's copy of a tenant's row (context/known-tenant-states.ts): `enter()` uses it
 * while the database's tenant state version says no tenant's state changed since it was read.
 * Every change that matters must reach the next transaction as if there were no copy.
 */
let f: Fixture;
let admin: pg.Client;
const clients: pg.Client[] = [];

beforeAll(async () => {
  f = await createFixture('knownstate');
  admin = new pg.Client({ connectionString: f.database.url });
  await admin.connect();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await admin?.end();
  await f?.close();
});

/** A few transactions, so that the process holds a current copy of `t`'s row. */
async function warm(t: TenantRecord): Promise<void> {
  for (let i = 0; i < 4; i++) await f.tenantry.transaction(t, (tx) => tx.query('SELECT 1'));
}

const version = async () =>
  (await admin.query<{ v: string }>("SELECT pg_sequence_last_value('tenantry.tenant_state_version') AS v")).rows[0]?.v;
const timeoutIn = (t: TenantRecord) =>
  f.tenantry.transaction(
    t,
    async (tx) => (await tx.query<{ s: string }>("SELECT current_setting('statement_timeout') AS s")).rows[0]?.s,
  );

describe('the tenant state version', () => {
  it('advances when a change of status, freeze, timeout or placement commits, not for other columns', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'ver-a', name: 'A' });
    const before = await version();
    await admin.query('UPDATE tenantry.tenants SET name = $2 WHERE id = $1', [t.id, 'A2']);
    expect(await version()).toBe(before);
    await admin.query('BEGIN');
    await admin.query('UPDATE tenantry.tenants SET statement_timeout_ms = 4321 WHERE id = $1', [t.id]);
    // Deferred to commit: an uncommitted change has not advanced it.
    expect(await version()).toBe(before);
    await admin.query('COMMIT');
    expect(BigInt((await version()) ?? 0)).toBeGreaterThan(BigInt(before ?? 0));
  });

  it('cannot be advanced, reset or read by the runtime role', async () => {
    const url = (f.tenantry.runtimePool as unknown as { options: { connectionString: string } }).options
      .connectionString;
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    clients.push(c);
    for (const sql of [
      "SELECT nextval('tenantry.tenant_state_version')",
      "SELECT setval('tenantry.tenant_state_version', 1)",
      "SELECT pg_sequence_last_value('tenantry.tenant_state_version')",
    ]) {
      await expect(c.query(sql)).rejects.toMatchObject({ code: '42501' });
    }
  });
});

describe("a process's copy of a tenant's row", () => {
  it('a suspension committed elsewhere refuses the next transaction, copy or not', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'copy-suspend', name: 'S' });
    await warm(t);
    await admin.query("UPDATE tenantry.tenants SET status = 'suspended' WHERE id = $1", [t.id]);
    // `t` still says active: the refusal comes from PostgreSQL, which read the row again.
    await expect(f.tenantry.transaction(t, (tx) => tx.query('SELECT 1'))).rejects.toMatchObject({
      code: 'TENANT_SUSPENDED',
    });
    await admin.query("UPDATE tenantry.tenants SET status = 'active' WHERE id = $1", [t.id]);
    await expect(f.tenantry.transaction(t, (tx) => tx.query('SELECT 1'))).resolves.toBeDefined();
  });

  it('an uncommitted change leaves the committed state in force until it commits', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'copy-pending', name: 'P' });
    await warm(t);
    await admin.query('BEGIN');
    await admin.query("UPDATE tenantry.tenants SET status = 'suspended' WHERE id = $1", [t.id]);
    await expect(f.tenantry.transaction(t, (tx) => tx.query('SELECT 1'))).resolves.toBeDefined();
    await admin.query('COMMIT');
    await expect(f.tenantry.transaction(t, (tx) => tx.query('SELECT 1'))).rejects.toMatchObject({
      code: 'TENANT_SUSPENDED',
    });
  });

  it("a new statement timeout applies from the next transaction; another tenant's copy is not affected", async () => {
    const t = await f.tenantry.tenants.create({ slug: 'copy-timeout', name: 'T' });
    const other = await f.tenantry.tenants.create({ slug: 'copy-other', name: 'O' });
    await warm(t);
    await warm(other);
    expect(await timeoutIn(t)).toBe('30s');
    await admin.query('UPDATE tenantry.tenants SET statement_timeout_ms = 1234 WHERE id = $1', [t.id]);
    expect(await timeoutIn(t)).toBe('1234ms');
    expect(await timeoutIn(t)).toBe('1234ms');
    expect(await timeoutIn(other)).toBe('30s');
  });

  it('a frozen tenant is never copied: every transaction reads the row and is read-only until thawed', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'copy-frozen', name: 'F' });
    await warm(t);
    await admin.query('UPDATE tenantry.tenants SET frozen = true WHERE id = $1', [t.id]);
    for (let i = 0; i < 3; i++) {
      await expect(
        f.tenantry.transaction(t, (tx) => tx.db.insertInto('items').values({ title: 'x' }).execute()),
      ).rejects.toMatchObject({ cause: { code: '25006' } });
    }
    await admin.query('UPDATE tenantry.tenants SET frozen = false WHERE id = $1', [t.id]);
    await expect(
      f.tenantry.transaction(t, (tx) => tx.db.insertInto('items').values({ title: 'x' }).execute()),
    ).resolves.toBeDefined();
  });

  it('a reader waits for a change that is committing, then reads what it committed', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'copy-wait', name: 'W' });
    await warm(t);
    // A change in its commit: it holds the tenant state lock, and has advanced the version.
    await admin.query('BEGIN');
    await admin.query("UPDATE tenantry.tenants SET status = 'suspended' WHERE id = $1", [t.id]);
    await admin.query('SET CONSTRAINTS ALL IMMEDIATE');
    const pending = f.tenantry
      .transaction(t, (tx) => tx.query('SELECT 1'))
      .then(
        () => 'served',
        (e: { code?: string }) => e.code,
      );
    await expect
      .poll(async () => {
        const { rows } = await admin.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'",
        );
        return rows[0]?.n;
      })
      .toBe(1);
    await admin.query('COMMIT');
    expect(await pending).toBe('TENANT_SUSPENDED');
  });
});

describe('KnownTenantStates', () => {
  it('keeps only what enter() answered after reading a row it may copy, for a limited time', () => {
    const known = new KnownTenantStates();
    known.learn('db', 't', 'public, pg_temp', 0);
    expect(known.get('db', 't', 0)).toBeUndefined();
    known.learn('db', 't', '42\n30000\n\npublic, pg_temp', 0);
    expect(known.get('db', 't', 1)).toMatchObject({ version: '42', statementTimeoutMs: 30000, place: null });
    expect(known.get('other-db', 't', 1)).toBeUndefined();
    known.learn('db', 't', '43\n5000\nt_acme\n"t_acme", pg_temp', 0);
    expect(known.get('db', 't', 1)).toMatchObject({ version: '43', place: 't_acme' });
    // Frozen: the version is empty, and the copy is dropped.
    known.learn('db', 't', '\n5000\n\npublic, pg_temp', 0);
    expect(known.get('db', 't', 1)).toBeUndefined();
    known.learn('db', 't', '44\n5000\n\npublic, pg_temp', 0);
    expect(known.get('db', 't', KNOWN_STATE_MAX_AGE_MS + 1)).toBeUndefined();
    known.learn('db', 't', 'garbage\nx\n\npath', 0);
    expect(known.get('db', 't', 1)).toBeUndefined();
  });
});
