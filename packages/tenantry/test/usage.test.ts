import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, cliEnvironment, runCli } from '../../../test-support/cli.ts';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { definePlans } from '../src/admit/plans.ts';
import { connectionConfig } from '../src/control/connection-url.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { type IsolationTier, type TenantRecord, Tenantry } from '../src/index.ts';

// Per-tenant usage, metering, snapshots and quotas, over real PostgreSQL, all three tiers.

const ADMIN = 'usage-admin-token';
const TIERS: IsolationTier[] = ['pool', 'schema', 'database'];

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let admin: pg.Pool;
let env: NodeJS.ProcessEnv;

function cli(...args: string[]): Promise<CliResult> {
  return runCli(env, ...args);
}

let serial = 0;
async function tenant(tier: IsolationTier, extra: { plan?: string; limits?: { maxStorageMb?: number } } = {}) {
  return tenantry.tenants.create({ slug: `u-${tier}-${++serial}`, name: `usage ${serial}`, tier, ...extra });
}

async function keyOf(t: TenantRecord): Promise<string> {
  const { key } = await tenantry.apiKeys.create(t.id, {
    name: 'app',
    environment: 'test',
    scopes: ['items:read', 'items:write'],
  });
  return key;
}

/**
 * A known load: `transactions` two-statement transactions (an insert, a one-row read),
 * `queries` one-statement `tenantry.query` reads, `failures` transactions that fail.
 */
async function load(t: TenantRecord, o: { transactions: number; queries: number; failures?: number }) {
  for (let i = 0; i < o.transactions; i++) {
    await tenantry.transaction(t, async (tx) => {
      await tx.query(`INSERT INTO items (title) VALUES ($1)`, [`item ${i}`]);
      await tx.query('SELECT count(*) FROM items');
    });
  }
  for (let i = 0; i < o.queries; i++) await tenantry.query(t, 'SELECT 1 AS one');
  for (let i = 0; i < (o.failures ?? 0); i++) {
    await expect(tenantry.transaction(t, (tx) => tx.query('SELECT * FROM no_such_table'))).rejects.toThrow();
  }
  return {
    transactions: o.transactions + o.queries + (o.failures ?? 0),
    statements: 2 * o.transactions + o.queries,
    rowsWritten: o.transactions,
    rowsRead: o.transactions + o.queries,
    errors: o.failures ?? 0,
  };
}

function within5(actual: number, expected: number): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(Math.max(0.05 * expected, 0));
}

/** A connection to a database-tier tenant's own database. */
async function tenantDatabase(t: TenantRecord): Promise<pg.Client> {
  const client = new pg.Client(connectionConfig(db.url, t.databaseName as string));
  await client.connect();
  return client;
}

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('usage', { usage: { applicationName: true } }));
  server = await startServer(tenantry, {
    adminToken: ADMIN,
    usage: { snapshotIntervalMs: 0, quotaTtlMs: 0 },
    plans: definePlans({ metered: { requestsPerMinute: 1000, requestsPerMonth: 5 } }),
  });
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
  env = cliEnvironment(db);
}, 60_000);

afterAll(async () => {
  await server?.close();
  await admin?.end();
  await tenantry?.close();
  await db?.drop();
});

describe('tenants top', () => {
  it.each(TIERS)('a %s tenant running 10× the statements of the others is first, with its figures', async (tier) => {
    // Each tier's round starts from empty buckets, so earlier rounds do not weigh in.
    await tenantry.usage.meter?.flush();
    await admin.query('DELETE FROM tenantry.tenant_usage_minutes');
    const heavy = await tenant(tier);
    const others = await Promise.all(TIERS.map((t) => tenant(t)));
    const expected = await load(heavy, { transactions: 25, queries: 50, failures: 3 });
    for (const other of others) await load(other, { transactions: 3, queries: 4 });

    const [first, ...rest] = await tenantry.usage.top({ by: 'statements', window: '15m' });
    expect(first?.tenantId).toBe(heavy.id);
    expect(first?.tier).toBe(tier);
    for (const r of rest) expect(r.statements).toBe(10);
    within5(first?.statements ?? 0, expected.statements);
    within5(first?.transactions ?? 0, expected.transactions);
    within5(first?.rowsWritten ?? 0, expected.rowsWritten);
    within5(first?.rowsRead ?? 0, expected.rowsRead);
    expect(first?.errors).toBe(expected.errors);
    expect(first?.dbTimeMs).toBeGreaterThan(0);
    expect((await tenantry.usage.top({ by: 'errors', window: '15m', limit: 1 }))[0]?.tenantId).toBe(heavy.id);

    // Over HTTP (admin token), and from the CLI, another process reading what this one wrote.
    const http = await server.request('GET', '/v1/admin/tenants/top?by=statements&window=15m&limit=3', {
      token: ADMIN,
    });
    expect(http.status).toBe(200);
    expect(http.body.tenants[0]).toMatchObject({ tenantId: heavy.id, statements: expected.statements });
    expect(http.body.tenants).toHaveLength(3);
    const out = await cli('tenants', 'top', '--by', 'statements', '--window', '15m', '--json');
    expect(out.stderr).not.toMatch(/Error/);
    expect(JSON.parse(out.stdout).tenants[0]).toMatchObject({ tenantId: heavy.id, statements: expected.statements });
  });

  it('names the tenant in application_name for the transaction only', async () => {
    const t = await tenant('pool');
    const seen = await tenantry.transaction(t, async (tx) => {
      const { rows } = await tx.query<{ mine: string; listed: string }>(
        `SELECT current_setting('application_name') AS mine,
                (SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS listed`,
      );
      return rows[0];
    });
    expect(seen).toEqual({ mine: `tenantry:${t.id}`, listed: `tenantry:${t.id}` });
    const one = await tenantry.query<{ name: string }>(t, "SELECT current_setting('application_name') AS name");
    expect(one.rows[0]?.name).toBe(`tenantry:${t.id}`);
  });

  it('refuses a bad window or ranking with a coded error, over HTTP and in the CLI', async () => {
    await expect(tenantry.usage.top({ window: '3w' })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(tenantry.usage.top({ window: '8d' })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    const r = await server.request('GET', '/v1/admin/tenants/top?by=bytes', { token: ADMIN });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('INVALID_INPUT');
    const out = await cli('tenants', 'top', '--window', 'soon');
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('INVALID_INPUT');
  });
});

describe('requests, metering and export', () => {
  it('counts requests by status class and API key use, and the export sums match the load', async () => {
    const t = await tenant('schema');
    const key = await keyOf(t);
    const expected = await load(t, { transactions: 4, queries: 2 });
    for (let i = 0; i < 5; i++) expect((await server.request('GET', '/v1/items', { token: key })).status).toBe(200);
    const missing = '00000000-0000-4000-8000-000000000000';
    for (let i = 0; i < 2; i++) {
      expect((await server.request('GET', `/v1/items/${missing}`, { token: key })).status).toBe(404);
    }
    const today = new Date().toISOString().slice(0, 10);
    const r = await server.request('GET', `/v1/tenants/${t.slug}/usage?from=${today}&to=${today}`, { token: ADMIN });
    expect(r.status).toBe(200);
    expect(r.body.days).toHaveLength(1);
    const day = r.body.days[0];
    // 5 GETs of the list and 2 of a missing item: each a tenant transaction of its own.
    expect(day).toMatchObject({
      day: today,
      tenantId: t.id,
      requests: 7,
      status2xx: 5,
      status4xx: 2,
      apiKeyRequests: 7,
      errors: 0,
      rowsWritten: expected.rowsWritten,
    });
    expect(day.transactions).toBeGreaterThanOrEqual(expected.transactions + 7);
    expect(day.bytesOut).toBeGreaterThan(0);

    const csv = await fetch(`${server.url}/v1/tenants/${t.id}/usage?from=${today}&to=${today}&format=csv`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toContain('text/csv');
    const [header, line] = (await csv.text()).trim().split('\r\n');
    const cells = Object.fromEntries((header ?? '').split(',').map((h, i) => [h, (line ?? '').split(',')[i]]));
    expect(cells).toMatchObject({ day: today, tenant_id: t.id, requests: '7', api_key_requests: '7' });
    expect(Number(cells.transactions)).toBe(day.transactions);

    const out = await cli('usage', 'export', '--tenant', t.slug, '--from', today, '--to', today, '--format', 'json');
    expect(JSON.parse(out.stdout).days[0]).toMatchObject({ requests: 7, transactions: day.transactions });
  });

  it('refuses bad dates, and an unknown tenant is 404', async () => {
    const t = await tenant('pool');
    for (const q of [
      'from=2026-13-01&to=2026-12-01',
      'from=2026-12-05&to=2026-12-01',
      'from=2020-01-01&to=2026-01-01',
    ]) {
      const r = await server.request('GET', `/v1/tenants/${t.id}/usage?${q}`, { token: ADMIN });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('INVALID_INPUT');
    }
    const r = await server.request('GET', '/v1/tenants/nobody-here/usage?from=2026-12-01&to=2026-12-02', {
      token: ADMIN,
    });
    expect(r.status).toBe(404);
  });

  it("is admin-only: a tenant's own key reads neither its usage nor another's", async () => {
    const a = await tenant('pool');
    const b = await tenant('database');
    const keyA = await keyOf(a);
    for (const path of [
      `/v1/tenants/${b.id}/usage?from=2026-12-01&to=2026-12-31`,
      `/v1/tenants/${a.id}/usage?from=2026-12-01&to=2026-12-31`,
      `/v1/tenants/${b.id}/performance`,
      '/v1/admin/tenants/top',
    ]) {
      const r = await server.request('GET', path, { token: keyA });
      expect(r.status, path).toBe(401);
      expect(JSON.stringify(r.body)).not.toContain(b.id);
    }
  });
});

describe('snapshots', () => {
  it('row counts equal count(*) per tenant in each tier; schema and database storage is exact', async () => {
    const tenants = await Promise.all(TIERS.map((t) => tenant(t)));
    for (const [i, t] of tenants.entries()) await load(t, { transactions: 5 + 3 * i, queries: 0 });
    const taken = await tenantry.usage.snapshot({ tenants: tenants.map((t) => t.id) });
    expect(taken).toHaveLength(3);
    for (const t of tenants) {
      const snap = taken.find((s) => s.tenantId === t.id);
      expect(snap?.tier).toBe(t.tier);
      const count = async (table: string): Promise<number> => {
        if (t.tier === 'pool') {
          const { rows } = await admin.query(`SELECT count(*)::int AS n FROM public.${table} WHERE tenant_id = $1`, [
            t.id,
          ]);
          return rows[0].n;
        }
        if (t.tier === 'schema') {
          const { rows } = await admin.query(`SELECT count(*)::int AS n FROM "${t.schemaName}".${table}`);
          return rows[0].n;
        }
        const client = await tenantDatabase(t);
        try {
          return (await client.query(`SELECT count(*)::int AS n FROM public.${table}`)).rows[0].n;
        } finally {
          await client.end();
        }
      };
      expect(Object.keys(snap?.tableRows ?? {}).sort()).toEqual(['items', 'tenant_usage']);
      for (const [table, n] of Object.entries(snap?.tableRows ?? {}))
        expect(n, `${t.tier} ${table}`).toBe(await count(table));
      expect(snap?.tableRows.items).toBe(5 + 3 * TIERS.indexOf(t.tier));

      const sizeSql = `SELECT sum(pg_total_relation_size(format('%I.%I', schemaname, tablename)::regclass))::int8 AS n
                         FROM pg_tables WHERE schemaname = $1 AND tablename IN ('items', 'tenant_usage')`;
      if (t.tier === 'schema') {
        expect(snap?.storageExact).toBe(true);
        expect(snap?.storageBytes).toBe(Number((await admin.query(sizeSql, [t.schemaName])).rows[0].n));
      } else if (t.tier === 'database') {
        const client = await tenantDatabase(t);
        try {
          expect(snap?.storageExact).toBe(true);
          expect(snap?.storageBytes).toBe(Number((await client.query(sizeSql, ['public'])).rows[0].n));
        } finally {
          await client.end();
        }
      } else {
        expect(snap?.storageExact).toBe(false);
        expect(snap?.storageBytes).toBeGreaterThan(0);
      }
    }
    // Stored, and the day's metering row carries the storage.
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM tenantry.tenant_metrics WHERE tenant_id = ANY($1::uuid[])`,
      [tenants.map((t) => t.id)],
    );
    expect(rows[0].n).toBe(3);
    const today = new Date().toISOString().slice(0, 10);
    const days = await tenantry.usage.daily(tenants[1]?.id as string, { from: today, to: today });
    expect(days[0]?.storageBytes).toBe(taken.find((s) => s.tenantId === tenants[1]?.id)?.storageBytes);
  });

  it('the performance report: usage, slowest statements, storage trend, the median tenant', async () => {
    const t = await tenant('schema');
    await load(t, { transactions: 4, queries: 0 });
    await tenantry.transaction(t, (tx) => tx.query('SELECT pg_sleep(0.05) AS slow_one'));
    await tenantry.usage.snapshot({ tenants: [t.id] });
    const r = await server.request('GET', `/v1/tenants/${t.slug}/performance?window=1h`, { token: ADMIN });
    expect(r.status).toBe(200);
    expect(r.body.usage.transactions).toBe(5);
    expect(r.body.slowStatements[0].sql).toContain('pg_sleep(0.05)');
    expect(r.body.slowStatements[0].maxMs).toBeGreaterThanOrEqual(50);
    expect(r.body.slowStatementsSource).toContain('pg_stat_statements');
    expect(r.body.storageTrend.length).toBeGreaterThanOrEqual(1);
    expect(r.body.storageTrend.at(-1).rows).toBe(5); // 4 items, and the one row of the storage counter table
    expect(r.body.tenantsActive).toBeGreaterThanOrEqual(1);
    expect(r.body.medianTenant).toHaveProperty('transactions');
    expect(r.body.medianStorageBytes).toBeGreaterThan(0);
  });
});

describe('quotas', () => {
  it('requests per month: the plan quota is enforced from the metering rows (429 with Retry-After)', async () => {
    const t = await tenant('pool', { plan: 'metered' });
    const key = await keyOf(t);
    for (let i = 0; i < 3; i++) expect((await server.request('GET', '/v1/items', { token: key })).status).toBe(200);
    // Written by the flush: the quota reads the table plus what is not written yet.
    await tenantry.usage.meter?.flush();
    for (let i = 0; i < 2; i++) expect((await server.request('GET', '/v1/items', { token: key })).status).toBe(200);
    const refused = await server.request('GET', '/v1/items', { token: key });
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe('REQUEST_QUOTA_EXCEEDED');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(1);
    // Another tenant of the same plan is not affected.
    const other = await tenant('pool', { plan: 'metered' });
    expect((await server.request('GET', '/v1/items', { token: await keyOf(other) })).status).toBe(200);
  });

  it.each(['schema', 'database'] as const)(
    'storage (%s tier): writes are refused over maxStorageMb by the latest snapshot, reads pass',
    async (tier) => {
      const t = await tenant(tier, { limits: { maxStorageMb: 1 } });
      const key = await keyOf(t);
      expect((await server.request('POST', '/v1/items', { token: key, body: { title: 'fits' } })).status).toBe(201);
      await tenantry.usage.snapshot({ tenants: [t.id] });
      // Storage grows past 1 MB (written beside the server: what the snapshot then measures).
      await tenantry.transaction(t, (tx) =>
        tx.query(
          `INSERT INTO items (title, description) SELECT 'bulk ' || g, repeat(md5(g::text), 40) FROM generate_series(1, 2000) g`,
        ),
      );
      const [snap] = await tenantry.usage.snapshot({ tenants: [t.id] });
      expect(snap?.storageBytes).toBeGreaterThan(1024 * 1024);
      const refused = await server.request('POST', '/v1/items', { token: key, body: { title: 'too much' } });
      expect(refused.status).toBe(403);
      expect(refused.body.code).toBe('STORAGE_QUOTA_EXCEEDED');
      expect((await server.request('GET', '/v1/items', { token: key })).status).toBe(200);
    },
  );
});

describe('Prometheus', () => {
  it('per-tier and per-plan gauges, and no tenant id as a label but the top 10', async () => {
    const t = await tenant('schema');
    await load(t, { transactions: 1, queries: 1 });
    await tenantry.usage.snapshot({ tenants: [t.id] });
    // Storage per tier is read in the background: the first scrape starts the reading.
    let text = '';
    for (let i = 0; i < 100 && !/^tenantry_tier_storage_bytes\{tier="schema"\}/m.test(text); i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      text = await (await fetch(`${server.url}/metrics`)).text();
    }
    expect(text).toMatch(/^tenantry_tenant_transactions_total\{tier="schema",plan="free"\} \d+/m);
    expect(text).toMatch(/^tenantry_tenant_transaction_errors_total\{tier="pool",plan="free"\} \d+/m);
    expect(text).toMatch(/^tenantry_tenant_db_seconds_total\{tier="database",plan="free"\} [\d.e-]+/m);
    expect(text).toMatch(/^tenantry_tier_storage_bytes\{tier="schema"\} [1-9]\d*/m);
    const withTenant = text.split('\n').filter((l) => l.includes(t.id));
    expect(withTenant.every((l) => l.startsWith('tenantry_tenant_requests_top{'))).toBe(true);
  });
});

describe('across instances, upkeep and erasure', () => {
  it('two instances counting the same tenant add up in the table', async () => {
    const other = await Tenantry.connect({
      databaseUrl: db.url,
      secret: db.secret,
      roles: db.roles,
      migrations: itemsMigrations,
    });
    try {
      const t = await tenant('pool');
      const mine = await load(t, { transactions: 3, queries: 5 });
      const theirs = { queries: 7 };
      for (let i = 0; i < theirs.queries; i++) await other.query(t, 'SELECT 1 AS one');
      await other.usage.meter?.flush();
      const top = await tenantry.usage.top({ by: 'transactions', window: '5m', limit: 1000 });
      const row = top.find((r) => r.tenantId === t.id);
      expect(row?.transactions).toBe(mine.transactions + theirs.queries);
      expect(row?.statements).toBe(mine.statements + theirs.queries);
    } finally {
      await other.close();
    }
  });

  it('upkeep creates the coming months’ metering partitions and drops old minute buckets', async () => {
    const t = await tenant('pool');
    await admin.query(
      `INSERT INTO tenantry.tenant_usage_minutes (minute, tenant_id, transactions) VALUES (now() - interval '8 days', $1, 1)`,
      [t.id],
    );
    await tenantry.usage.upkeep({ monthsAhead: 5 });
    const { rows } = await admin.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'tenantry.tenant_usage_daily'::regclass ORDER BY 1`,
    );
    const month = (ahead: number) => {
      const d = new Date();
      const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + ahead, 1));
      return `tenant_usage_daily_${m.getUTCFullYear()}_${String(m.getUTCMonth() + 1).padStart(2, '0')}`;
    };
    const names = rows.map((r) => r.name);
    for (let i = 0; i <= 5; i++) expect(names).toContain(month(i));
    expect(names).toContain('tenant_usage_daily_default');
    const old = await admin.query('SELECT 1 FROM tenantry.tenant_usage_minutes WHERE tenant_id = $1', [t.id]);
    expect(old.rowCount).toBe(0);
  });

  it.each(TIERS)('erasing a %s tenant removes its usage, metering and snapshots', async (tier) => {
    const t = await tenant(tier);
    await load(t, { transactions: 2, queries: 1 });
    await tenantry.usage.snapshot({ tenants: [t.id] });
    await tenantry.usage.meter?.flush();
    const count = async () => {
      const { rows } = await admin.query(
        `SELECT (SELECT count(*) FROM tenantry.tenant_usage_minutes WHERE tenant_id = $1)
              + (SELECT count(*) FROM tenantry.tenant_usage_daily WHERE tenant_id = $1)
              + (SELECT count(*) FROM tenantry.tenant_metrics WHERE tenant_id = $1) AS n`,
        [t.id],
      );
      return Number(rows[0].n);
    };
    expect(await count()).toBeGreaterThanOrEqual(3);
    await tenantry.eraseTenant(t.id, { actor: 'test' });
    await tenantry.usage.meter?.flush();
    expect(await count()).toBe(0);
  });
});
