import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { listQuery } from '../src/control/tenant-registry.ts';
import { dbMetrics } from '../src/http/db-metrics.ts';
import { registerUsageMetrics } from '../src/http/metrics.ts';
import type { Tenantry } from '../src/index.ts';

// The control plane at fleet size (issue 19): what keeps its operations from growing with
// the number of tenants, checked on behaviour (query plans, series, who waits), not timing.
// bench/control-plane.ts measures the times.

const TENANTS = 3000;

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let admin: pg.Pool;

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('cp_scale', { usage: { flushMs: 3_600_000 } }));
  admin = new pg.Pool({ connectionString: db.url, max: 3 });
  // Many tenants in one statement; creation times repeat (ten per second) so pages split ties.
  await admin.query(
    `INSERT INTO tenantry.tenants (slug, name, tier, placement_id, status, created_at)
     SELECT 'scale-' || i, 'Scale ' || i, 'pool', (SELECT id FROM tenantry.placements WHERE name = 'shared'),
            CASE WHEN i % 7 = 0 THEN 'suspended' ELSE 'active' END,
            date_trunc('second', now()) - make_interval(secs => i / 10)
       FROM generate_series(1, $1::int) i`,
    [TENANTS],
  );
  await admin.query('ANALYZE tenantry.tenants');
  server = await startServer(tenantry, { usage: { snapshotIntervalMs: 0 } });
});

afterAll(async () => {
  await server?.close();
  await admin?.end();
  await tenantry?.close();
  await db?.drop();
});

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}
const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];

describe('tenants.list at fleet size', () => {
  it.each([undefined, 'suspended'] as const)(
    'every page (status %s) is one index range that reads its rows and no others, and the walk sees each tenant once',
    async (status) => {
      const expected = (
        await admin.query<{ id: string }>(
          `SELECT id FROM tenantry.tenants WHERE $1::text IS NULL OR status = $1 ORDER BY created_at, id`,
          [status ?? null],
        )
      ).rows.map((r) => r.id);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await tenantry.tenants.list({
          limit: 97,
          ...(status ? { status } : {}),
          ...(cursor ? { cursor } : {}),
        });
        seen.push(...page.tenants.map((t) => t.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor);
      expect(seen).toEqual(expected);
      expect(pages).toBe(Math.ceil(expected.length / 97));

      // Deep in the list: the plan reads the page from the index, nothing sorted or filtered out.
      const middle = expected.length >> 1;
      const { rows } = await admin.query<{ at: string; id: string }>(
        `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at, id::text
           FROM tenantry.tenants WHERE id = $1`,
        [expected[middle]],
      );
      const query = listQuery(rows[0], status, 51);
      const plan = (
        await admin.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
          `EXPLAIN (ANALYZE, FORMAT JSON) ${query.text}`,
          query.values,
        )
      ).rows[0]?.['QUERY PLAN'][0]?.Plan as PlanNode;
      const all = nodes(plan);
      expect(all.map((n) => n['Node Type'])).not.toContain('Sort');
      const scan = all.find((n) => n['Node Type'] === 'Index Scan');
      expect(scan?.['Index Name']).toBe(status ? 'tenants_status_created_idx' : 'tenants_created_idx');
      expect(scan?.['Actual Rows']).toBe(51);
      expect(scan?.['Rows Removed by Filter'] ?? 0).toBe(0);
    },
  );
});

describe('/metrics at fleet size', () => {
  it('names at most 10 tenants, the busiest, and sums the rest, however many were counted', async () => {
    const { rows } = await admin.query<{ id: string; plan: string }>(
      `SELECT id, plan FROM tenantry.tenants WHERE slug LIKE 'scale-%' ORDER BY slug LIMIT 1000`,
    );
    const meter = tenantry.usage.meter;
    if (!meter) throw new Error('usage accounting is off');
    // Tenant i makes 1 + i % 50 requests: the last ten of a run of fifty are the busiest.
    rows.forEach((r, i) => {
      for (let k = 0; k <= i % 50; k++) {
        meter.recordRequest(
          { id: r.id, tier: 'pool', plan: r.plan },
          { status: 200, bytesIn: 0, bytesOut: 0, apiKey: true },
        );
      }
    });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const named = text.split('\n').filter((l) => l.includes('tenant="'));
    expect(named).toHaveLength(10);
    expect(named.every((l) => l.startsWith('tenantry_tenant_requests_top{') && l.endsWith(' 50'))).toBe(true);
    // The others are one series: 20 runs of 1 + 2 + … + 50 requests, less the ten named.
    expect(text).toMatch(/^tenantry_tenant_requests_rest 25000$/m);
    const ids = new Set(rows.map((r) => r.id));
    const mentioned = text.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g) ?? [];
    expect(mentioned.filter((id) => ids.has(id))).toHaveLength(10);
  });

  it('no scrape waits for a storage reading: the first has none yet, later ones serve the latest complete one', async () => {
    const [first] = (await admin.query<{ id: string }>(`SELECT id FROM tenantry.tenants WHERE slug = 'scale-1'`)).rows;
    const snapshot = (bytes: number) =>
      admin.query(
        `INSERT INTO tenantry.tenant_metrics (tenant_id, taken_at, tier, table_rows, storage_bytes, storage_exact, users,
                                              transactions_24h, requests_24h)
         VALUES ($1, clock_timestamp(), 'pool', '{}', $2, true, 0, 0, 0)`,
        [first?.id, bytes],
      );
    await snapshot(1234);
    const registry = new Registry();
    // Every scrape finds the readings due (age 0): each starts a refresh.
    registerUsageMetrics(registry, tenantry.usage, { storageMaxAgeMs: 0 });
    const dbRegistry = dbMetrics(tenantry, { cacheMs: 0 });
    const scrape = async () => `${await registry.metrics()}\n${await dbRegistry.metrics()}`;
    const scrapeUntil = async (pattern: RegExp) => {
      let text = '';
      for (let i = 0; i < 100 && !pattern.test(text); i++) {
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20));
        text = await scrape();
      }
      return text;
    };
    // The first scrape does not wait either: it has no storage yet, and starts the readings.
    const firstText = await scrape();
    expect(firstText).not.toMatch(/^tenantry_tier_storage_bytes\{/m);
    expect(firstText).not.toMatch(/^tenantry_db_storage_bytes\{/m);
    const both = await scrapeUntil(
      /tenantry_tier_storage_bytes\{tier="pool"\} 1234\n(?:.|\n)*tenantry_db_storage_bytes\{tier="pool"\} [1-9]/,
    );
    expect(both).toMatch(/^tenantry_tier_storage_bytes\{tier="pool"\} 1234$/m);
    expect(both).toMatch(/^tenantry_db_storage_bytes\{tier="pool"\} [1-9]\d*$/m);

    // Both readings are now blocked behind a lock: scrapes still answer, with the previous values.
    const locker = await admin.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(
        'LOCK TABLE tenantry.tenant_metrics, tenantry.tier_storage, tenantry.targets IN ACCESS EXCLUSIVE MODE',
      );
      for (let i = 0; i < 3; i++) {
        const text = await scrape();
        expect(text).toMatch(/^tenantry_tier_storage_bytes\{tier="pool"\} 1234$/m);
        expect(text).toMatch(/^tenantry_db_storage_bytes\{tier="pool"\} [1-9]\d*$/m);
      }
      await locker.query(
        `INSERT INTO tenantry.tenant_metrics (tenant_id, taken_at, tier, table_rows, storage_bytes, storage_exact, users,
                                              transactions_24h, requests_24h)
         VALUES ($1, clock_timestamp(), 'pool', '{}', 5678, true, 0, 0, 0)`,
        [first?.id],
      );
      await locker.query('COMMIT');
    } finally {
      locker.release();
    }
    // The reading blocked meanwhile completes; a later scrape serves the new one.
    const text = await scrapeUntil(/tier="pool"\} 5678$/m);
    expect(text).toMatch(/^tenantry_tier_storage_bytes\{tier="pool"\} 5678$/m);
  });
});
