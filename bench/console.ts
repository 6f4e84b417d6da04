/**
 * The operator console's tenant list at fleet size: `GET /console/tenants` (HTML, 50 tenants
 * a page with their 24 h request and DB-time sparklines) over N tenants (default 100,000),
 * against the REST list it stands beside, `GET /v1/tenants?limit=50` (JSON, no usage), in
 * the same run, alternating request by request. Target: under 200 ms per page.
 *
 * The tenants are inserted with one `INSERT … SELECT generate_series` into a database of the
 * benchmark's own (creating 100,000 through the API would take most of an hour and is not
 * what is measured), with usage rows for a tenth of them in the last 24 h (6 minutes each),
 * so the sparklines read real rows. Timed on loopback from the client: the server's time
 * plus one local round trip, an upper bound of the server time.
 *
 *   npm run bench -- console [--tenants 100000] [--requests 40] [--keep]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the database is dropped at the end unless `--keep`.
 */
import { parseArgs } from 'node:util';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl } from './lib/argv.ts';
import { type ConsoleServer, startConsoleServer } from './lib/console-server.ts';
import { createBenchDatabase } from './lib/database.ts';
import { fixed, log, since } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median, quantile } from './lib/stats.ts';

const USAGE = 'usage: npm run bench -- console [--tenants 100000] [--requests 40] [--keep]\n';
const ADMIN = 'bench-console-admin-token-0123456789';
const TARGET_MS = 200;

interface Scenario {
  readonly name: string;
  /** Path of the console page; `undefined` cursor for the first page. */
  readonly console: (cursor?: string) => string;
  /** The REST request it is compared with. */
  readonly rest: (cursor?: string) => string;
  /** Follow the next-page cursor this many times before timing (a deep page). */
  readonly depth: number;
}

const SCENARIOS: readonly Scenario[] = [
  { name: 'first page, newest first', console: () => '/console/tenants', rest: () => '/v1/tenants?limit=50', depth: 0 },
  {
    name: 'page 200 (tenants 10,000–10,050)',
    console: (c) => `/console/tenants${c ? `?cursor=${c}` : ''}`,
    rest: (c) => `/v1/tenants?limit=50${c ? `&cursor=${c}` : ''}`,
    depth: 200,
  },
  { name: 'sorted by name', console: () => '/console/tenants?sort=name', rest: () => '/v1/tenants?limit=50', depth: 0 },
  {
    name: 'sorted by slug, descending',
    console: () => '/console/tenants?sort=slug&dir=desc',
    rest: () => '/v1/tenants?limit=50',
    depth: 0,
  },
  {
    name: 'search: slug prefix',
    console: () => '/console/tenants?q=bench-4242',
    rest: () => '/v1/tenants?limit=50',
    depth: 0,
  },
  {
    name: 'search: name prefix',
    console: () => '/console/tenants?q=Bench%20tenant%20777',
    rest: () => '/v1/tenants?limit=50',
    depth: 0,
  },
  {
    name: 'status filter (suspended)',
    console: () => '/console/tenants?status=suspended',
    rest: () => '/v1/tenants?limit=50&status=suspended',
    depth: 0,
  },
];

export async function main(argv: readonly string[]): Promise<number> {
  let values: { tenants?: string; requests?: string; keep?: boolean };
  try {
    values = parseArgs({
      args: [...argv],
      options: { tenants: { type: 'string' }, requests: { type: 'string' }, keep: { type: 'boolean', default: false } },
    }).values;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const tenants = Number(values.tenants ?? 100_000);
  const requests = Number(values.requests ?? 40);
  if (!Number.isInteger(tenants) || tenants < 100 || !Number.isInteger(requests) || requests < 3) {
    process.stderr.write(USAGE);
    return 2;
  }
  const db = await createBenchDatabase(benchDatabaseUrl());
  const tenantry = await Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles, migrations: [] });
  let app: ConsoleServer['app'] | undefined;
  try {
    await tenantry.setup();
    const t0 = performance.now();
    await tenantry.adminPool.query(
      `INSERT INTO tenantry.tenants (slug, name, tier, placement_id, plan, status, created_at)
       SELECT 'bench-' || i, 'Bench tenant ' || i, 'pool', (SELECT id FROM tenantry.placements WHERE name = 'shared'),
              (ARRAY['free', 'pro', 'enterprise'])[1 + i % 3], CASE WHEN i % 97 = 0 THEN 'suspended' ELSE 'active' END,
              now() - make_interval(secs => i)
         FROM generate_series(1, $1::int) i`,
      [tenants],
    );
    await tenantry.adminPool.query(
      `INSERT INTO tenantry.tenant_usage_minutes (minute, tenant_id, requests, transactions, statements, db_time_ms)
       SELECT date_trunc('minute', now() - make_interval(mins => k * 233 % 1440)), t.id, 10 + k, 10 + k, 20 + k, 3.5 * k
         FROM (SELECT id FROM tenantry.tenants WHERE hashtext(slug) % 10 = 0) t, generate_series(1, 6) k
       ON CONFLICT DO NOTHING`,
    );
    await tenantry.adminPool.query('ANALYZE tenantry.tenants; ANALYZE tenantry.tenant_usage_minutes');
    log(`${tenants.toLocaleString('en')} tenants and their usage rows inserted in ${since(t0)}`);

    const started = await startConsoleServer(tenantry as Tenantry<unknown>, ADMIN);
    app = started.app;
    const { base, cookie } = started;

    const timed = async (path: string, headers: Record<string, string>): Promise<{ ms: number; body: string }> => {
      const start = performance.now();
      const response = await fetch(`${base}${path}`, { headers });
      const body = await response.text();
      const ms = performance.now() - start;
      if (response.status !== 200) throw new Error(`${path}: ${response.status} ${body.slice(0, 200)}`);
      return { ms, body };
    };
    const consoleHeaders = { cookie, accept: 'text/html' };
    const restHeaders = { authorization: `Bearer ${ADMIN}` };

    const { rows } = await tenantry.adminPool.query<{ server_version: string }>('SHOW server_version');
    const machine = await describeMachine(rows[0]?.server_version ?? 'unknown');
    log(
      `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.node}, PostgreSQL ${machine.postgres}`,
    );
    log(`load average before: ${machine.loadAverage.join(' ')}`);
    log('');
    log('| scenario | console median | console p95 | REST median | REST p95 | console/REST | target < 200 ms |');
    log('| --- | --: | --: | --: | --: | --: | --- |');
    // Warm-up, not timed: the first requests of a process compile templates, plans and JIT code.
    for (let i = 0; i < 20; i++) {
      await timed('/console/tenants', consoleHeaders);
      await timed('/v1/tenants?limit=50', restHeaders);
    }
    let met = true;
    for (const s of SCENARIOS) {
      // Walk to the page (not timed): the cursors the page links to.
      let consoleCursor: string | undefined;
      let restCursor: string | undefined;
      for (let i = 0; i < s.depth; i++) {
        const page = await timed(s.console(consoleCursor), consoleHeaders);
        consoleCursor = /[?&]cursor=([A-Za-z0-9_-]+)" rel="next"/.exec(page.body)?.[1];
        const rest = JSON.parse((await timed(s.rest(restCursor), restHeaders)).body) as { nextCursor?: string };
        restCursor = rest.nextCursor;
      }
      const consoleMs: number[] = [];
      const restMs: number[] = [];
      const ratios: number[] = [];
      for (let i = 0; i < requests + 2; i++) {
        const c = await timed(s.console(consoleCursor), consoleHeaders);
        const r = await timed(s.rest(restCursor), restHeaders);
        if (i < 2) continue; // warm-up
        consoleMs.push(c.ms);
        restMs.push(r.ms);
        ratios.push(c.ms / r.ms);
      }
      const sortedC = [...consoleMs].sort((a, b) => a - b);
      const sortedR = [...restMs].sort((a, b) => a - b);
      const m = median(consoleMs);
      met &&= m < TARGET_MS;
      log(
        `| ${s.name} | ${fixed(m, 1)} ms | ${fixed(quantile(sortedC, 0.95), 1)} ms | ${fixed(median(restMs), 1)} ms | ${fixed(
          quantile(sortedR, 0.95),
          1,
        )} ms | ${fixed(median(ratios), 2)} | ${m < TARGET_MS ? 'met' : 'MISSED'} |`,
      );
    }
    log('');
    log(`load average after: ${(await describeMachine(machine.postgres)).loadAverage.join(' ')}`);
    log(met ? 'target met: every console page under 200 ms (median)' : 'target MISSED on at least one page');
    return 0;
  } finally {
    await app?.close();
    await tenantry.close();
    if (!values.keep) await db.drop();
    else log(`kept database ${db.name}`);
  }
}
