/**
 * HTTP benchmark: `GET /v1/items/{id}` through Tenantry's whole request path — API key
 * (verified by `tenantry.apiKeys`, 1 s cache), tenant (cached), rate limit (in-process,
 * a `bench` plan of 100,000,000 requests/minute), tenant transaction (pipelined BEGIN +
 * verified context, SELECT, COMMIT) — against a bare Fastify + pg route running the same
 * SELECT as one autocommit query on a plain pg.Pool of the same size, as the superuser.
 *
 * Each server runs in a child process of its own; this process is the load generator
 * (autocannon, keep-alive, loopback). Sides alternate within each round (ABBA order), after
 * a warm-up; medians over the rounds are reported with the Tenantry/bare ratios. Then an
 * "anatomy" pass (1 connection, probes on) counts what one request costs each side in
 * PostgreSQL round trips (every `pg.Client#query` call of the server process) and in
 * transactions (`pg_stat_database` deltas), and where its time goes; `--profile` adds a
 * CPU profile of each server under load.
 *
 *   node_modules/.bin/node bench/http.ts [--seconds 10] [--rounds 3] [--warmup 5] [--connections 16]
 *     [--tenants 4] [--items 2500] [--mix 1024] [--anatomy 4000] [--no-xacts] [--profile] [--matrix] [--quick]
 *     [--bare-prepared]
 *
 * `--quick`: 2 s per side, 1 round, short warm-up and anatomy, no `pg_stat_database` pass
 * (it must wait out PostgreSQL's stats flush, ~11 s a side). `DATABASE_URL` (default
 * postgres://postgres@127.0.0.1:5432/postgres) must be a superuser; the benchmark works in a
 * database of its own (`tenantry_bench_http_<random>`, roles `tbh_<random>_*`) and drops it.
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { BENCH_PLAN, BENCH_PLAN_LIMITS, type BenchFixture, createFixture } from './http/fixture.ts';
import { applicationName, ServerChild, type SideName } from './http/ipc.ts';
import { type BenchRequest, type LoadResult, runLoad, stopLoad } from './http/load.ts';
import { BARE_PROBES, STAGES, type Tally, TENANTRY_PROBES, WIRE } from './http/probes.ts';
import { type ProfileSummary, summarizeProfile } from './http/profile.ts';
import {
  BackendCpu,
  type DatabaseStats,
  databaseStats,
  describeMachine,
  type Machine,
  machineTicks,
} from './http/system.ts';
import { VARIANT_PATHS } from './http/variants.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { log } from './lib/print.ts';
import { median } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

/** The target: Tenantry keeps at least 80% of the bare route's throughput. */
export const TARGET_THROUGHPUT_RATIO = 0.8;

/** PostgreSQL flushes a backend's pending statistics at most every 1 s, and an idle one after 10 s. */
const STATS_FLUSH_WAIT_MS = 11_500;

interface Options {
  readonly databaseUrl: string;
  readonly seconds: number;
  readonly rounds: number;
  readonly warmup: number;
  readonly connections: number;
  readonly tenants: number;
  readonly items: number;
  readonly mix: number;
  readonly anatomy: number;
  readonly xacts: boolean;
  readonly profile: boolean;
  readonly matrix: boolean;
  readonly profileDir: string | undefined;
  readonly quick: boolean;
  /** The baseline names its statement (prepared once per connection) instead of pg's default unnamed one. */
  readonly barePrepared: boolean;
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    allowNegative: true,
    options: {
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      tenants: { type: 'string' },
      items: { type: 'string' },
      mix: { type: 'string' },
      anatomy: { type: 'string' },
      xacts: { type: 'boolean' },
      profile: { type: 'boolean', default: false },
      matrix: { type: 'boolean', default: false },
      'profile-dir': { type: 'string' },
      quick: { type: 'boolean', default: false },
      'bare-prepared': { type: 'boolean', default: false },
    },
  });
  const quick = values.quick === true;
  return Object.freeze({
    databaseUrl: benchDatabaseUrl(),
    seconds: positive(values.seconds, quick ? 2 : 10, '--seconds', false),
    rounds: positive(values.rounds, quick ? 1 : 3, '--rounds', true),
    warmup: positive(values.warmup, quick ? 1 : 5, '--warmup', false),
    connections: positive(values.connections, 16, '--connections', true),
    tenants: positive(values.tenants, quick ? 2 : 4, '--tenants', true),
    items: positive(values.items, quick ? 500 : 2500, '--items', true),
    mix: positive(values.mix, 1024, '--mix', true),
    anatomy: positive(values.anatomy, quick ? 500 : 4000, '--anatomy', true),
    xacts: values.xacts ?? !quick,
    profile: values.profile === true,
    matrix: values.matrix === true,
    profileDir: values['profile-dir'],
    quick,
    barePrepared: values['bare-prepared'] === true,
  });
}

/** One side's server and the request mix it is sent. */
interface Side {
  readonly name: string;
  /** Which server process answers it. */
  readonly process: SideName;
  readonly child: ServerChild;
  readonly requests: readonly BenchRequest[];
}

/** What one measured round of one side gave. */
interface Round {
  readonly load: LoadResult;
  /** CPU of the server process per request, µs. */
  readonly serverUs: number;
  /** Event-loop utilisation of the server process (1 = never idle). */
  readonly elu: number;
  /** CPU of the side's PostgreSQL backends per request, µs (undefined when PostgreSQL is not local). */
  readonly postgresUs: number | undefined;
  /** CPU of this process (autocannon) per request, µs. */
  readonly loadgenUs: number;
  /** Share of the machine's CPU busy during the round (everything on it), 0–1. */
  readonly machineBusy: number | undefined;
}

/** What the anatomy pass gave for one side. */
interface Anatomy {
  readonly load: LoadResult;
  readonly tallies: Record<string, Tally>;
  readonly stats: { before: DatabaseStats; after: DatabaseStats } | undefined;
}

/**
 * The request mix: `size` (tenant, item) pairs drawn at random over every tenant's items,
 * as each side must be asked. Tenantry learns the tenant from the API key; the baseline
 * takes the tenant id from `X-Tenant-ID` on trust.
 */
function buildMix(fixture: BenchFixture, size: number): Record<SideName, BenchRequest[]> {
  const tenantry: BenchRequest[] = [];
  const bare: BenchRequest[] = [];
  for (let i = 0; i < size; i++) {
    const tenant = fixture.tenants[i % fixture.tenants.length];
    if (!tenant) throw new Error('no tenants');
    const id = tenant.itemIds[Math.floor(Math.random() * tenant.itemIds.length)] as string;
    const path = `/v1/items/${id}`;
    tenantry.push({ method: 'GET', path, headers: { authorization: `Bearer ${tenant.key}` } });
    bare.push({ method: 'GET', path, headers: { 'x-tenant-id': tenant.id } });
  }
  return { tenantry, bare };
}

/** Both sides must answer 200 with byte-identical JSON bodies, or the comparison means nothing. */
async function checkSameAnswers(sides: readonly Side[], count: number): Promise<void> {
  const [a, b] = sides as [Side, Side];
  for (let i = 0; i < Math.min(count, a.requests.length); i++) {
    const ra = a.requests[i] as BenchRequest;
    const rb = b.requests[i] as BenchRequest;
    const [x, y] = await Promise.all([
      fetch(`${a.child.ready.url}${ra.path}`, { headers: ra.headers, signal: AbortSignal.timeout(10_000) }),
      fetch(`${b.child.ready.url}${rb.path}`, { headers: rb.headers, signal: AbortSignal.timeout(10_000) }),
    ]);
    const [bx, by] = [await x.text(), await y.text()];
    if (x.status !== 200 || y.status !== 200 || bx !== by) {
      throw new Error(`sides disagree on ${ra.path}: ${a.name} ${x.status} ${bx} / ${b.name} ${y.status} ${by}`);
    }
  }
}

function cpuUs(before: { userUs: number; systemUs: number }, after: { userUs: number; systemUs: number }): number {
  return after.userUs - before.userUs + (after.systemUs - before.systemUs);
}

async function measureRound(side: Side, options: Options, backends: BackendCpu): Promise<Round> {
  const app = applicationName(side.process);
  const u0 = await side.child.call({ type: 'usage' });
  const b0 = await backends.snapshot(app);
  const m0 = machineTicks();
  const l0 = process.cpuUsage();
  const load = await runLoad({
    url: side.child.ready.url,
    connections: options.connections,
    requests: side.requests,
    seconds: options.seconds,
  });
  const l1 = process.cpuUsage(l0);
  const m1 = machineTicks();
  const b1 = await backends.snapshot(app);
  const u1 = await side.child.call({ type: 'usage' });
  const n = Math.max(1, load.requests);
  const pgUs = BackendCpu.microseconds(b0, b1);
  const activeMs = u1.eluActiveMs - u0.eluActiveMs;
  return {
    load,
    serverUs: cpuUs(u0, u1) / n,
    elu: activeMs / (activeMs + (u1.eluIdleMs - u0.eluIdleMs)),
    postgresUs: pgUs === undefined ? undefined : pgUs / n,
    loadgenUs: (l1.user + l1.system) / n,
    machineBusy: m0 && m1 ? (m1.busy - m0.busy) / (m1.total - m0.total) : undefined,
  };
}

async function runAnatomy(side: Side, options: Options, monitor: pg.Client, database: string): Promise<Anatomy> {
  let before: DatabaseStats | undefined;
  if (options.xacts) {
    await sleep(STATS_FLUSH_WAIT_MS);
    before = await databaseStats(monitor, database);
  }
  await side.child.call({ type: 'meter-start' });
  const load = await runLoad({
    url: side.child.ready.url,
    connections: 1,
    requests: side.requests,
    amount: options.anatomy,
  });
  const tallies = await side.child.call({ type: 'meter-stop' });
  let stats: Anatomy['stats'];
  if (before) {
    await sleep(STATS_FLUSH_WAIT_MS);
    stats = { before, after: await databaseStats(monitor, database) };
  }
  return { load, tallies, stats };
}

async function runProfile(side: Side, options: Options, dir: string): Promise<{ load: LoadResult; file: string }> {
  await side.child.call({ type: 'profile-start', intervalUs: 200 });
  const load = await runLoad({
    url: side.child.ready.url,
    connections: options.connections,
    requests: side.requests,
    seconds: options.seconds,
  });
  const file = await side.child.call({ type: 'profile-stop', path: path.join(dir, `http-${side.name}.cpuprofile`) });
  return { load, file };
}

/** The variants of `--matrix` (see `http/variants.ts`) and their rounds. */
interface Matrix {
  readonly variants: readonly Side[];
  readonly rounds: ReadonlyMap<Side, Round[]>;
}

function retarget(requests: readonly BenchRequest[], prefix: string): BenchRequest[] {
  return requests.map((r) => ({ ...r, path: r.path.replace(/^\/v1\/items\//, `${prefix}/`) }));
}

/**
 * Splits the gap into its HTTP and database halves: Tenantry's server with the baseline's
 * autocommit SELECT, and the bare server with Tenantry's transaction, next to the two
 * sides themselves, in fresh server processes (so the main rounds ran in processes that
 * never loaded the variants). Same rounds, warm-up and connections as the main comparison.
 */
async function runMatrix(
  fixture: BenchFixture,
  options: Options,
  backends: BackendCpu,
  mix: Record<SideName, BenchRequest[]>,
  isAborted: () => boolean,
): Promise<Matrix> {
  const base = {
    databaseUrl: fixture.url,
    secret: fixture.secret,
    roles: fixture.roles,
    planLimits: BENCH_PLAN_LIMITS,
  };
  const t = await ServerChild.start({ ...base, side: 'tenantry', matrix: true });
  let b: ServerChild | undefined;
  try {
    b = await ServerChild.start({
      ...base,
      side: 'bare',
      barePrepared: options.barePrepared,
      poolMax: t.ready.poolMax,
      idleTimeoutMs: t.ready.idleTimeoutMs,
      matrix: true,
      tenants: fixture.tenants.map((x) => ({ id: x.id, slug: x.slug, plan: BENCH_PLAN })),
    });
    const variants: Side[] = [
      { name: 'tenantry', process: 'tenantry', child: t, requests: mix.tenantry },
      {
        name: 'Tenantry HTTP + autocommit SELECT',
        process: 'tenantry',
        child: t,
        requests: retarget(mix.tenantry, VARIANT_PATHS.autocommit),
      },
      {
        name: 'Tenantry server, no tenant steps + autocommit',
        process: 'tenantry',
        child: t,
        requests: retarget(mix.bare, VARIANT_PATHS.plain),
      },
      {
        name: 'bare HTTP + Tenantry transaction',
        process: 'bare',
        child: b,
        requests: retarget(mix.bare, VARIANT_PATHS.transaction),
      },
      { name: 'bare', process: 'bare', child: b, requests: mix.bare },
    ];
    const bare = variants[variants.length - 1] as Side;
    for (const v of variants.slice(0, -1)) await checkSameAnswers([v, bare], 8);
    for (const v of variants) {
      await runLoad({
        url: v.child.ready.url,
        connections: options.connections,
        requests: v.requests,
        seconds: options.warmup,
      });
    }
    const rounds = new Map<Side, Round[]>(variants.map((v) => [v, []]));
    for (let i = 0; i < options.rounds && !isAborted(); i++) {
      for (const v of i % 2 === 0 ? variants : [...variants].reverse()) {
        const round = await measureRound(v, options, backends);
        rounds.get(v)?.push(round);
        log(
          `matrix round ${i + 1} ${v.name}: ${f0(round.load.rps)} req/s, errors ${round.load.errors}/${round.load.non2xx}`,
        );
      }
    }
    return { variants, rounds };
  } finally {
    await Promise.all([t.close(), b?.close()]);
  }
}

// ── report ────────────────────────────────────────────────────────────────────────────

const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const pct = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? 'n/a' : `${Math.round(x * 100)}%`);

function table(header: readonly string[], rows: readonly (readonly string[])[]): void {
  log(markdownTable(header, rows));
}

interface SideSummary {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly serverUs: number;
  readonly postgresUs: number;
  readonly loadgenUs: number;
  readonly elu: number;
  readonly machineBusy: number;
}

function summarize(rounds: readonly Round[]): SideSummary {
  const m = (f: (r: Round) => number | undefined) => median(rounds.map((r) => f(r) ?? Number.NaN));
  return {
    rps: m((r) => r.load.rps),
    p50: m((r) => r.load.p50),
    p99: m((r) => r.load.p99),
    errors: rounds.reduce((a, r) => a + r.load.errors, 0),
    non2xx: rounds.reduce((a, r) => a + r.load.non2xx, 0),
    serverUs: m((r) => r.serverUs),
    postgresUs: m((r) => r.postgresUs),
    loadgenUs: m((r) => r.loadgenUs),
    elu: m((r) => r.elu),
    machineBusy: m((r) => r.machineBusy),
  };
}

function printMachine(machine: Machine, options: Options, poolMax: number, fixture: BenchFixture): void {
  log(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, ${machine.kernel}`);
  log(`node ${machine.node}, PostgreSQL ${machine.postgres}, load average ${machine.loadAverage.join(' / ')}`);
  log(`source: ${machine.source}`);
  log(
    `run: ${options.rounds} round(s) × ${options.seconds} s per side (ABBA), warm-up ${options.warmup} s per side, ` +
      `${options.connections} connections, pool ${poolMax} per side; ${fixture.tenants.length} tenants × ` +
      `${options.items} items, mix of ${options.mix} requests; database ${fixture.name}; ` +
      `bare's statement ${options.barePrepared ? 'prepared (named)' : 'unnamed (parsed every time, pg’s default)'}`,
  );
}

function printRounds(results: Record<SideName, Round[]>): void {
  log();
  log('rounds:');
  const rows: string[][] = [];
  const n = Math.max(results.tenantry.length, results.bare.length);
  for (let i = 0; i < n; i++) {
    for (const name of ['tenantry', 'bare'] as const) {
      const r = results[name][i];
      if (!r) continue;
      rows.push([
        `${i + 1} ${name}`,
        f0(r.load.rps),
        f2(r.load.p50),
        f2(r.load.p99),
        `${r.load.errors}/${r.load.non2xx}`,
        f0(r.serverUs),
        r.postgresUs === undefined ? 'n/a' : f0(r.postgresUs),
        f0(r.loadgenUs),
        pct(r.elu),
        pct(r.machineBusy),
      ]);
    }
  }
  table(
    [
      'round side',
      'req/s',
      'p50 ms',
      'p99 ms',
      'err/non2xx',
      'server µs/req',
      'PG µs/req',
      'loadgen µs/req',
      'ELU',
      'machine busy',
    ],
    rows,
  );
}

function printSummary(t: SideSummary, b: SideSummary, results: Record<SideName, Round[]>): void {
  log();
  log('medians over rounds:');
  const row = (name: string, s: SideSummary) => [
    name,
    f0(s.rps),
    f2(s.p50),
    f2(s.p99),
    `${s.errors}/${s.non2xx}`,
    f0(s.serverUs),
    f0(s.postgresUs),
    f0(s.serverUs + s.postgresUs),
    f0(s.loadgenUs),
    pct(s.elu),
    pct(s.machineBusy),
  ];
  table(
    [
      'side',
      'req/s',
      'p50 ms',
      'p99 ms',
      'err/non2xx',
      'server µs/req',
      'PG µs/req',
      'server+PG µs/req',
      'loadgen µs/req',
      'server ELU',
      'machine busy',
    ],
    [row('tenantry', t), row('bare', b)],
  );
  const ratio = t.rps / b.rps;
  const perRound = results.tenantry.map((r, i) => r.load.rps / (results.bare[i]?.load.rps ?? Number.NaN));
  log();
  log(
    `throughput tenantry/bare: ${f3(ratio)} (target ≥ ${TARGET_THROUGHPUT_RATIO.toFixed(2)}: ${
      ratio >= TARGET_THROUGHPUT_RATIO ? 'MET' : 'MISSED'
    }); per round: ${perRound.map(f3).join(', ')} (median ${f3(median(perRound))})`,
  );
  log(`p50 tenantry/bare: ${f2(t.p50 / b.p50)}×   p99 tenantry/bare: ${f2(t.p99 / b.p99)}×`);
  log(
    `CPU per request tenantry/bare: server ${f2(t.serverUs / b.serverUs)}×, PostgreSQL ${f2(
      t.postgresUs / b.postgresUs,
    )}×, server+PostgreSQL ${f2((t.serverUs + t.postgresUs) / (b.serverUs + b.postgresUs))}×`,
  );
  // Server, PostgreSQL and autocannon share the machine's cores: once they are saturated,
  // throughput is cores / CPU per request, whatever the round trips.
  const all = (s: SideSummary) => s.serverUs + s.postgresUs + s.loadgenUs;
  log(
    `CPU per request, server + PostgreSQL + load generator: tenantry ${f0(all(t))} µs, bare ${f0(all(b))} µs; ` +
      `a CPU-bound machine would give a throughput ratio of ${f3(all(b) / all(t))}`,
  );
}

function printAnatomy(name: SideName, anatomy: Anatomy): void {
  const n = Math.max(1, anatomy.load.requests);
  log();
  log(
    `${name}: ${anatomy.load.requests} requests on 1 connection: ${f0(anatomy.load.rps)} req/s, ` +
      `p50 ${f3(anatomy.load.p50)} ms, mean ${f3(anatomy.load.mean)} ms, errors ${anatomy.load.errors}/${anatomy.load.non2xx}, ` +
      `${f0(anatomy.load.bytes)} response bytes`,
  );
  const entries = Object.entries(anatomy.tallies).filter(([k]) => !k.startsWith('wire: '));
  const db = entries.filter(([k]) => k.startsWith('db ')).sort((a, b) => b[1].count - a[1].count);
  const wire = (name: string) => anatomy.tallies[name]?.count ?? 0;
  const roundTrips = (wire(WIRE.sync) + wire(WIRE.simple)) / n;
  const statements = (wire(WIRE.execute) + wire(WIRE.simple)) / n;
  const order: string[] = [...Object.values(STAGES), ...Object.values(TENANTRY_PROBES), ...Object.values(BARE_PROBES)];
  const timed = entries.filter(([k]) => !k.startsWith('db ')).sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]));
  table(
    ['what', 'per request', 'mean ms', 'ms per request'],
    [...db, ...timed].map(([k, t]) => [k, f3(t.count / n), f3(t.ms / t.count), f3(t.ms / n)]),
  );
  log(
    `PostgreSQL round trips per request: ${f3(roundTrips)} (Sync + simple Query messages); ` +
      `statements run: ${f3(statements)} (Execute + simple Query); pg client.query calls: ${f3(
        db.reduce((a, [, t]) => a + t.count, 0) / n,
      )}`,
  );
  const s = anatomy.stats;
  if (s) {
    const d = (f: (x: DatabaseStats) => number) => (f(s.after) - f(s.before)) / n;
    log(
      `pg_stat_database per request: ${f3(d((x) => x.xactCommit))} commits, ${f3(d((x) => x.xactRollback))} rollbacks, ` +
        `${f3(d((x) => x.activeMs))} ms active, ${f3(d((x) => x.idleInTransactionMs))} ms idle in transaction, ` +
        `${f3(d((x) => x.tupFetched))} tuples fetched`,
    );
  }
}

function printMatrix(matrix: Matrix): void {
  const bare = matrix.variants[matrix.variants.length - 1] as Side;
  const base = summarize(matrix.rounds.get(bare) ?? []);
  log();
  log('matrix: the gap split into its HTTP and database halves (medians; ratios against bare):');
  const rows = matrix.variants.map((v) => {
    const s = summarize(matrix.rounds.get(v) ?? []);
    return [
      v.name,
      f0(s.rps),
      f3(s.rps / base.rps),
      f2(s.p50),
      f2(s.p99),
      `${s.errors}/${s.non2xx}`,
      f0(s.serverUs),
      f0(s.postgresUs),
      f0(s.serverUs + s.postgresUs + s.loadgenUs),
    ];
  });
  table(
    ['variant', 'req/s', '× bare', 'p50 ms', 'p99 ms', 'err/non2xx', 'server µs/req', 'PG µs/req', 'all CPU µs/req'],
    rows,
  );
}

function printProfile(name: SideName, load: LoadResult, file: string, summary: ProfileSummary): void {
  const n = Math.max(1, load.requests);
  const per = (us: number) => f2(us / n);
  log();
  log(
    `${name}: ${f0(load.rps)} req/s while profiled; ${per(summary.busyUs)} µs busy per request in the main thread ` +
      `(${f0(summary.idleUs / 1000)} ms idle in all); ${file}`,
  );
  log('self time by place (natives charged to their JavaScript caller), µs per request:');
  table(
    ['place', 'µs/req', 'share'],
    summary.byPlace.map(([k, us]) => [k, per(us), pct(us / summary.busyUs)]),
  );
  if (summary.tenantryInclusive.length) {
    log('inclusive time of Tenantry functions, µs per request:');
    table(
      ['function', 'µs/req', 'share'],
      summary.tenantryInclusive.slice(0, 20).map(([k, us]) => [k, per(us), pct(us / summary.busyUs)]),
    );
  }
  log('top self time by function, µs per request:');
  table(
    ['function', 'µs/req', 'share'],
    summary.topSelf.slice(0, 20).map(([k, us]) => [k, per(us), pct(us / summary.busyUs)]),
  );
}

// ── main ──────────────────────────────────────────────────────────────────────────────

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  let aborted = false;
  const onSigint = () => {
    aborted = true;
    stopLoad();
    log('\ninterrupted: cleaning up…');
  };
  process.once('SIGINT', onSigint);
  const monitor = new pg.Client({ connectionString: options.databaseUrl, application_name: 'tenantry-bench-http' });
  await monitor.connect();
  const version = (await monitor.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version;
  const machine = describeMachine(version ?? 'unknown');
  log(
    `HTTP benchmark: GET /v1/items/{id}, Tenantry's full path vs bare Fastify + pg${options.quick ? ' (quick)' : ''}`,
  );
  log(`load average at start: ${machine.loadAverage.join(' / ')}`);
  let fixture: BenchFixture | undefined;
  const children: ServerChild[] = [];
  let failed = false;
  try {
    const t0 = Date.now();
    fixture = await createFixture(options.databaseUrl, { tenants: options.tenants, itemsPerTenant: options.items });
    log(`seeded ${fixture.name} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const base = {
      databaseUrl: fixture.url,
      secret: fixture.secret,
      roles: fixture.roles,
      planLimits: BENCH_PLAN_LIMITS,
    };
    const tenantryChild = await ServerChild.start({ ...base, side: 'tenantry' });
    children.push(tenantryChild);
    // The baseline's pool: as large as Tenantry's runtime pool, same idle timeout.
    const bareChild = await ServerChild.start({
      ...base,
      side: 'bare',
      barePrepared: options.barePrepared,
      poolMax: tenantryChild.ready.poolMax,
      idleTimeoutMs: tenantryChild.ready.idleTimeoutMs,
    });
    children.push(bareChild);
    const mix = buildMix(fixture, options.mix);
    const sides: Record<SideName, Side> = {
      tenantry: { name: 'tenantry', process: 'tenantry', child: tenantryChild, requests: mix.tenantry },
      bare: { name: 'bare', process: 'bare', child: bareChild, requests: mix.bare },
    };
    await checkSameAnswers([sides.tenantry, sides.bare], 32);
    printMachine(machine, options, tenantryChild.ready.poolMax, fixture);

    for (const side of [sides.tenantry, sides.bare]) {
      const warm = await runLoad({
        url: side.child.ready.url,
        connections: options.connections,
        requests: side.requests,
        seconds: options.warmup,
      });
      log(`warm-up ${side.name}: ${f0(warm.rps)} req/s, errors ${warm.errors}/${warm.non2xx}`);
      if (aborted) return 130;
    }

    const backends = new BackendCpu(monitor, fixture.name);
    const results: Record<SideName, Round[]> = { tenantry: [], bare: [] };
    for (let i = 0; i < options.rounds && !aborted; i++) {
      const order: SideName[] = i % 2 === 0 ? ['tenantry', 'bare'] : ['bare', 'tenantry'];
      for (const name of order) {
        const round = await measureRound(sides[name], options, backends);
        results[name].push(round);
        log(
          `round ${i + 1} ${name}: ${f0(round.load.rps)} req/s, p50 ${f2(round.load.p50)} ms, ` +
            `p99 ${f2(round.load.p99)} ms, errors ${round.load.errors}/${round.load.non2xx}`,
        );
      }
    }
    if (aborted) return 130;
    const t = summarize(results.tenantry);
    const b = summarize(results.bare);
    failed = t.errors + t.non2xx + b.errors + b.non2xx > 0;

    log();
    log('anatomy (1 connection, probes on; per-request figures include the probes):');
    const anatomies: Partial<Record<SideName, Anatomy>> = {};
    for (const name of ['tenantry', 'bare'] as const) {
      if (aborted) return 130;
      anatomies[name] = await runAnatomy(sides[name], options, monitor, fixture.name);
    }

    const profiles: { name: SideName; load: LoadResult; file: string; summary: ProfileSummary }[] = [];
    if (options.profile) {
      const dir = options.profileDir ?? path.join(os.tmpdir(), `tenantry-bench-http-${Date.now()}`);
      await mkdir(dir, { recursive: true });
      for (const name of ['tenantry', 'bare'] as const) {
        if (aborted) return 130;
        const { load, file } = await runProfile(sides[name], options, dir);
        profiles.push({ name, load, file, summary: summarizeProfile(file) });
      }
    }

    let matrix: Matrix | undefined;
    if (options.matrix && !aborted) {
      // The main children are done: close them first, so the matrix has the machine to itself.
      await Promise.all(children.splice(0).map((c) => c.close()));
      log();
      log('matrix (fresh server processes with the mixed variants):');
      matrix = await runMatrix(fixture, options, backends, mix, () => aborted);
      if (aborted) return 130;
      const all = [...matrix.rounds.values()].flat();
      failed ||= all.some((r) => r.load.errors + r.load.non2xx > 0);
    }

    log();
    log('──────────────────────────────────────────────────────────────────────────────');
    printMachine(describeMachine(machine.postgres), options, tenantryChild.ready.poolMax, fixture);
    printRounds(results);
    printSummary(t, b, results);
    for (const name of ['tenantry', 'bare'] as const) {
      const anatomy = anatomies[name];
      if (anatomy) printAnatomy(name, anatomy);
    }
    for (const p of profiles) printProfile(p.name, p.load, p.file, p.summary);
    if (matrix) printMatrix(matrix);
    if (failed) log('\nERROR: errors or non-2xx answers during the measured rounds: the figures are not valid.');
    return failed ? 1 : 0;
  } finally {
    process.off('SIGINT', onSigint);
    await Promise.all(children.map((c) => c.close()));
    await fixture
      ?.drop()
      .catch((error: unknown) => log(`could not drop ${fixture?.name}: ${(error as Error).message}`));
    await monitor.end();
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
