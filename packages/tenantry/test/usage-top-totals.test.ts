import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { type TenantRecord, Tenantry, type UsageRanking } from '../src/index.ts';
import { figures } from '../src/ops/usage-figures.ts';
import { USAGE_RANKINGS } from '../src/ops/usage-service.ts';
import { scanTop, totalsTop, totalsTopSql } from '../src/ops/usage-top.ts';

// `usage.top` over 15m, 1h and 24h is read from running per-tenant totals (migration 0026).
// Every answer here is compared with the sum of the per-minute rows (`scanTop`), the
// implementation the totals replace: same tenants, same order, same figures.

const ADMIN = 'usage-top-admin-token';
/** The windows served from totals, in every spelling, and their lengths in minutes. */
const SERVED = { '15m': 15, '1h': 60, '60m': 60, '24h': 1440, '1d': 1440, '1440m': 1440 } as const;

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let admin: pg.Pool;
const tenants: TenantRecord[] = [];

/** The API's lines for the scan's rows. */
const asTop = (rows: Awaited<ReturnType<typeof scanTop>>) =>
  rows.map((r) => ({
    tenantId: String(r.tenant_id),
    slug: String(r.slug),
    tier: String(r.tier),
    plan: String(r.plan),
    ...figures(r),
  }));

const INTERVAL: Record<number, string> = { 15: '15 minutes', 60: '60 minutes', 1440: '1440 minutes' };

/** Every served window and ranking, through the API and the totals directly, against the scan. */
async function expectTotalsEqualScan(limits: readonly number[] = [3, 1000]): Promise<number> {
  let compared = 0;
  for (const [window, minutes] of Object.entries(SERVED)) {
    for (const by of USAGE_RANKINGS as UsageRanking[]) {
      for (const limit of limits) {
        const scanned = asTop(await scanTop(admin, by, INTERVAL[minutes] as string, limit));
        const api = await tenantry.usage.top({ by, window, limit });
        const totals = await totalsTop(admin, by, minutes, limit);
        expect(totals, `${window} by ${by}: read from totals`).toBeDefined();
        expect(asTop(totals ?? []), `${window} by ${by} limit ${limit}`).toEqual(scanned);
        expect(api, `${window} by ${by} limit ${limit} (API)`).toEqual(scanned);
        compared += scanned.length;
      }
    }
  }
  return compared;
}

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('usage-top'));
  server = await startServer(tenantry, { adminToken: ADMIN, usage: { snapshotIntervalMs: 0 } });
  admin = new pg.Pool({ connectionString: db.url, max: 6 });
  for (let i = 0; i < 14; i++) {
    tenants.push(
      await tenantry.tenants.create({ slug: `top-${i}`, name: `top ${i}`, tier: 'pool', plan: ['free', 'pro'][i % 2] }),
    );
  }
}, 60_000);

afterAll(async () => {
  await server?.close();
  await admin?.end();
  await tenantry?.close();
  await db?.drop();
});

describe('usage.top from running window totals', () => {
  it('equals the sum of the minutes for every served window and ranking, as minutes leave the windows', async () => {
    // Start every window's totals 40 minutes earlier than now calls for. There are no
    // per-minute rows yet, so the totals stay right; the rows written next into those 40
    // minutes are counted, and must be subtracted when top() finds the windows behind.
    const { rowCount } = await admin.query('SELECT 1 FROM tenantry.tenant_usage_minutes');
    expect(rowCount).toBe(0);
    await admin.query(`UPDATE tenantry.tenant_usage_windows SET since = since - interval '40 minutes'`);

    // Rows at and around every window's edges (0 = the current minute), with values that
    // tie on some rankings and not on others, fractional milliseconds included.
    const offsets = [0, 1, 5, 14, 15, 16, 20, 30, 59, 60, 61, 75, 300, 1439, 1440, 1441, 1460, 1479, 2000];
    const ids: string[] = [];
    const minutes: number[] = [];
    for (const [i, t] of tenants.entries()) {
      for (const [k, offset] of offsets.entries()) {
        if ((i + k) % 3 === 0) continue;
        ids.push(t.id);
        minutes.push(offset);
      }
    }
    await admin.query(
      `INSERT INTO tenantry.tenant_usage_minutes AS m (minute, tenant_id, transactions, statements, db_time_ms,
              rows_read, rows_written, errors, requests, status_2xx, status_5xx, bytes_in, bytes_out, api_key_requests)
       SELECT date_trunc('minute', now()) - make_interval(mins => o), id,
              1 + (k * 7) % 11, 2 + (k * 5) % 13, ((k * 37) % 101) * 0.731 + 0.25, (k * 3) % 17, k % 5, k % 2,
              (k * 11) % 9, (k * 11) % 9, k % 3, k * 100, k * 300, k % 4
         FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS x(id, o, k)`,
      [ids, minutes],
    );
    // A second writer adding to some of the same minutes (another instance's flush), and
    // the deletes of upkeep and erasure.
    await admin.query(
      `INSERT INTO tenantry.tenant_usage_minutes AS m (minute, tenant_id, transactions, statements, db_time_ms, requests)
       SELECT minute, tenant_id, 3, 4, 1.5, 2 FROM tenantry.tenant_usage_minutes WHERE tenant_id = ANY ($1)
       ON CONFLICT (minute, tenant_id) DO UPDATE SET transactions = m.transactions + excluded.transactions,
         statements = m.statements + excluded.statements, db_time_ms = m.db_time_ms + excluded.db_time_ms,
         requests = m.requests + excluded.requests`,
      [[tenants[1]?.id, tenants[4]?.id]],
    );
    await admin.query(
      `DELETE FROM tenantry.tenant_usage_minutes WHERE tenant_id = $1 AND minute >= date_trunc('minute', now()) - interval '30 minutes'`,
      [tenants[2]?.id],
    );
    await tenantry.eraseTenant(tenants[3]?.id as string, { actor: 'test' });

    // The windows are 40 minutes behind: the first read advances them.
    const before = await admin.query<{ behind: boolean }>(
      `SELECT bool_and(since < date_trunc('minute', now()) - make_interval(mins => window_minutes)) AS behind
         FROM tenantry.tenant_usage_windows`,
    );
    expect(before.rows[0]?.behind).toBe(true);
    expect(await expectTotalsEqualScan()).toBeGreaterThan(100);
    const after = await admin.query<{ current: boolean }>(
      `SELECT bool_and(since >= date_trunc('minute', now()) - make_interval(mins => window_minutes)) AS current
         FROM tenantry.tenant_usage_windows`,
    );
    expect(after.rows[0]?.current).toBe(true);
    // Tenants whose every minute left a window have no total there any more.
    const { rows: empty } = await admin.query('SELECT 1 FROM tenantry.tenant_usage_window_totals WHERE minutes <= 0');
    expect(empty).toHaveLength(0);

    // Real flushes on top, from this process's meter.
    for (const [i, t] of tenants.entries()) {
      if (i === 3) continue;
      for (let q = 0; q < (i % 4) + 1; q++) await tenantry.query(t, 'SELECT 1 AS one');
    }
    await tenantry.usage.meter?.flush();
    await expectTotalsEqualScan([5]);
  });

  it('other windows are answered by summing the minutes, with the same figures', async () => {
    for (const window of ['5m', '2h', '7d']) {
      const minutes = { '5m': 5, '2h': 120, '7d': 10_080 }[window] as number;
      expect(await totalsTop(admin, 'requests', minutes, 10)).toBeUndefined();
      const api = await tenantry.usage.top({ by: 'requests', window, limit: 10 });
      const scanned = asTop(await scanTop(admin, 'requests', `${minutes} minutes`, 10));
      expect(api).toEqual(scanned);
    }
    expect((await tenantry.usage.top({ by: 'requests', window: '7d', limit: 1000 })).length).toBeGreaterThan(5);
  });

  it('stays exact with several instances flushing, edge writes, deletes and advances across a minute boundary', async () => {
    // Start a few seconds before a minute ends (database clock), so that the boundary,
    // where minutes leave every window, falls while everything below runs at once.
    for (;;) {
      const { rows } = await admin.query<{ s: number }>(`SELECT extract(second FROM now())::float8 AS s`);
      const s = rows[0]?.s ?? 0;
      if (s >= 52 && s < 56) break;
      await new Promise((resolve) => setTimeout(resolve, s < 52 ? (52 - s) * 1000 : (60 - s + 52) * 1000));
    }
    const others = await Promise.all(
      [1, 2].map(() =>
        Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles, migrations: itemsMigrations }),
      ),
    );
    const live = tenants.filter((_, i) => i !== 3);
    const until = Date.now() + 10_000;
    const pick = (n: number) => live[n % live.length] as TenantRecord;
    try {
      const instance = async (t: Tenantry<unknown>, seed: number) => {
        for (let n = seed; Date.now() < until; n += 3) {
          await t.query(pick(n), 'SELECT 1 AS one');
          if (n % 4 === 0) await t.usage.meter?.flush();
        }
        await t.usage.meter?.flush();
      };
      // Late and early writes at every window's edge: the minute leaving it, and the one before.
      const edges = async (seed: number) => {
        for (let n = seed; Date.now() < until; n++) {
          await admin.query(
            `INSERT INTO tenantry.tenant_usage_minutes AS m (minute, tenant_id, transactions, requests, db_time_ms)
               SELECT date_trunc('minute', now()) - make_interval(mins => w), $1, 1, 2, 0.5
                 FROM unnest(ARRAY[15, 16, 60, 61, 1440, 1441]) w
               ON CONFLICT (minute, tenant_id) DO UPDATE SET transactions = m.transactions + 1,
                 requests = m.requests + 2, db_time_ms = m.db_time_ms + 0.5`,
            [pick(n * 7).id],
          );
        }
      };
      const deletes = async () => {
        for (let n = 0; Date.now() < until; n++) {
          await admin.query(
            `DELETE FROM tenantry.tenant_usage_minutes
                WHERE tenant_id = $1 AND minute = date_trunc('minute', now()) - make_interval(mins => $2)`,
            [pick(n * 5).id, [15, 60, 1440][n % 3]],
          );
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      const readers = async () => {
        for (let n = 0; Date.now() < until; n++) {
          await tenantry.usage.top({ by: USAGE_RANKINGS[n % 6] as UsageRanking, window: '15m', limit: 5 });
          await admin.query('SELECT tenantry.usage_windows_advance()');
        }
      };
      const results = await Promise.allSettled([
        instance(tenantry, 0),
        ...others.map((t, i) => instance(t, i + 1)),
        edges(0),
        edges(1),
        deletes(),
        readers(),
      ]);
      for (const r of results) expect(r.status === 'rejected' ? String(r.reason) : 'ok').toBe('ok');
    } finally {
      await Promise.all(others.map((t) => t.close()));
    }
    expect(await expectTotalsEqualScan([1000])).toBeGreaterThan(50);
  }, 120_000);

  it('a TRUNCATE of the minute rows empties the totals', async () => {
    expect((await tenantry.usage.top({ window: '24h' })).length).toBeGreaterThan(0);
    await admin.query('TRUNCATE tenantry.tenant_usage_minutes');
    for (const window of Object.keys(SERVED)) expect(await tenantry.usage.top({ window })).toEqual([]);
    await expectTotalsEqualScan([10]);
  });
});

describe('the statement of each ranking', () => {
  it.each(USAGE_RANKINGS as UsageRanking[])('by %s reads its index in order, with no sort', async (by) => {
    const client = await admin.connect();
    try {
      // Without a sequential scan or a sort to choose, the plan shows whether the ranking's
      // index serves its ORDER BY … LIMIT (an expression that differs from the index's would not).
      await client.query('BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off');
      const sql = totalsTopSql(by).replaceAll('$1', '15').replaceAll('$2', '10');
      const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${sql}`);
      // The LIMIT's input: an index scan of the ranking's index, not a sort of the window.
      type Node = { 'Node Type': string; 'Index Name'?: string; Plans?: Node[] };
      const limits: Node[] = [];
      const walk = (n: Node) => {
        if (n['Node Type'] === 'Limit') limits.push(n);
        for (const c of n.Plans ?? []) walk(c);
      };
      walk(rows[0]['QUERY PLAN'][0].Plan);
      expect(limits.map((l) => [l.Plans?.[0]?.['Node Type'], l.Plans?.[0]?.['Index Name']])).toEqual([
        ['Index Scan', `tenant_usage_window_totals_${by}_idx`],
      ]);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });
});

describe('usage.top is control plane only', () => {
  it("a tenant's API key gets no top, and the runtime role reads no totals", async () => {
    const t = tenants[0] as TenantRecord;
    const { key } = await tenantry.apiKeys.create(t.id, { name: 'app', environment: 'test', scopes: ['items:read'] });
    const r = await server.request('GET', '/v1/admin/tenants/top?window=15m', { token: key });
    expect(r.status).toBe(401);
    expect(JSON.stringify(r.body)).not.toContain(tenants[1]?.id);
    const ok = await server.request('GET', '/v1/admin/tenants/top?window=15m', { token: ADMIN });
    expect(ok.status).toBe(200);

    const client = await admin.connect();
    try {
      for (const sql of [
        'SELECT * FROM tenantry.tenant_usage_window_totals',
        'SELECT * FROM tenantry.tenant_usage_windows',
        'SELECT tenantry.usage_windows_advance()',
      ]) {
        await client.query(`BEGIN; SET LOCAL ROLE "${db.roles.runtime}"`);
        await expect(client.query(sql)).rejects.toMatchObject({ code: '42501' });
        await client.query('ROLLBACK');
      }
    } finally {
      client.release();
    }
  });
});
