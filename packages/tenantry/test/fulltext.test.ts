import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { type TenantRecord, Tenantry } from '../src/index.ts';

// Under RLS, PostgreSQL applies the policy before any non-leakproof condition, so `@@`
// (ts_match_vq) cannot be an index condition; leakproofFullTextSearch changes that.
let db: TestDatabase;
let tenant: TenantRecord;

const connect = (leakproofFullTextSearch: boolean) =>
  Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    leakproofFullTextSearch,
  });

async function plan(tenantry: Tenantry<unknown>): Promise<string> {
  const { rows } = await tenantry.transaction(tenant, async (tx) => {
    await tx.query('SET LOCAL enable_seqscan = off');
    return tx.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT id FROM items WHERE tenant_id = $1 AND search @@ websearch_to_tsquery('english', 'zebra')`,
      [tenant.id],
    );
  });
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

beforeAll(async () => {
  db = await createTestDatabase('fulltext');
  const tenantry = await connect(false);
  try {
    await tenantry.setup();
    await tenantry.migrate();
    tenant = await tenantry.tenants.create({ slug: 'fts', name: 'FTS' });
    await tenantry.transaction(tenant, (tx) =>
      tx.query(
        `INSERT INTO items (title, description)
         SELECT 'item ' || g, CASE WHEN g % 50 = 0 THEN 'zebra crossing' ELSE 'plain text ' || g END
           FROM generate_series(1, 3000) g`,
      ),
    );
    // VACUUM merges the GIN pending list, as a live database's autovacuum would.
    await tenantry.adminPool.query('VACUUM ANALYZE items');
  } finally {
    await tenantry.close();
  }
});

afterAll(async () => {
  await db?.drop();
});

describe('full-text search under row-level security', () => {
  it('by default `@@` is only a filter after the tenant condition, and doctor says so', async () => {
    const tenantry = await connect(false);
    try {
      const text = await plan(tenantry);
      expect(text).toMatch(/Filter: \(search @@/);
      const report = await tenantry.doctor();
      expect(report.findings.map((f) => f.code)).toContain('FULL_TEXT_SEARCH_FILTERED');
    } finally {
      await tenantry.close();
    }
  });

  it('with leakproofFullTextSearch, the GIN (tenant_id, search) index serves `@@` as an index condition', async () => {
    const tenantry = await connect(true);
    try {
      await tenantry.setup();
      const text = await plan(tenantry);
      expect(text).toMatch(/Index Cond: .*search @@/s);
      const found = await tenantry.transaction(tenant, (tx) =>
        tx.query("SELECT count(*)::int AS n FROM items WHERE search @@ websearch_to_tsquery('english', 'zebra')"),
      );
      expect(found.rows[0]).toEqual({ n: 60 });
      const report = await tenantry.doctor();
      expect(report.findings.map((f) => f.code)).not.toContain('FULL_TEXT_SEARCH_FILTERED');
    } finally {
      await tenantry.close();
    }
  });
});
