import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, superuserQuery, type TestDatabase } from '../../../test-support/database.ts';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import type { TenantRecord } from '../src/index.ts';

let f: Fixture;
let second: TestDatabase;

beforeAll(async () => {
  f = await createFixture('tiers');
  second = await createTestDatabase('tiers2');
});

afterAll(async () => {
  await f?.close();
  await second?.drop();
});

const schemaExists = async (schema: string) =>
  (await f.tenantry.adminPool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount === 1;
const databaseExists = async (database: string) =>
  (await f.tenantry.adminPool.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1;

describe('schema tier', () => {
  it('a new tenant claims a warm schema at head, atomically, and the pool shrinks by one', async () => {
    expect(await f.tenantry.provisioner.fillWarmSchemas('schemas', 2)).toBe(2);
    const warm = await f.tenantry.adminPool.query<{ schema_name: string }>(
      "SELECT schema_name FROM tenantry.targets WHERE state = 'warm'",
    );
    const t = await f.tenantry.tenants.create({ slug: 'warm-1', name: 'Warm', tier: 'schema' });
    expect(warm.rows.map((r) => r.schema_name)).toContain(t.schemaName);
    expect(await f.tenantry.provisioner.warmCount('schemas')).toBe(1);
    // The slug is checked by the tenant's own insert, after the claim: taken, the claim is
    // undone with the transaction and the warm schema stays warm.
    await expect(f.tenantry.tenants.create({ slug: 'warm-1', name: 'Again', tier: 'schema' })).rejects.toMatchObject({
      code: 'TENANT_SLUG_TAKEN',
    });
    expect(await f.tenantry.provisioner.warmCount('schemas')).toBe(1);
    const target = await f.tenantry.adminPool.query(
      "SELECT state, applied_count FROM tenantry.targets WHERE tenant_id = $1 AND kind = 'schema'",
      [t.id],
    );
    expect(target.rows).toEqual([{ state: 'active', applied_count: 2 }]);
    await f.tenantry.transaction(t, (tx) => tx.db.insertInto('items').values({ title: 'in my schema' }).execute());
    const rows = await f.tenantry.adminPool.query(`SELECT title FROM "${t.schemaName}".items`);
    expect(rows.rows).toEqual([{ title: 'in my schema' }]);
  });

  it('with no warm schema left, creates one in the tenant’s own transaction; a failed create leaves no schema', async () => {
    await f.tenantry.provisioner.fillWarmSchemas('schemas', 0);
    await f.tenantry.adminPool.query("UPDATE tenantry.targets SET state = 'provisioning' WHERE state = 'warm'");
    await f.tenantry.provisioner.cleanupStale(0);
    expect(await f.tenantry.provisioner.warmCount('schemas')).toBe(0);
    const before = await f.tenantry.adminPool.query(
      "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 't\\_%'",
    );
    const t = await f.tenantry.tenants.create({ slug: 'cold-1', name: 'Cold', tier: 'schema' });
    expect(await schemaExists(t.schemaName as string)).toBe(true);
    // Same slug again: the schema created inside the failed transaction is rolled back with it.
    await expect(f.tenantry.tenants.create({ slug: 'cold-1', name: 'Again', tier: 'schema' })).rejects.toMatchObject({
      code: 'TENANT_SLUG_TAKEN',
    });
    const after = await f.tenantry.adminPool.query(
      "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 't\\_%'",
    );
    expect(after.rows[0].n).toBe(before.rows[0].n + 1);
  });

  it('the background refiller keeps the warm pool at its size after claims', async () => {
    const { WarmPoolRefiller } = await import('../src/tiers/warm-pool.ts');
    const refiller = new WarmPoolRefiller(f.tenantry.provisioner, { size: 3, intervalMs: 60_000 });
    await refiller.refill();
    expect(await f.tenantry.provisioner.warmCount('schemas')).toBe(3);
    await f.tenantry.tenants.create({ slug: 'claims-1', name: 'C1', tier: 'schema' });
    await f.tenantry.tenants.create({ slug: 'claims-2', name: 'C2', tier: 'schema' });
    expect(await f.tenantry.provisioner.warmCount('schemas')).toBe(1);
    await refiller.refill();
    expect(await f.tenantry.provisioner.warmCount('schemas')).toBe(3);
    await refiller.stop();
  });

  it('hard delete drops the tenant’s schema', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'drop-schema', name: 'Drop', tier: 'schema' });
    await f.tenantry.tenants.delete(t.id, { hard: true });
    expect(await schemaExists(t.schemaName as string)).toBe(false);
  });
});

describe('database tier', () => {
  let t: TenantRecord;

  it('a tenant gets its own database, copied from the placement’s template, with no PUBLIC connect', async () => {
    t = await f.tenantry.tenants.create({ slug: 'db-1', name: 'Own DB', tier: 'database' });
    expect(t.databaseName).toMatch(/_t_[0-9a-f]{12}$/);
    await f.tenantry.transaction(t, (tx) => tx.db.insertInto('items').values({ title: 'in my database' }).execute());
    const rows = await superuserQuery(t.databaseName as string, 'SELECT title, tenant_id FROM items');
    expect(rows).toEqual([{ title: 'in my database', tenant_id: t.id }]);
    const acl = await f.tenantry.adminPool.query<{ ok: boolean }>(
      "SELECT has_database_privilege('public', datname, 'CONNECT') AS ok FROM pg_database WHERE datname = $1",
      [t.databaseName],
    );
    expect(acl.rows[0]?.ok).toBe(false);
    // The main database holds no rows of it, and refuses its work there (its rows are elsewhere).
    const main = await f.tenantry.adminPool.query('SELECT count(*)::int AS n FROM items WHERE tenant_id = $1', [t.id]);
    expect(main.rows[0].n).toBe(0);
  });

  it('suspension reaches the tenant database: even a stale "active" context is refused there', async () => {
    const stale = { id: t.id, slug: t.slug, tier: t.tier, plan: t.plan, status: 'active' as const };
    await f.tenantry.tenants.suspend(t.id);
    await expect(f.tenantry.maintenanceTransaction({ ...stale }, (tx) => tx.query('SELECT 1'))).resolves.toBeDefined(); // maintenance still runs
    const { withTenant } = await import('../src/index.ts');
    await expect(
      withTenant(stale, () => f.tenantry.transaction((tx) => tx.query('SELECT * FROM items'))),
    ).rejects.toMatchObject({ code: 'TENANT_SUSPENDED' });
    const mirror = await superuserQuery(t.databaseName as string, 'SELECT status FROM tenantry.tenants');
    expect(mirror).toEqual([{ status: 'suspended' }]);
    await f.tenantry.tenants.resume(t.id);
    const n = await f.tenantry.transaction(t.id, (tx) => tx.query('SELECT * FROM items'));
    expect(n.rowCount).toBe(1);
  });

  it('a second PostgreSQL database registered as a placement serves database-tier tenants', async () => {
    await f.tenantry.placements.create({ name: 'second', tier: 'database', connectionUrl: second.url });
    const a = await f.tenantry.tenants.create({ slug: 'remote-a', name: 'A', tier: 'database', placement: 'second' });
    const b = await f.tenantry.tenants.create({ slug: 'remote-b', name: 'B', tier: 'database', placement: 'second' });
    for (const x of [a, b]) {
      await f.tenantry.transaction(x, (tx) =>
        tx.db
          .insertInto('items')
          .values({ title: `${x.slug} row` })
          .execute(),
      );
    }
    const seen = await f.tenantry.transaction(a, (tx) => tx.db.selectFrom('items').select('title').execute());
    expect(seen).toEqual([{ title: 'remote-a row' }]);
    // Its template was made through the placement's own connection.
    const templates = await f.tenantry.adminPool.query(
      "SELECT t.id FROM tenantry.targets t JOIN tenantry.placements p ON p.id = t.placement_id WHERE p.name = 'second' AND t.kind = 'template'",
    );
    expect(templates.rowCount).toBe(1);
    expect(f.tenantry.poolMap.stats().poolsOpen).toBeGreaterThanOrEqual(2);
  });

  it('a crash between CREATE DATABASE and the tenant’s row leaves a provisioning target that cleanup drops', async () => {
    const placement = await f.tenantry.placements.resolveByName('databases');
    const placed = await f.tenantry.provisioner.createDatabase('00000000-0000-4000-8000-000000000001', placement, 1000);
    // …and the process dies before the tenant is recorded.
    expect(await databaseExists(placed.databaseName as string)).toBe(true);
    expect(await f.tenantry.provisioner.cleanupStale(0)).toContain(placed.targetId);
    expect(await databaseExists(placed.databaseName as string)).toBe(false);
    const row = await f.tenantry.adminPool.query('SELECT 1 FROM tenantry.targets WHERE id = $1', [placed.targetId]);
    expect(row.rowCount).toBe(0);
  });

  it('hard delete drops the tenant’s database and closes its pool', async () => {
    const gone = await f.tenantry.tenants.create({ slug: 'db-gone', name: 'Gone', tier: 'database' });
    await f.tenantry.transaction(gone, (tx) => tx.query('SELECT 1'));
    await f.tenantry.tenants.delete(gone.id, { hard: true });
    expect(await databaseExists(gone.databaseName as string)).toBe(false);
  });
});
