/**
 * Soak: the reference server under a mixed tenant load for an hour, to show that it keeps
 * answering correctly and does not grow. One process: the server (`createServer`, as
 * `tenantry serve` builds it, rate limits in-process on a plan no run can exhaust) and the
 * load generator (keep-alive `node:http` clients on loopback).
 *
 *   npm run soak -- --minutes 60 [--tenants 1000] [--schema-tenants 100] [--database-tenants 10]
 *                   [--movers 6] [--churn-seconds 15] [--connections 16] [--seed 5]
 *                   [--warmup-minutes 5] [--out bench/results/soak]
 *
 * Tenants live on all three tiers. Each connection loops over random tenants: reads of an
 * item (200), lists (200), full-text searches (200), creates (201), updates (200) and deletes
 * (204) of the items it created, and now and then a read of another tenant's item with this
 * tenant's key, which must be 404. Meanwhile an operator moves tenants between tiers
 * (pool → schema → database → pool) and suspends tenants for 10 s: their requests must then
 * answer as documented (403 `TENANT_SUSPENDED`; 503 `TENANT_MOVING`/`TENANT_MOVED` for a
 * write during a move) — counted as "refused", not errors; around each change, for 2 s,
 * either state's answer is accepted. Any other status, a network error or a request slower
 * than 10 s is an error.
 *
 * Every 30 s a sample (throughput, errors, p50/p99, RSS, heap used, heap live after a full
 * collection when run with `--expose-gc`, as `npm run soak` does) goes to `<out>.csv`; at the
 * end the samples are drawn to `<out>.png`. Exits 1 when any request erred, a cross-tenant
 * read succeeded or a move or suspension failed.
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the soak works in a database of its own (`tenantry_bench_<random>`), and drops it and the
 * tenant databases it made.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { definePlans } from '../packages/tenantry/src/admit/plans.ts';
import { tenantDatabasePrefix } from '../packages/tenantry/src/control/connection-url.ts';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { createServer } from '../packages/tenantry/src/http/server.ts';
import { type IsolationTier, Tenantry } from '../packages/tenantry/src/index.ts';
import { describeMachine } from './http/system.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { prng, vocabulary } from './lib/dataset.ts';
import { log } from './lib/print.ts';
import { SampleLog, slope } from './lib/soak-samples.ts';
import { judge, type SoakTenant, startChurn } from './lib/soak-tenants.ts';
import { quantile } from './lib/stats.ts';

const PLAN = 'soak';
const REPORT_EVERY_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
/** Items one connection keeps alive at most; past it, a create becomes a delete, so tables stay bounded. */
const OWNED_MAX = 200;
/** Latencies kept per period and for the whole run (reservoir samples: memory stays flat however long the run). */
const RESERVOIR = 100_000;

interface Options {
  readonly databaseUrl: string;
  readonly minutes: number;
  readonly tenants: number;
  readonly schemaTenants: number;
  readonly databaseTenants: number;
  readonly movers: number;
  readonly churnSeconds: number;
  readonly connections: number;
  readonly seed: number;
  readonly warmupMinutes: number;
  readonly out: string;
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      minutes: { type: 'string' },
      tenants: { type: 'string' },
      'schema-tenants': { type: 'string' },
      'database-tenants': { type: 'string' },
      movers: { type: 'string' },
      'churn-seconds': { type: 'string' },
      connections: { type: 'string' },
      seed: { type: 'string' },
      'warmup-minutes': { type: 'string' },
      out: { type: 'string' },
    },
  });
  const minutes = positive(values.minutes, 60, '--minutes', false);
  const tenants = positive(values.tenants, 1000, '--tenants', true);
  const schemaTenants = positive(values['schema-tenants'], 100, '--schema-tenants', true);
  const databaseTenants = positive(values['database-tenants'], 10, '--database-tenants', true);
  const movers = positive(values.movers, 6, '--movers', true);
  if (schemaTenants + databaseTenants + movers > tenants) {
    throw new Error('--schema-tenants + --database-tenants + --movers must not exceed --tenants');
  }
  return Object.freeze({
    databaseUrl: benchDatabaseUrl(),
    minutes,
    tenants,
    schemaTenants,
    databaseTenants,
    movers,
    churnSeconds: positive(values['churn-seconds'], 15, '--churn-seconds', false),
    connections: positive(values.connections, 16, '--connections', true),
    seed: positive(values.seed, 5, '--seed', true),
    warmupMinutes: positive(values['warmup-minutes'], Math.min(5, minutes / 6), '--warmup-minutes', false),
    out: values.out ?? 'bench/results/soak',
  });
}

/** The operations of the mix, their weights, and the one status each must answer. */
const MIX = [
  { op: 'read', weight: 30, expect: 200 },
  { op: 'list', weight: 15, expect: 200 },
  { op: 'search', weight: 10, expect: 200 },
  { op: 'create', weight: 20, expect: 201 },
  { op: 'update', weight: 10, expect: 200 },
  { op: 'delete', weight: 10, expect: 204 },
  { op: 'cross-tenant read', weight: 5, expect: 404 },
] as const;
type Op = (typeof MIX)[number]['op'];
const TOTAL_WEIGHT = MIX.reduce((sum, m) => sum + m.weight, 0);

/** A bounded sample of latencies (Algorithm R), so a long run does not itself grow the heap. */
class Reservoir {
  readonly #values = new Float64Array(RESERVOIR);
  #seen = 0;

  add(ms: number): void {
    const i = this.#seen < RESERVOIR ? this.#seen : Math.floor(Math.random() * (this.#seen + 1));
    if (i < RESERVOIR) this.#values[i] = ms;
    this.#seen++;
  }

  quantile(q: number): number {
    return quantile(this.#values.slice(0, Math.min(this.#seen, RESERVOIR)).sort(), q);
  }

  reset(): void {
    this.#seen = 0;
  }
}

interface OpTally {
  count: number;
  unexpected: number;
  refused: number;
  latencies: Reservoir;
}

/** What the load saw, in all and per period. */
class Tally {
  readonly byOp = new Map<Op, OpTally>(
    MIX.map((m) => [m.op, { count: 0, unexpected: 0, refused: 0, latencies: new Reservoir() }]),
  );
  readonly period = new Reservoir();
  requests = 0;
  errors = 0;
  refused = 0;
  crossTenantLeaks = 0;
  periodRequests = 0;
  periodErrors = 0;
  periodRefused = 0;
  /** The first few errors, for the report. */
  readonly samples: string[] = [];

  record(op: Op, ms: number, verdict: 'ok' | 'refused' | 'error', problem: string): void {
    const entry = this.byOp.get(op) as OpTally;
    entry.count++;
    entry.latencies.add(ms);
    this.period.add(ms);
    this.requests++;
    this.periodRequests++;
    if (verdict === 'refused') {
      entry.refused++;
      this.refused++;
      this.periodRefused++;
    } else if (verdict === 'error') {
      entry.unexpected++;
      this.errors++;
      this.periodErrors++;
      if (this.samples.length < 10) this.samples.push(`${op}: ${problem}`);
    }
  }
}

const agent = new http.Agent({ keepAlive: true });

interface Answer {
  readonly status: number;
  readonly json: { id?: string; code?: string } | undefined;
}

/** One request on a kept-alive loopback connection; resolves with the status (never rejects on HTTP errors). */
function send(port: number, method: string, path: string, key: string, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers: {
          authorization: `Bearer ${key}`,
          ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Answer['json'];
          try {
            json = text ? (JSON.parse(text) as Answer['json']) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const MB = 2 ** 20;
const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const pct = (from: number, to: number) => `${(((to - from) / from) * 100).toFixed(1)}%`;
const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const gc = (globalThis as { gc?: () => void }).gc;

/** Runs `work` over `items` with `concurrency` workers. */
async function eachConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++] as T);
    }),
  );
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const database = await createBenchDatabase(options.databaseUrl);
  const tenantry = await Tenantry.connect({
    databaseUrl: database.url,
    secret: database.secret,
    roles: database.roles,
    migrations: itemsMigrations,
  });
  let app: Awaited<ReturnType<typeof createServer>> | undefined;
  let aborted = false;
  const onSigint = () => {
    aborted = true;
    log('\ninterrupted: reporting what ran so far…');
  };
  process.once('SIGINT', onSigint);
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const { rows } = await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    const version = rows[0]?.v;
    app = await createServer(tenantry, {
      logger: false,
      plans: definePlans({ [PLAN]: { requestsPerMinute: 100_000_000 } }),
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;

    const words = vocabulary(200);
    const random = prng(7);
    const word = () => words[Math.floor(random() * words.length)] as string;
    const title = () => `${word()} ${word()} ${word()}`;
    const tierOf = (i: number): IsolationTier =>
      i < options.databaseTenants
        ? 'database'
        : i < options.databaseTenants + options.schemaTenants
          ? 'schema'
          : 'pool';
    const setupStarted = performance.now();
    const indexes = Array.from({ length: options.tenants }, (_, i) => i);
    const tenants: SoakTenant[] = new Array(options.tenants);
    await eachConcurrently(indexes, 4, async (i) => {
      const tier = tierOf(i);
      const record = await tenantry.tenants.create({ slug: `soak-${i}`, name: `Soak ${i}`, plan: PLAN, tier });
      const { key } = await tenantry.apiKeys.create(record.id, {
        name: 'soak',
        environment: 'test',
        scopes: ['items:read', 'items:write'],
      });
      const seeded: string[] = [];
      for (let j = 0; j < options.seed; j++) {
        const r = await send(port, 'POST', '/v1/items', key, { title: title(), description: `${word()} ${word()}` });
        if (r.status !== 201 || !r.json?.id) throw new Error(`seeding answered ${r.status}`);
        seeded.push(r.json.id);
      }
      tenants[i] = {
        id: record.id,
        slug: record.slug,
        key,
        seeded: Object.freeze(seeded),
        tier,
        suspended: false,
        moving: false,
        windowStart: Number.NEGATIVE_INFINITY,
        windowEnd: Number.NEGATIVE_INFINITY,
      };
    });
    // Movers start on each tier in turn: the pool tenants just past the schema and database ones.
    const movers = tenants.slice(options.tenants - options.movers);
    for (const [k, t] of movers.entries()) {
      const to = (['pool', 'schema', 'database'] as const)[k % 3] as IsolationTier;
      if (to !== t.tier) {
        await tenantry.moveTenant(t.id, { to, actor: 'soak' });
        t.tier = to;
      }
    }

    const machine = describeMachine(version ?? 'unknown');
    const tierCounts = tenants.reduce<Record<string, number>>((acc, t) => {
      acc[t.tier] = (acc[t.tier] ?? 0) + 1;
      return acc;
    }, {});
    log(
      `soak: ${options.minutes} min, ${options.tenants} tenants (${Object.entries(tierCounts)
        .map(([tier, n]) => `${n} ${tier}`)
        .join(
          ', ',
        )}; ${options.seed} seeded items each; set up in ${f1((performance.now() - setupStarted) / 1000)} s), ` +
        `${options.connections} connections, a move or a suspension every ${options.churnSeconds} s ` +
        `(${options.movers} tenants move), server and load in one process`,
    );
    const machineLine =
      `${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, ` +
      `PostgreSQL ${machine.postgres}, source ${machine.source}`;
    log(`machine: ${machineLine}, load ${machine.loadAverage.join(' / ')}`);
    if (!gc) log('note: run with --expose-gc (npm run soak does) to sample the heap after a full collection');
    const rssStart = process.memoryUsage().rss;
    log(`RSS at start ${mb(rssStart)}, heap used ${mb(process.memoryUsage().heapUsed)}`);

    const tally = new Tally();
    const samples = new SampleLog(options.out);
    const started = performance.now();
    const endAt = started + options.minutes * 60_000;
    const churn = startChurn(tenantry, tenants, movers, options.churnSeconds * 1000, random);

    const pickOp = (): Op => {
      let r = random() * TOTAL_WEIGHT;
      for (const m of MIX) {
        r -= m.weight;
        if (r < 0) return m.op;
      }
      return 'read';
    };
    const expected = new Map<Op, number>(MIX.map((m) => [m.op, m.expect]));

    const connection = async () => {
      /** Items this connection created and still owns, with their tenant: only it changes them. */
      const owned: { tenant: SoakTenant; id: string }[] = [];
      while (!aborted && performance.now() < endAt) {
        const tenant = tenants[Math.floor(random() * tenants.length)] as SoakTenant;
        let op = pickOp();
        const mine = owned.filter((o) => o.tenant === tenant);
        if ((op === 'update' || op === 'delete') && mine.length === 0) op = 'create';
        if (op === 'create' && owned.length >= OWNED_MAX) op = 'delete';
        if (op === 'delete' && mine.length === 0) op = 'read';
        const target = mine[Math.floor(random() * mine.length)];
        const t0 = performance.now();
        let verdict: 'ok' | 'refused' | 'error' = 'error';
        let problem = '';
        try {
          let r: Answer;
          switch (op) {
            case 'read':
              r = await send(
                port,
                'GET',
                `/v1/items/${tenant.seeded[Math.floor(random() * tenant.seeded.length)]}`,
                tenant.key,
              );
              break;
            case 'list':
              r = await send(port, 'GET', '/v1/items?limit=20', tenant.key);
              break;
            case 'search':
              r = await send(port, 'GET', `/v1/items?q=${word()}&limit=20`, tenant.key);
              break;
            case 'create':
              r = await send(port, 'POST', '/v1/items', tenant.key, { title: title() });
              if (r.status === 201 && r.json?.id) owned.push({ tenant, id: r.json.id });
              break;
            case 'update':
              r = await send(port, 'PATCH', `/v1/items/${target?.id}`, tenant.key, { title: title() });
              break;
            case 'delete':
              r = await send(port, 'DELETE', `/v1/items/${target?.id}`, tenant.key);
              if (r.status === 204) owned.splice(owned.indexOf(target as (typeof owned)[number]), 1);
              break;
            case 'cross-tenant read': {
              let other = tenant;
              while (other === tenant && tenants.length > 1) {
                other = tenants[Math.floor(random() * tenants.length)] as SoakTenant;
              }
              const id = other.seeded[Math.floor(random() * other.seeded.length)];
              r = await send(port, 'GET', `/v1/items/${id}`, tenant.key);
              if (r.status === 200) tally.crossTenantLeaks++;
              break;
            }
          }
          const want = expected.get(op) as number;
          verdict = judge(tenant, want, r.status, r.json?.code, t0, performance.now());
          if (verdict === 'error') {
            problem = `status ${r.status}${r.json?.code ? ` ${r.json.code}` : ''}, expected ${want} (tenant ${tenant.tier}${tenant.suspended ? ', suspended' : ''}${tenant.moving ? ', moving' : ''})`;
          }
        } catch (error) {
          problem = (error as Error).message;
        }
        tally.record(op, performance.now() - t0, verdict, problem);
      }
    };

    let periodStart = started;
    const ticker = setInterval(() => {
      const now = performance.now();
      const before = process.memoryUsage();
      gc?.();
      const live = gc ? process.memoryUsage().heapUsed : Number.NaN;
      const sample = {
        elapsedS: (now - started) / 1000,
        requestsPerS: tally.periodRequests / ((now - periodStart) / 1000),
        requests: tally.periodRequests,
        errors: tally.periodErrors,
        refused: tally.periodRefused,
        p50Ms: tally.period.quantile(0.5),
        p99Ms: tally.period.quantile(0.99),
        rssMb: before.rss / MB,
        heapUsedMb: before.heapUsed / MB,
        heapLiveMb: live / MB,
        heapTotalMb: before.heapTotal / MB,
        externalMb: before.external / MB,
        moves: churn.counts.moves,
        suspensions: churn.counts.suspensions,
        loadAverage1m: loadavg()[0] as number,
      };
      samples.add(sample);
      log(
        `[${f0(sample.elapsedS).padStart(5)} s] ${f0(sample.requestsPerS)} req/s, ` +
          `p50 ${f1(sample.p50Ms)} ms, p99 ${f1(sample.p99Ms)} ms, errors ${sample.errors} ` +
          `(total ${tally.errors} of ${f0(tally.requests)}), refused ${sample.refused}, ` +
          `RSS ${f1(sample.rssMb)} MB, heap reserved ${f1(sample.heapTotalMb)} MB, used ${f1(sample.heapUsedMb)} MB, live ${f1(sample.heapLiveMb)} MB, ` +
          `moves ${sample.moves}, suspensions ${sample.suspensions}, load ${f1(sample.loadAverage1m)}`,
      );
      tally.periodRequests = 0;
      tally.periodErrors = 0;
      tally.periodRefused = 0;
      tally.period.reset();
      periodStart = now;
    }, REPORT_EVERY_MS);
    try {
      await Promise.all(Array.from({ length: options.connections }, connection));
    } finally {
      clearInterval(ticker);
      await churn.stop();
    }
    const seconds = (performance.now() - started) / 1000;

    log();
    log('| operation | requests | p50 ms | p99 ms | refused (suspended, moving) | errors |');
    log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const [op, e] of tally.byOp) {
      log(
        `| ${op} | ${f0(e.count)} | ${f1(e.latencies.quantile(0.5))} | ${f1(e.latencies.quantile(0.99))} | ${f0(e.refused)} | ${e.unexpected} |`,
      );
    }
    const errorRate = tally.requests ? tally.errors / tally.requests : 0;
    log();
    log(`duration ${f1(seconds)} s, ${f0(tally.requests)} requests, throughput ${f0(tally.requests / seconds)} req/s`);
    log(`error rate ${(errorRate * 100).toFixed(3)}% (${tally.errors} errors: any 5xx or unexpected status)`);
    for (const sample of tally.samples) log(`  e.g. ${sample}`);
    log(
      `cross-tenant reads: ${f0(tally.byOp.get('cross-tenant read')?.count ?? 0)}, succeeded: ${tally.crossTenantLeaks}`,
    );
    const c = churn.counts;
    log(
      `moves ${c.moves} (longest freeze ${f0(c.maxFrozenMs)} ms), suspensions ${c.suspensions}, ` +
        `failed ${c.failures}; requests refused as documented: ${f0(tally.refused)}`,
    );
    const s = samples.samples;
    const warm = s.filter((x) => x.elapsedS >= options.warmupMinutes * 60);
    const first = warm[0];
    const last = s[s.length - 1];
    if (first && last && warm.length >= 2) {
      const hours = warm.map((x) => x.elapsedS / 3600);
      log(
        `RSS: start ${mb(rssStart)}, after the ${f1(options.warmupMinutes)}-minute warm-up ${f1(first.rssMb)} MB, ` +
          `end ${f1(last.rssMb)} MB: growth ${pct(first.rssMb, last.rssMb)} after warm-up ` +
          `(max ${f1(Math.max(...warm.map((x) => x.rssMb)))} MB; trend ${f1(
            slope(
              hours,
              warm.map((x) => x.rssMb),
            ),
          )} MB/h)`,
      );
      log(
        `heap live after GC: after warm-up ${f1(first.heapLiveMb)} MB, end ${f1(last.heapLiveMb)} MB ` +
          `(trend ${f1(
            slope(
              hours,
              warm.map((x) => x.heapLiveMb),
            ),
          )} MB/h); ` +
          `external ${f1(first.externalMb)} → ${f1(last.externalMb)} MB`,
      );
    }
    const files = samples.finish(
      `Soak: ${f1(options.minutes)} min, ${options.tenants} tenants on all tiers, ${options.connections} connections`,
      [
        `${machineLine}; load average at end ${loadavg()
          .map((x) => x.toFixed(2))
          .join(' / ')} (other sessions share the machine)`,
        `${f0(tally.requests)} requests, ${tally.errors} errors, ${tally.crossTenantLeaks} cross-tenant reads succeeded, ` +
          `${c.moves} moves, ${c.suspensions} suspensions, ${f0(tally.refused)} requests refused as documented`,
      ],
    );
    log(`samples: ${files.csv}, chart: ${files.png}`);
    const failed = tally.errors > 0 || tally.crossTenantLeaks > 0 || c.failures > 0;
    log(failed ? 'FAIL' : 'PASS');
    return failed ? 1 : aborted ? 130 : 0;
  } finally {
    process.off('SIGINT', onSigint);
    agent.destroy();
    await app?.close();
    await tenantry.close();
    await dropTenantDatabases(options.databaseUrl, database.name);
    await database
      .drop()
      .catch((error: unknown) => log(`could not drop ${database.name}: ${(error as Error).message}`));
  }
}

/** Drops the tenant and template databases the soak's database-tier tenants made. */
async function dropTenantDatabases(adminUrl: string, mainDatabase: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const prefix = `${tenantDatabasePrefix(mainDatabase)}_`;
    const { rows } = await admin.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE starts_with(datname, $1)',
      [prefix],
    );
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  } catch (error) {
    log(`could not drop the tenant databases: ${(error as Error).message}`);
  } finally {
    await admin.end();
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
