import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { Tenantry, type UsageRanking } from '../src/index.ts';
import { setupDatabase } from '../src/migrate/setup.ts';
import { figures } from '../src/ops/usage-figures.ts';
import { USAGE_RANKINGS } from '../src/ops/usage-service.ts';
import { scanTop, totalsTop } from '../src/ops/usage-top.ts';
import { KeyRing } from '../src/secrets/keys.ts';

// The control-plane chain without the two parts of migration 0026: an installation with usage
// rows and snapshots from before the window and tier storage totals, upgraded.
const before = vi.hoisted(() => ({ on: false }));
vi.mock('../src/migrate/control-plane.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/migrate/control-plane.ts')>();
  return {
    ...real,
    controlPlaneMigrations: (runtime: string) => {
      const all = real.controlPlaneMigrations(runtime);
      return before.on ? all.filter((m) => !m.id.startsWith('0026_')) : all;
    },
  };
});

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let admin: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase('usage_top_upgrade');
  tenantry = await Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles });
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
});

afterAll(async () => {
  await admin?.end();
  await tenantry?.close();
  await db?.drop();
});

describe('migration 0026 on an installation with usage rows and snapshots', () => {
  it('totals the usage rows and snapshots already there: top() and storage by tier answer as before', async () => {
    before.on = true;
    const client = await tenantry.adminPool.connect();
    try {
      await setupDatabase(client, tenantry.config, new KeyRing(db.secret));
    } finally {
      client.release();
    }
    expect((await admin.query(`SELECT to_regclass('tenantry.tenant_usage_window_totals') AS t`)).rows[0].t).toBe(null);
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push((await tenantry.tenants.create({ slug: `up-${i}`, name: `up ${i}` })).id);
    // Minutes over two days, some in every window, some in none.
    await admin.query(
      `INSERT INTO tenantry.tenant_usage_minutes (minute, tenant_id, transactions, statements, db_time_ms, rows_read,
              rows_written, errors, requests)
       SELECT date_trunc('minute', now()) - make_interval(mins => (k * 97) % 2900), id,
              k % 7, k % 11, (k % 13) * 1.25, k % 5, k % 3, k % 2, k % 9
         FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, i), generate_series(1, 40) g(n),
              LATERAL (SELECT (i * 40 + n)::int AS k) x`,
      [ids],
    );

    // Snapshots: several per tenant, one tenant deleted (not counted), one never measured.
    await admin.query(
      `INSERT INTO tenantry.tenant_metrics (tenant_id, taken_at, tier, table_rows, storage_bytes, storage_exact, users,
                                            transactions_24h, requests_24h)
       SELECT id, now() - make_interval(hours => h), (ARRAY['pool', 'schema', 'database'])[1 + (i + h) % 3], '{}',
              1000 * i + h, false, 0, 0, 0
         FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, i), generate_series(0, 3) h WHERE i < 8`,
      [ids],
    );
    await admin.query(`UPDATE tenantry.tenants SET status = 'deleted' WHERE id = $1`, [ids[2]]);
    // What storageByTier() summed before the totals: every tenant's latest snapshot.
    const { rows: storageBefore } = await admin.query(
      `SELECT l.tier, sum(l.storage_bytes)::float8 AS bytes, count(*)::float8 AS tenants
         FROM tenantry.tenants t CROSS JOIN LATERAL (
           SELECT m.tier, m.storage_bytes FROM tenantry.tenant_metrics m
            WHERE m.tenant_id = t.id ORDER BY m.taken_at DESC LIMIT 1) l
        WHERE t.status <> 'deleted'
        GROUP BY l.tier ORDER BY l.tier`,
    );
    expect(storageBefore.reduce((n, r) => n + r.tenants, 0)).toBe(6);

    before.on = false;
    await tenantry.setup();
    expect(await admin.query('SELECT 1 FROM tenantry.tier_storage')).toHaveProperty('rowCount', 3);
    expect(await tenantry.usage.storageByTier()).toEqual(storageBefore);

    const { rows: windows } = await admin.query('SELECT window_minutes FROM tenantry.tenant_usage_windows ORDER BY 1');
    expect(windows.map((r) => r.window_minutes)).toEqual([15, 60, 1440]);
    let compared = 0;
    for (const [window, minutes] of [
      ['15m', 15],
      ['1h', 60],
      ['24h', 1440],
    ] as const) {
      for (const by of USAGE_RANKINGS as UsageRanking[]) {
        const scanned = (await scanTop(admin, by, `${minutes} minutes`, 1000)).map((r) => ({
          tenantId: String(r.tenant_id),
          slug: String(r.slug),
          tier: String(r.tier),
          plan: String(r.plan),
          ...figures(r),
        }));
        expect(await totalsTop(admin, by, minutes, 1000)).toBeDefined();
        expect(await tenantry.usage.top({ by, window, limit: 1000 })).toEqual(scanned);
        compared += scanned.length;
      }
    }
    expect(compared).toBeGreaterThan(30);
  });
});
