/**
 * Soak: the reference server under a mixed tenant load for minutes, to show that it keeps
 * answering correctly and does not grow. One process: the server (`createServer`, as
 * `tenantry serve` builds it, rate limits in-process on a plan no run can exhaust) and the
 * load generator (keep-alive `node:http` clients on loopback).
 *
 *   npm run soak -- --minutes 10 [--tenants 50] [--connections 16] [--seed 10]
 *
 * Each connection loops over random tenants: reads of an item (200), lists (200),
 * full-text searches (200), creates (201), updates (200) and deletes (204) of the items it
 * created, and now and then a read of another tenant's item with this tenant's key, which
 * must be 404. Any other status, a network error or a request slower than 10 s is an
 * error. Prints a line every 30 s and, at the end, throughput, error rate and the
 * process's RSS at start and end; exits 1 when any request erred or a cross-tenant read
 * succeeded.
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the soak works in a database of its own (`tenantry_bench_<random>`) and drops it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { definePlans } from '../packages/tenantry/src/admit/plans.ts';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { createServer } from '../packages/tenantry/src/http/server.ts';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import { describeMachine } from './http/system.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { prng, vocabulary } from './lib/dataset.ts';
import { log } from './lib/print.ts';
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
  readonly connections: number;
  readonly seed: number;
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      minutes: { type: 'string' },
      tenants: { type: 'string' },
      connections: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  return Object.freeze({
    databaseUrl: benchDatabaseUrl(),
    minutes: positive(values.minutes, 10, '--minutes', false),
    tenants: positive(values.tenants, 50, '--tenants', true),
    connections: positive(values.connections, 16, '--connections', true),
    seed: positive(values.seed, 10, '--seed', true),
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

interface SoakTenant {
  readonly id: string;
  readonly key: string;
  /** Items created before the load and never changed: what reads and cross-tenant reads aim at. */
  readonly seeded: readonly string[];
}

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

/** What the load saw, in all and per period. */
class Tally {
  readonly byOp = new Map<Op, { count: number; unexpected: number; latencies: Reservoir }>(
    MIX.map((m) => [m.op, { count: 0, unexpected: 0, latencies: new Reservoir() }]),
  );
  readonly period = new Reservoir();
  requests = 0;
  errors = 0;
  crossTenantLeaks = 0;
  periodRequests = 0;
  periodErrors = 0;
  /** The first few errors, for the report. */
  readonly samples: string[] = [];

  record(op: Op, ms: number, problem: string | undefined): void {
    const entry = this.byOp.get(op) as { count: number; unexpected: number; latencies: Reservoir };
    entry.count++;
    entry.latencies.add(ms);
    this.period.add(ms);
    this.requests++;
    this.periodRequests++;
    if (problem) {
      entry.unexpected++;
      this.errors++;
      this.periodErrors++;
      if (this.samples.length < 10) this.samples.push(`${op}: ${problem}`);
    }
  }
}

const agent = new http.Agent({ keepAlive: true });

/** One request on a kept-alive loopback connection; resolves with the status (never rejects on HTTP errors). */
function send(
  port: number,
  method: string,
  path: string,
  key: string,
  body?: unknown,
): Promise<{ status: number; json: { id?: string } | undefined }> {
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
          let json: { id?: string } | undefined;
          try {
            json = text ? (JSON.parse(text) as { id?: string }) : undefined;
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

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const growth = (from: number, to: number) => `${(((to - from) / from) * 100).toFixed(1)}%`;
const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');

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
    const tenants: SoakTenant[] = [];
    for (let i = 0; i < options.tenants; i++) {
      const record = await tenantry.tenants.create({ slug: `soak-${i}`, name: `Soak ${i}`, plan: PLAN });
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
      tenants.push(Object.freeze({ id: record.id, key, seeded: Object.freeze(seeded) }));
    }

    const machine = describeMachine(version ?? 'unknown');
    log(
      `soak: ${options.minutes} min, ${options.tenants} tenants (${options.seed} seeded items each), ` +
        `${options.connections} connections, server and load in one process`,
    );
    log(
      `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, ` +
        `PostgreSQL ${machine.postgres}, load ${machine.loadAverage.join(' / ')}, source ${machine.source}`,
    );
    const rssStart = process.memoryUsage().rss;
    const heapStart = process.memoryUsage().heapUsed;
    log(`RSS at start ${mb(rssStart)}, heap used ${mb(heapStart)}`);

    const tally = new Tally();
    const started = performance.now();
    const endAt = started + options.minutes * 60_000;
    let rssWarm: number | undefined;

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
        let problem: string | undefined;
        try {
          let r: { status: number; json: { id?: string } | undefined };
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
          if (r.status !== expected.get(op)) problem = `status ${r.status}, expected ${expected.get(op)}`;
        } catch (error) {
          problem = (error as Error).message;
        }
        tally.record(op, performance.now() - t0, problem);
      }
    };

    let periodStart = started;
    const ticker = setInterval(() => {
      const now = performance.now();
      const rss = process.memoryUsage().rss;
      rssWarm ??= rss;
      log(
        `[${f0((now - started) / 1000).padStart(5)} s] ${f0(tally.periodRequests / ((now - periodStart) / 1000))} req/s, ` +
          `p50 ${f1(tally.period.quantile(0.5))} ms, p99 ${f1(tally.period.quantile(0.99))} ms, ` +
          `errors ${tally.periodErrors} (total ${tally.errors} of ${f0(tally.requests)}), ` +
          `RSS ${mb(rss)}, heap used ${mb(process.memoryUsage().heapUsed)}`,
      );
      tally.periodRequests = 0;
      tally.periodErrors = 0;
      tally.period.reset();
      periodStart = now;
    }, REPORT_EVERY_MS);
    try {
      await Promise.all(Array.from({ length: options.connections }, connection));
    } finally {
      clearInterval(ticker);
    }
    const seconds = (performance.now() - started) / 1000;
    const rssEnd = process.memoryUsage().rss;
    const heapEnd = process.memoryUsage().heapUsed;

    log();
    log('| operation | requests | p50 ms | p99 ms | errors |');
    log('| --- | ---: | ---: | ---: | ---: |');
    for (const [op, e] of tally.byOp) {
      log(
        `| ${op} | ${f0(e.count)} | ${f1(e.latencies.quantile(0.5))} | ${f1(e.latencies.quantile(0.99))} | ${e.unexpected} |`,
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
    log(
      `RSS start ${mb(rssStart)}, after the first ${REPORT_EVERY_MS / 1000} s ${rssWarm ? mb(rssWarm) : 'n/a'}, ` +
        `end ${mb(rssEnd)}; growth ${growth(rssStart, rssEnd)} from start` +
        (rssWarm ? `, ${growth(rssWarm, rssEnd)} after warm-up` : ''),
    );
    log(`heap used start ${mb(heapStart)}, end ${mb(heapEnd)}`);
    const failed = tally.errors > 0 || tally.crossTenantLeaks > 0;
    log(failed ? 'FAIL' : 'PASS');
    return failed ? 1 : aborted ? 130 : 0;
  } finally {
    process.off('SIGINT', onSigint);
    agent.destroy();
    await app?.close();
    await tenantry.close();
    await database
      .drop()
      .catch((error: unknown) => log(`could not drop ${database.name}: ${(error as Error).message}`));
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
