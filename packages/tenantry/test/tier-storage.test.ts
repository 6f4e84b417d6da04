import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry } from '../../../test-support/http.ts';
import type { TenantRecord, Tenantry } from '../src/index.ts';

// `usage.storageByTier()` reads per-tier totals kept by triggers (migration
// 0025_tier_storage_totals). Every answer here is compared with the sum it replaces: the
// latest snapshot of every tenant that is not deleted, probed tenant by tenant.

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let admin: pg.Pool;
const tenants: TenantRecord[] = [];

async function scanned(): Promise<{ tier: string; bytes: number; tenants: number }[]> {
  const { rows } = await admin.query<{ tier: string; bytes: string; tenants: number }>(
    `SELECT l.tier, sum(l.storage_bytes)::int8 AS bytes, count(*)::int AS tenants
       FROM tenantry.tenants t CROSS JOIN LATERAL (
         SELECT m.tier, m.storage_bytes FROM tenantry.tenant_metrics m
          WHERE m.tenant_id = t.id ORDER BY m.taken_at DESC LIMIT 1) l
      WHERE t.status <> 'deleted'
      GROUP BY l.tier ORDER BY l.tier`,
  );
  return rows.map((r) => ({ tier: r.tier, bytes: Number(r.bytes), tenants: r.tenants }));
}

async function expectTotalsEqualScan(): Promise<void> {
  expect(await tenantry.usage.storageByTier()).toEqual(await scanned());
}

/** Snapshots of `tenant` taken `hoursAgo` with `bytes`, as another writer would insert them. */
async function snapshot(tenant: TenantRecord, hoursAgo: number, bytes: number, tier = tenant.tier): Promise<void> {
  await admin.query(
    `INSERT INTO tenantry.tenant_metrics (tenant_id, taken_at, tier, table_rows, storage_bytes, storage_exact, users,
                                          transactions_24h, requests_24h)
     VALUES ($1, now() - make_interval(secs => $2::float8 * 3600), $3, '{}', $4, false, 0, 0, 0)`,
    [tenant.id, hoursAgo, tier, bytes],
  );
}

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('tier-storage'));
  admin = new pg.Pool({ connectionString: db.url, max: 6 });
  for (let i = 0; i < 9; i++) {
    const tier = (['pool', 'schema', 'database'] as const)[i % 3];
    tenants.push(await tenantry.tenants.create({ slug: `st-${i}`, name: `st ${i}`, tier }));
  }
}, 120_000);

afterAll(async () => {
  await admin?.end();
  await tenantry?.close();
  await db?.drop();
});

describe('storage by tier from running totals', () => {
  it('follows snapshots newer and older, deletes of the latest, status changes, erasure and TRUNCATE', async () => {
    const [a, b, c, d, e] = tenants as [TenantRecord, TenantRecord, TenantRecord, TenantRecord, TenantRecord];
    await expectTotalsEqualScan();
    // Real snapshots of every tenant, through the API.
    await tenantry.usage.snapshot();
    await expectTotalsEqualScan();
    expect((await tenantry.usage.storageByTier()).map((r) => r.tenants)).toEqual([3, 3, 3]);

    // Older snapshots change nothing; a newer one replaces the latest, tier included.
    await snapshot(a, 5, 1_000);
    await snapshot(b, 3, 2_000);
    await expectTotalsEqualScan();
    await snapshot(c, -1, 123_456, 'pool');
    await expectTotalsEqualScan();

    // Deleting the latest falls back to the next newest; deleting all, to none.
    await admin.query(
      'DELETE FROM tenantry.tenant_metrics WHERE tenant_id = $1 AND taken_at = (SELECT max(taken_at) FROM tenantry.tenant_metrics WHERE tenant_id = $1)',
      [c.id],
    );
    await expectTotalsEqualScan();
    await admin.query('DELETE FROM tenantry.tenant_metrics WHERE tenant_id = $1', [d.id]);
    await expectTotalsEqualScan();
    // Upkeep's delete of old snapshots.
    await tenantry.usage.upkeep({ snapshotDays: 0 });
    await expectTotalsEqualScan();
    await tenantry.usage.snapshot();

    // A tenant deleted (kept as `deleted`) stops counting, and counts again if restored.
    await tenantry.tenants.delete(e.id, { actor: 'test' });
    await expectTotalsEqualScan();
    await admin.query(`UPDATE tenantry.tenants SET status = 'active' WHERE id = $1`, [e.id]);
    await expectTotalsEqualScan();
    await admin.query(`UPDATE tenantry.tenants SET status = 'deleted' WHERE id = $1`, [e.id]);
    await snapshot(e, -2, 777);
    await expectTotalsEqualScan();

    // Erasure.
    await tenantry.eraseTenant(a.id, { actor: 'test' });
    await expectTotalsEqualScan();
    const { rows } = await admin.query('SELECT 1 FROM tenantry.tenant_storage_latest WHERE tenant_id = $1', [a.id]);
    expect(rows).toHaveLength(0);

    await admin.query('TRUNCATE tenantry.tenant_metrics');
    expect(await tenantry.usage.storageByTier()).toEqual([]);
    await expectTotalsEqualScan();
  });

  it('stays exact with snapshots, deletes and status changes at once', async () => {
    const live = tenants.slice(1); // the first was erased above
    const until = Date.now() + 4_000;
    const writer = async (seed: number) => {
      for (let n = seed; Date.now() < until; n += 3) {
        const t = live[n % live.length] as TenantRecord;
        await snapshot(t, (n % 5) - 2 + seed / 10, 1000 + n, (['pool', 'schema', 'database'] as const)[n % 3]);
      }
    };
    const deleter = async () => {
      for (let n = 0; Date.now() < until; n++) {
        const t = live[n % live.length] as TenantRecord;
        await admin.query(
          'DELETE FROM tenantry.tenant_metrics WHERE tenant_id = $1 AND taken_at = (SELECT max(taken_at) FROM tenantry.tenant_metrics WHERE tenant_id = $1)',
          [t.id],
        );
      }
    };
    const status = async () => {
      for (let n = 0; Date.now() < until; n++) {
        const t = live[(n * 5) % live.length] as TenantRecord;
        await admin.query(
          `UPDATE tenantry.tenants SET status = CASE WHEN status = 'deleted' THEN 'active' ELSE 'deleted' END WHERE id = $1`,
          [t.id],
        );
      }
    };
    const results = await Promise.allSettled([writer(0), writer(1), writer(2), deleter(), status()]);
    for (const r of results) expect(r.status === 'rejected' ? String(r.reason) : 'ok').toBe('ok');
    expect((await scanned()).length).toBeGreaterThan(0);
    await expectTotalsEqualScan();
  });
});
