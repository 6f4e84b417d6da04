import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { type TenantMigration, Tenantry } from '../src/index.ts';

// `transaction: false` migrations: CREATE INDEX CONCURRENTLY on live tenant tables, run
// outside the run's transaction with the ledger kept right, and a failed concurrent build
// (an INVALID index left behind) recovered by running again, on the shared tables and
// across the fleet (schema and database tiers).

const v1: TenantMigration[] = [
  {
    id: 'nt_001_notes',
    up: (m) =>
      m.tenantTable({
        name: 'notes',
        columns: { id: 'uuid NOT NULL DEFAULT gen_random_uuid()', code: 'text NOT NULL' },
        primaryKey: ['id'],
      }),
  },
];
const v2: TenantMigration[] = [
  ...v1,
  {
    id: 'nt_002_notes_code',
    transaction: false,
    up: async (m) => {
      if (!m.inTransaction) {
        // Proof that it runs outside a transaction: this is refused inside one.
        await m.query('CREATE INDEX CONCURRENTLY IF NOT EXISTS notes_probe ON notes (tenant_id)');
        await m.query('DROP INDEX CONCURRENTLY notes_probe');
      }
      await m.createIndex({ name: 'notes_code_uq', table: 'notes', columns: ['tenant_id', 'code'], unique: true });
    },
  },
  { id: 'nt_003_notes_body', up: (m) => m.query('ALTER TABLE notes ADD COLUMN body text') },
];

let db: TestDatabase;
let first: Tenantry;
let second: Tenantry;
let admin: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('migrate_conc');
  const options = { databaseUrl: db.url, secret: db.secret, roles: db.roles };
  first = await Tenantry.connect({ ...options, migrations: v1 });
  await first.setup();
  await first.migrate();
  second = await Tenantry.connect({ ...options, migrations: v2 });
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await first?.close();
  await second?.close();
  await db?.drop();
});

async function index(schema: string, client: pg.Client = admin) {
  const { rows } = await client.query<{ valid: boolean }>(
    `SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'notes_code_uq'`,
    [schema],
  );
  return rows;
}

async function ledger(target: string, client: pg.Client = admin) {
  const { rows } = await client.query<{ id: string }>(
    "SELECT id FROM tenantry.migrations WHERE chain = 'tenant' AND target = $1 ORDER BY id",
    [target],
  );
  return rows.map((r) => r.id);
}

describe('transaction: false migrations', () => {
  it('a failed CREATE INDEX CONCURRENTLY leaves the migration pending; fixed and rerun, it completes once', async () => {
    const acme = await first.tenants.create({ slug: 'nt-acme', name: 'Acme' });
    const other = await first.tenants.create({ slug: 'nt-other', name: 'Other' });
    for (const code of ['a', 'a']) {
      await first.query(acme, 'INSERT INTO notes (tenant_id, code) VALUES ($1, $2)', [acme.id, code]);
    }
    await first.query(other, 'INSERT INTO notes (tenant_id, code) VALUES ($1, $2)', [other.id, 'a']);

    await expect(second.migrate()).rejects.toMatchObject({ code: 'MIGRATION_FAILED' });
    // The concurrent build failed on acme's duplicate: an INVALID index is left, the
    // migration is not recorded, the target's count stops before it, and nothing after ran.
    expect(await index('public')).toEqual([{ valid: false }]);
    expect(await ledger('shared')).toEqual(['nt_001_notes']);
    const { rows } = await admin.query("SELECT applied_count, version FROM tenantry.targets WHERE id = 'shared'");
    expect(rows[0]).toEqual({ applied_count: 1, version: 'nt_001_notes' });

    await first.transaction(acme, (tx) =>
      tx.query("DELETE FROM notes WHERE ctid IN (SELECT ctid FROM notes WHERE code = 'a' LIMIT 1)"),
    );
    const report = await second.migrate();
    expect(report.applied).toEqual(['nt_002_notes_code', 'nt_003_notes_body']);
    expect(await index('public')).toEqual([{ valid: true }]);
    expect(await ledger('shared')).toEqual(['nt_001_notes', 'nt_002_notes_code', 'nt_003_notes_body']);
    expect((await admin.query("SELECT applied_count FROM tenantry.targets WHERE id = 'shared'")).rows[0]).toEqual({
      applied_count: 3,
    });
    // The index works: a duplicate code within a tenant is refused; the other tenant's same code was always fine.
    await expect(
      first.query(acme, 'INSERT INTO notes (tenant_id, code) VALUES ($1, $2)', [acme.id, 'a']),
    ).rejects.toMatchObject({ code: '23505' });
    expect((await second.migrate()).applied).toEqual([]);
  });

  it('the fleet runs it outside a transaction on tenant schemas and databases; new tenants get it in their provisioning', async () => {
    const s = await first.tenants.create({ slug: 'nt-schema', name: 'S', tier: 'schema' });
    const d = await first.tenants.create({ slug: 'nt-db', name: 'D', tier: 'database' });
    const report = await second.migrateFleet({ concurrency: 2 });
    expect(report.failed).toEqual([]);
    expect(report.migrated).toBe(report.total); // the two tenants, and the database placement's template
    const targets = (
      await admin.query<{
        id: string;
        kind: string;
        schema_name: string;
        database_name: string | null;
        applied_count: number;
      }>('SELECT id, kind, schema_name, database_name, applied_count FROM tenantry.targets WHERE tenant_id = ANY($1)', [
        [s.id, d.id],
      ])
    ).rows;
    expect(targets.map((t) => t.applied_count)).toEqual([3, 3]);
    const schemaTarget = targets.find((t) => t.kind === 'schema');
    expect(await index(schemaTarget?.schema_name ?? '')).toEqual([{ valid: true }]);
    const dbTarget = targets.find((t) => t.kind === 'database');
    const url = new URL(db.url);
    url.pathname = `/${dbTarget?.database_name}`;
    const tenantDb = new pg.Client({ connectionString: url.toString() });
    await tenantDb.connect();
    try {
      expect(await index('public', tenantDb)).toEqual([{ valid: true }]);
      expect(await ledger(dbTarget?.id ?? '', tenantDb)).toEqual([
        'nt_001_notes',
        'nt_002_notes_code',
        'nt_003_notes_body',
      ]);
    } finally {
      await tenantDb.end();
    }
    const fresh = await second.tenants.create({ slug: 'nt-fresh', name: 'F', tier: 'schema' });
    const { rows } = await admin.query<{ schema_name: string; applied_count: number }>(
      'SELECT schema_name, applied_count FROM tenantry.targets WHERE tenant_id = $1',
      [fresh.id],
    );
    expect(rows[0]?.applied_count).toBe(3);
    expect(await index(rows[0]?.schema_name ?? '')).toEqual([{ valid: true }]);
  });
});
