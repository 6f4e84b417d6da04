import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, superuserQuery, type TestDatabase } from '../../../test-support/database.ts';
import { startServer, type TestServer } from '../../../test-support/http.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { type IsolationTier, type TenantMigration, type TenantRecord, Tenantry } from '../src/index.ts';

/** Two tables of an application that marks personal data: notes are kept pseudonymised, messages go. */
const personalMigration: TenantMigration = {
  id: 'test_001_personal',
  up: async (m) => {
    await m.tenantTable({
      name: 'notes',
      columns: {
        id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
        author_id: 'uuid NOT NULL',
        author_email: 'text NOT NULL',
        author_name: 'text',
        body: 'text NOT NULL',
      },
      primaryKey: ['id'],
      personal: { owner: 'author_id', columns: ['author_email', 'author_name'] },
    });
    await m.tenantTable({
      name: 'messages',
      columns: { id: 'uuid NOT NULL DEFAULT gen_random_uuid()', sender_id: 'uuid NOT NULL', body: 'text NOT NULL' },
      primaryKey: ['id'],
      personal: { owner: 'sender_id', columns: ['body'], mode: 'delete' },
    });
  },
};

const ADMIN = 'test-admin-token-user-erasure-0123';
let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase('user_erasure');
  tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: [...itemsMigrations, personalMigration],
  });
  await tenantry.setup();
  await tenantry.migrate();
  server = await startServer(tenantry, { adminToken: ADMIN });
});

afterAll(async () => {
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

async function write(t: TenantRecord, userId: string, email: string, n: number): Promise<void> {
  await tenantry.transaction(t, async (tx) => {
    for (let i = 0; i < n; i++) {
      await tx.query('INSERT INTO notes (author_id, author_email, author_name, body) VALUES ($1, $2, $3, $4)', [
        userId,
        email,
        `Name of ${email}`,
        `note ${i} by ${email}`,
      ]);
      await tx.query('INSERT INTO messages (sender_id, body) VALUES ($1, $2)', [userId, `message ${i} from ${email}`]);
    }
  });
}

/** A tenant's rows as they are, read behind Tenantry's back where they live. */
async function rowsOf(t: TenantRecord) {
  const database = t.databaseName ?? db.name;
  const schema = t.tier === 'schema' ? (t.schemaName as string) : 'public';
  const notes = await superuserQuery<Record<string, unknown>>(
    database,
    `SELECT id, author_id, author_email, author_name, body FROM "${schema}".notes WHERE tenant_id = $1 ORDER BY id`,
    [t.id],
  );
  const messages = await superuserQuery<Record<string, unknown>>(
    database,
    `SELECT id, sender_id, body FROM "${schema}".messages WHERE tenant_id = $1 ORDER BY id`,
    [t.id],
  );
  return { notes, messages };
}

const memberships = (userId: string) =>
  superuserQuery<{ tenant_id: string }>(db.name, 'SELECT tenant_id FROM tenantry.memberships WHERE user_id = $1', [
    userId,
  ]).then((rows) => rows.map((r) => r.tenant_id).sort());
const accountExists = async (userId: string) =>
  (await superuserQuery(db.name, 'SELECT 1 FROM tenantry.users WHERE id = $1', [userId])).length === 1;

describe.each<IsolationTier>(['pool', 'schema', 'database'])('per-user erasure, %s tier', (tier) => {
  let a: TenantRecord;
  let b: TenantRecord;
  let key: string;
  let readOnlyKey: string;
  const ids: Record<'shared' | 'solo' | 'other' | 'bOnly', string> = { shared: '', solo: '', other: '', bOnly: '' };

  beforeAll(async () => {
    a = await tenantry.tenants.create({ slug: `ue-${tier}-a`, name: 'A', tier });
    b = await tenantry.tenants.create({ slug: `ue-${tier}-b`, name: 'B' });
    const email = (who: string) => `${who}-${tier}@people.test`;
    ids.shared = (await tenantry.users.create(a.id, { email: email('shared'), role: 'member' })).id;
    await tenantry.users.create(b.id, { email: email('shared'), role: 'member' });
    ids.solo = (await tenantry.users.create(a.id, { email: email('solo'), role: 'member' })).id;
    ids.other = (await tenantry.users.create(a.id, { email: email('other'), role: 'member' })).id;
    ids.bOnly = (await tenantry.users.create(b.id, { email: email('b-only'), role: 'member' })).id;
    await write(a, ids.shared, email('shared'), 2);
    await write(a, ids.solo, email('solo'), 1);
    await write(a, ids.other, email('other'), 2);
    await write(b, ids.shared, email('shared'), 2);
    await write(b, ids.bOnly, email('b-only'), 1);
    const mk = async (scopes: string[]) =>
      (await tenantry.apiKeys.create(a.id, { name: 'k', environment: 'test', scopes: scopes as never })).key;
    key = await mk(['users:read', 'users:write']);
    readOnlyKey = await mk(['users:read']);
  });

  it('DELETE /v1/users/{id}?erase=true pseudonymises and deletes only that user’s rows, in this tenant only', async () => {
    const before = await rowsOf(a);
    const bBefore = await rowsOf(b);
    expect((await server.request('DELETE', `/v1/users/${ids.shared}?erase=true`, { token: readOnlyKey })).status).toBe(
      403,
    );
    const r = await server.request('DELETE', `/v1/users/${ids.shared}?erase=true`, { token: key });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      userId: ids.shared,
      tables: expect.arrayContaining([
        { table: 'notes', mode: 'pseudonymise', rows: 2 },
        { table: 'messages', mode: 'delete', rows: 2 },
      ]),
      accountRemoved: false,
    });

    const after = await rowsOf(a);
    const mine = (rows: Record<string, unknown>[], col: string) => rows.filter((x) => x[col] === ids.shared);
    // Notes: kept, no longer naming the user; personal columns cleared; the content stays.
    expect(mine(after.notes, 'author_id')).toEqual([]);
    const erased = after.notes.filter((n) => !before.notes.some((o) => o.author_id === n.author_id));
    expect(erased).toHaveLength(2);
    expect(new Set(erased.map((n) => n.author_id)).size).toBe(1); // one pseudonym for the person
    for (const n of erased) {
      expect(n.author_email).toMatch(/^erased-[0-9a-f]{8}$/);
      expect(n.author_name).toBeNull();
    }
    // Messages: deleted.
    expect(mine(after.messages, 'sender_id')).toEqual([]);
    // Everyone else's rows exactly as they were.
    const others = (rows: Record<string, unknown>[], col: string) => rows.filter((x) => x[col] !== ids.shared);
    expect(others(after.notes, 'author_id').filter((n) => !erased.includes(n))).toEqual(
      others(before.notes, 'author_id'),
    );
    expect(after.messages).toEqual(others(before.messages, 'sender_id'));
    // B's copy of the shared user: untouched; membership in B and the account stay.
    expect(await rowsOf(b)).toEqual(bBefore);
    expect(await memberships(ids.shared)).toEqual([b.id]);
    expect(await accountExists(ids.shared)).toBe(true);
    // Audited without personal data.
    const audit = await superuserQuery<{ details: Record<string, unknown> }>(
      db.name,
      `SELECT details FROM tenantry.audit_log WHERE tenant_id = $1 AND action = 'user.erased'`,
      [a.id],
    );
    expect(audit).toHaveLength(1);
    expect(audit[0]?.details).toMatchObject({ userId: ids.shared, accountRemoved: false });
    const text = JSON.stringify(audit);
    expect(text).not.toContain('@people.test');
    expect(text).not.toContain(erased[0]?.author_id as string);
  });

  it('the account goes when the user belonged to this tenant only', async () => {
    const report = await tenantry.eraseUser(a.slug, ids.solo, { actor: 'dpo' });
    expect(report).toMatchObject({ accountRemoved: true, userId: ids.solo });
    expect(await accountExists(ids.solo)).toBe(false);
    expect(await memberships(ids.solo)).toEqual([]);
  });

  it('a user of another tenant cannot be erased through this one', async () => {
    const [aBefore, bBefore] = [await rowsOf(a), await rowsOf(b)];
    const r = await server.request('DELETE', `/v1/users/${ids.bOnly}?erase=true`, { token: key });
    expect(r.status).toBe(404);
    expect(JSON.stringify(r.body)).not.toContain(b.id);
    await expect(tenantry.eraseUser(a.id, ids.bOnly)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect([await rowsOf(a), await rowsOf(b)]).toEqual([aBefore, bBefore]);
    expect(await memberships(ids.bOnly)).toEqual([b.id]);
  });

  it('without erase, DELETE only removes the membership', async () => {
    const before = await rowsOf(a);
    expect((await server.request('DELETE', `/v1/users/${ids.other}`, { token: key })).status).toBe(204);
    expect(await memberships(ids.other)).toEqual([]);
    expect(await rowsOf(a)).toEqual(before);
  });
});

describe('personal declarations', () => {
  it('are checked when the table is declared', async () => {
    const { tenantTableSql } = await import('../src/schema/tenant-table.ts');
    const base = { name: 't', columns: { id: 'uuid NOT NULL', who: 'uuid', email: 'text' }, primaryKey: ['id'] };
    const sql = tenantTableSql({ ...base, personal: { owner: 'who', columns: ['email'] } }, { runtimeRole: 'r' });
    expect(sql.at(-1)).toBe(
      `COMMENT ON COLUMN "t"."who" IS 'tenantry:personal {"columns":["email"],"mode":"pseudonymise"}'`,
    );
    for (const personal of [
      { owner: 'nobody', columns: [] },
      { owner: 'who', columns: ['missing'] },
      { owner: 'id', columns: ['email'] },
      { owner: 'who', columns: ['who'] },
    ]) {
      expect(() => tenantTableSql({ ...base, personal }, { runtimeRole: 'r' })).toThrow(/personal/);
    }
  });
});
