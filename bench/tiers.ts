/**
 * The tiers benchmark: how fast schema-tier tenants are provisioned (cold create, warm-pool
 * fill, warm claim) against pool-tier creates in the same run, and how the throughput of
 * one tenant transaction changes as the number of tenants grows, pool tier against schema
 * tier — the shape of Aulbach et al., SIGMOD 2008, where private tables degrade with the
 * number of tenants. See BENCHMARKS.md for the figures.
 *
 *   node bench/tiers.ts [--tenants 10000] [--concurrency 8] [--clients 8] [--seconds 5] [--keep]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the benchmark works in a database of its own and drops it at the end.
 */
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type ItemsDB, items, itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { contextOf, type TenantContext, type TenantRecord, Tenantry } from '../packages/tenantry/src/index.ts';
import { quoteIdent } from '../packages/tenantry/src/sql.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { rssAnonMiB } from './lib/backend-memory.ts';
import { type BenchDatabase, createBenchDatabase, withDatabase } from './lib/database.ts';
import { measureSides, ServerCpu, type SideResult } from './lib/measure.ts';
import { describeScans, scanNodes } from './lib/plan.ts';
import { fixed, log, since } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median, quantile } from './lib/stats.ts';
import { table } from './lib/table.ts';
import { pick, type Side } from './lib/workloads.ts';

/** The issue's target for warm claims. */
const CLAIM_TARGET = 100;
/** Provisioning runs in ten blocks per tier, so the rate can be followed as the count grows. */
const BLOCKS = 10;
/** Of the ten schema-tier blocks: cold creates first, then warm claims (half at concurrency 1, half at --concurrency). */
const COLD_BLOCKS = 4;
const THROUGHPUT_COUNTS = [10, 100, 1000, 10_000];
const PLACEMENT = 'schemas';

const USAGE = `Usage: node bench/tiers.ts [options]

  --tenants N        schema-tier tenants to provision, and as many pool-tier ones (default 10000;
                     a multiple of ${BLOCKS}): ${COLD_BLOCKS} blocks of N/${BLOCKS} created cold, ${BLOCKS - COLD_BLOCKS} claimed warm
  --concurrency C    concurrent creates in the concurrent warm-claim blocks (default 8; the others run at 1)
  --clients N        concurrent clients per tier in the throughput section (default 8)
  --seconds S        measured seconds per tier and tenant count (default 5)
  --rounds R         alternating rounds those seconds are split into (default 10: short rounds pair
                     the sides more closely on a machine shared with other work)
  --warmup S         unmeasured seconds per tier before the rounds (default 1)
  --rows N           items seeded per tenant for the point lookups (default 10)
  --keep             keep the database and roles (their names are printed)
  --json FILE        also write the results as JSON
  DATABASE_URL       superuser connection (default postgres://postgres@127.0.0.1:5432/postgres)
`;

interface Options {
  readonly databaseUrl: string;
  readonly tenants: number;
  readonly concurrency: number;
  readonly clients: number;
  readonly seconds: number;
  readonly rounds: number;
  readonly warmup: number;
  readonly rows: number;
  readonly keep: boolean;
  readonly json: string | undefined;
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      tenants: { type: 'string' },
      concurrency: { type: 'string' },
      clients: { type: 'string' },
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      rows: { type: 'string' },
      keep: { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const tenants = positive(values.tenants, 10_000, '--tenants', true);
  if (tenants % BLOCKS !== 0 || tenants < 2 * BLOCKS) {
    throw new Error(`--tenants must be a multiple of ${BLOCKS} and at least ${2 * BLOCKS}`);
  }
  const concurrency = positive(values.concurrency, 8, '--concurrency', true);
  const clients = positive(values.clients, 8, '--clients', true);
  // Two tiers' pools plus the admin connections must fit in a stock max_connections of 100.
  if (concurrency > 32 || clients > 32) throw new Error('--concurrency and --clients are at most 32');
  return Object.freeze({
    databaseUrl: benchDatabaseUrl(),
    tenants,
    concurrency,
    clients,
    seconds: positive(values.seconds, 5, '--seconds', false),
    rounds: positive(values.rounds, 10, '--rounds', true),
    warmup: values.warmup === '0' ? 0 : positive(values.warmup, 1, '--warmup', false),
    rows: positive(values.rows, 10, '--rows', true),
    keep: values.keep ?? false,
    json: values.json,
  });
}

// ── Provisioning ────────────────────────────────────────────────────────────────────────

type Tier = 'pool' | 'schema';

interface Block {
  readonly tier: Tier;
  readonly phase: 'cold' | 'warm' | 'pool';
  readonly concurrency: number;
  readonly tenants: number;
  /** Tenants of this tier that existed before the block. */
  readonly before: number;
  /** Warm schemas waiting when the block started, and how many it claimed. */
  readonly warmBefore: number;
  readonly claimed: number;
  readonly seconds: number;
  readonly rate: number;
  /** Latency of one `tenants.create`, in ms. */
  readonly p50: number;
  readonly p99: number;
}

/** `count` creates through the public API, `concurrency` at a time; records in creation-slot order. */
async function createBlock(
  tenantry: Tenantry<ItemsDB>,
  tier: Tier,
  prefix: string,
  start: number,
  count: number,
  concurrency: number,
): Promise<{ records: TenantRecord[]; seconds: number; latencies: Float64Array }> {
  const records: TenantRecord[] = new Array(count);
  const latencies = new Float64Array(count);
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const n = start + i;
      const s = performance.now();
      records[i] = await tenantry.tenants.create({
        slug: `${prefix}-${String(n).padStart(6, '0')}`,
        name: `Bench ${prefix} ${n}`,
        tier,
      });
      latencies[i] = performance.now() - s;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { records, seconds: (performance.now() - t0) / 1000, latencies: latencies.sort() };
}

interface Provisioned {
  readonly pool: TenantRecord[];
  readonly schema: TenantRecord[];
  /** Pairs of blocks run back to back: [schema, pool]. */
  readonly pairs: [Block, Block][];
  readonly fills: {
    readonly before: number;
    readonly created: number;
    readonly seconds: number;
    readonly rate: number;
  }[];
}

function blockRow(pair: [Block, Block], index: number): string[] {
  const [s, p] = pair;
  return [
    String(index + 1),
    s.phase,
    String(s.concurrency),
    String(s.before),
    String(s.warmBefore),
    fixed(s.rate, 1),
    fixed(s.p50, 1),
    fixed(s.p99, 1),
    fixed(p.rate, 1),
    fixed(p.p50, 1),
    fixed(p.p99, 1),
    fixed(s.rate / p.rate, 2),
  ];
}

const BLOCK_HEADER = [
  'block',
  'schema path',
  'conc.',
  'schemas before',
  'warm before',
  'schema tenants/s',
  'p50 ms',
  'p99 ms',
  'pool tenants/s',
  'p50 ms',
  'p99 ms',
  'schema/pool',
];

/**
 * Ten schema-tier blocks, each paired with a pool-tier block of the same size and
 * concurrency run right before or after it (the order alternates), so load from
 * elsewhere on the shared machine hits a pair together. Cold blocks first (no warm
 * schema exists, so every create makes its schema in its own transaction); then the warm
 * pool is filled for the rest, and the remaining blocks claim from it.
 */
async function provision(tenantry: Tenantry<ItemsDB>, admin: pg.Pool, options: Options): Promise<Provisioned> {
  const size = options.tenants / BLOCKS;
  const pool: TenantRecord[] = [];
  const schema: TenantRecord[] = [];
  const pairs: [Block, Block][] = [];
  const schemasNow = async () =>
    Number(
      (await admin.query<{ n: string }>(`SELECT count(*) AS n FROM tenantry.targets WHERE kind = 'schema'`)).rows[0]?.n,
    );
  const warmNow = () => tenantry.provisioner.warmCount(PLACEMENT);

  const runPair = async (index: number, phase: 'cold' | 'warm', concurrency: number) => {
    const runSchema = async (): Promise<Block> => {
      const before = await schemasNow();
      const warmBefore = await warmNow();
      const r = await createBlock(tenantry, 'schema', phase, schema.length, size, concurrency);
      const claimed = warmBefore - (await warmNow());
      schema.push(...r.records);
      const wrongTier = r.records.filter((t) => t.tier !== 'schema' || t.schemaName === null).length;
      if (wrongTier > 0) log(`  WARNING: ${wrongTier} tenants of the block have no schema of their own`);
      if (phase === 'warm' && claimed !== size) {
        log(`  WARNING: only ${claimed} of ${size} creates claimed a warm schema; the others were created cold`);
      }
      return {
        tier: 'schema',
        phase,
        concurrency,
        tenants: size,
        before,
        warmBefore,
        claimed,
        seconds: r.seconds,
        rate: size / r.seconds,
        p50: quantile(r.latencies, 0.5),
        p99: quantile(r.latencies, 0.99),
      };
    };
    const runPool = async (): Promise<Block> => {
      const before = pool.length;
      const r = await createBlock(tenantry, 'pool', 'pool', pool.length, size, concurrency);
      pool.push(...r.records);
      return {
        tier: 'pool',
        phase: 'pool',
        concurrency,
        tenants: size,
        before,
        warmBefore: 0,
        claimed: 0,
        seconds: r.seconds,
        rate: size / r.seconds,
        p50: quantile(r.latencies, 0.5),
        p99: quantile(r.latencies, 0.99),
      };
    };
    let s: Block;
    let p: Block;
    if (index % 2 === 0) {
      s = await runSchema();
      p = await runPool();
    } else {
      p = await runPool();
      s = await runSchema();
    }
    const pair: [Block, Block] = [s, p];
    pairs.push(pair);
    log(table(BLOCK_HEADER, [blockRow(pair, index)], 2).split('\n')[1] as string);
  };

  log('');
  log(
    `Provisioning: ${BLOCKS} blocks of ${size} schema-tier tenants, each paired with ${size} pool-tier creates (alternating order)`,
  );
  log(
    `  cold: blocks 1–${COLD_BLOCKS}, no warm schema (CREATE SCHEMA + migrations inside the tenant's transaction), concurrency 1`,
  );
  log(
    `  warm: blocks ${COLD_BLOCKS + 1}–${BLOCKS}, claims from a pool of ${(BLOCKS - COLD_BLOCKS) * size} warm schemas filled beforehand, concurrency alternating 1 and ${options.concurrency}`,
  );
  log(table(BLOCK_HEADER, [], 2));
  for (let b = 0; b < COLD_BLOCKS; b++) await runPair(b, 'cold', 1);

  // The warm pool: background work, timed per block of `size` schemas.
  log('');
  log(
    `Warm fill: provisioner.fillWarmSchemas('${PLACEMENT}', n) up to ${(BLOCKS - COLD_BLOCKS) * size}, timed per ${size}`,
  );
  const fillHeader = ['fill block', 'schemas before', 'created', 'seconds', 'schemas/s'];
  log(table(fillHeader, [], 1));
  const fills: Provisioned['fills'][number][] = [];
  for (let k = 1; k <= BLOCKS - COLD_BLOCKS; k++) {
    const before = await schemasNow();
    const t0 = performance.now();
    const created = await tenantry.provisioner.fillWarmSchemas(PLACEMENT, k * size);
    const seconds = (performance.now() - t0) / 1000;
    const fill = { before, created, seconds, rate: created / seconds };
    fills.push(fill);
    log(
      table(
        fillHeader,
        [[String(k), String(before), String(created), fixed(seconds, 1), fixed(fill.rate, 1)]],
        1,
      ).split('\n')[1] as string,
    );
  }

  log('');
  log('Warm claims');
  log(table(BLOCK_HEADER, [], 2));
  for (let b = COLD_BLOCKS; b < BLOCKS; b++) {
    await runPair(b, 'warm', (b - COLD_BLOCKS) % 2 === 0 ? 1 : options.concurrency);
  }
  return { pool, schema, pairs, fills };
}

// ── Throughput against the number of tenants ────────────────────────────────────────────

/** Item ids seeded per tenant (index in the tier's list), for the point lookups. */
type Seeded = string[][];

/**
 * Seeds `rows` items per tenant as the superuser (tenant_id explicit; the usage trigger
 * runs as for any insert), ids chosen here so the lookups know them. Two writers: the
 * machine this was written for has two cores.
 */
async function seed(admin: pg.Pool, pool: readonly TenantRecord[], schema: readonly TenantRecord[], rows: number) {
  const ids = (list: readonly TenantRecord[]): Seeded => list.map(() => Array.from({ length: rows }, randomUUID));
  const poolIds = ids(pool);
  const schemaIds = ids(schema);
  const chunk = Math.max(1, Math.floor(20_000 / rows));
  for (let from = 0; from < pool.length; from += chunk) {
    const slice = pool.slice(from, from + chunk);
    await admin.query(
      `INSERT INTO public.items (tenant_id, id, title)
       SELECT t, i, 'seeded item' FROM unnest($1::uuid[], $2::uuid[]) AS x (t, i)`,
      [slice.flatMap((t) => Array.from({ length: rows }, () => t.id)), poolIds.slice(from, from + chunk).flat()],
    );
  }
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < schema.length; i = next++) {
      const t = schema[i] as TenantRecord;
      await admin.query(
        `INSERT INTO ${quoteIdent(t.schemaName as string)}.items (tenant_id, id, title)
         SELECT $1, i, 'seeded item' FROM unnest($2::uuid[]) AS i`,
        [t.id, schemaIds[i]],
      );
    }
  };
  await Promise.all([worker(), worker()]);
  await admin.query('VACUUM (ANALYZE) public.items, public.tenant_usage');
  return { poolIds, schemaIds };
}

/** The runtime-role backends of one tier's Tenantry (its admin pool shares the application_name). */
async function backendPids(admin: pg.Pool, db: BenchDatabase, applicationName: string): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = $1 AND usename = $2`,
    [applicationName, db.roles.runtime],
  );
  return rows.map((r) => r.pid);
}

/** One tier's Tenantry, runtime pool sized to `clients` and fully opened, under its own application_name. */
async function openTier(
  db: BenchDatabase,
  adminUrl: string,
  name: string,
  clients: number,
): Promise<Tenantry<ItemsDB>> {
  const tenantry = await Tenantry.connect<ItemsDB>({
    // The runtime URL is derived from this one, application_name included: both pools carry `name`.
    databaseUrl: withDatabase(adminUrl, db.name, name),
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    pool: { max: clients, idleTimeoutMs: 3_600_000 },
  });
  const held = await Promise.all(Array.from({ length: clients }, () => tenantry.runtimePool.connect()));
  for (const client of held) client.release();
  return tenantry;
}

/** The measured transaction: a point lookup by primary key and an insert, in one tenant transaction. */
function tenantTransaction(tenantry: Tenantry<ItemsDB>, tenant: TenantContext, ids: readonly string[]) {
  return tenantry.transaction(tenant, async (tx) => {
    const found = await items.get(tx, pick(ids));
    if (!found) throw new Error(`seeded item of tenant ${tenant.slug} not found`);
    await items.create(tx, { title: 'benchmark item' });
  });
}

interface Cell {
  readonly tenants: number;
  /** pool@10, pool@n, schema@10, schema@n: every cell re-measures the 10-tenant sets in the same rounds. */
  readonly results: SideResult[];
  /** Per tier: tx/s at n over tx/s at 10, the median of per-round ratios. */
  readonly relative: Record<Tier, number>;
  /** schema@n over pool@n, the median of per-round ratios. */
  readonly schemaOverPool: number;
  /** Median RssAnon of each tier's backends after the cell, MiB. */
  readonly memory: Record<Tier, number>;
}

/** Median over rounds of `x`'s tx/s over `y`'s in the same round (the sides of a round ran seconds apart). */
function pairedTps(x: SideResult, y: SideResult): number {
  const n = Math.min(x.rounds.length, y.rounds.length);
  return median(
    Array.from({ length: n }, (_, i) => (x.rounds[i]?.tps ?? Number.NaN) / (y.rounds[i]?.tps ?? Number.NaN)),
  );
}

/** CPU time a backend has used, in µs, from `/proc/<pid>/schedstat`; NaN when unreadable. */
async function backendCpuUs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  try {
    return Number((await readFile(`/proc/${pid}/schedstat`, 'utf8')).split(' ')[0]) / 1000;
  } catch {
    return Number.NaN;
  }
}

/** Wall and server CPU of one kind of transaction, the first time a connection serves the tenant and the second. */
interface TouchFigures {
  readonly firstMs: number;
  readonly secondMs: number;
  readonly firstCpuUs: number;
  readonly secondCpuUs: number;
}

/** What a connection pays the first time it serves a tenant, per tier (medians over the sample). */
interface FirstTouch {
  readonly tier: Tier;
  readonly sample: number;
  /** A lookup-only transaction, then an insert-only one (the usage trigger's first call included). */
  readonly lookup: TouchFigures;
  readonly insert: TouchFigures;
  /** Growth of the backend's private memory per tenant served, KiB. */
  readonly kibPerTenant: number;
}

/**
 * On one fresh connection, for `sample` random tenants: a lookup-only transaction twice,
 * then an insert-only one twice. The first of each pays for whatever the backend builds
 * per tenant (for a schema: relation, catalog and plan cache entries of its own tables,
 * and the PL/pgSQL compile of its own trigger function); the second is the control.
 * Wall time suffers from the shared machine; the backend's CPU (schedstat) much less.
 */
async function firstTouch(
  db: BenchDatabase,
  adminUrl: string,
  admin: pg.Pool,
  tier: Tier,
  tenants: readonly TenantContext[],
  ids: Seeded,
  sample: number,
): Promise<FirstTouch> {
  const name = `tenantry_bench_touch_${tier}`;
  const tenantry = await openTier(db, adminUrl, name, 1);
  try {
    const [pid] = await backendPids(admin, db, name);
    // The connection's one-time work (role check, prepared context statement) on a tenant outside the sample.
    const order = [...tenants.keys()].sort(() => Math.random() - 0.5).slice(0, sample + 1);
    const first = order.pop() as number;
    await tenantTransaction(tenantry, tenants[first] as TenantContext, ids[first] as string[]);
    const memBefore = pid === undefined ? Number.NaN : await rssAnonMiB(pid);
    const samples = { lookup: [[], [], [], []] as number[][], insert: [[], [], [], []] as number[][] };
    const timed = async (into: number[][], offset: 0 | 2, run: () => Promise<unknown>) => {
      const cpu0 = await backendCpuUs(pid);
      const t0 = performance.now();
      await run();
      (into[offset] as number[]).push(performance.now() - t0);
      (into[offset + 1] as number[]).push((await backendCpuUs(pid)) - cpu0);
    };
    for (const i of order) {
      const tenant = tenants[i] as TenantContext;
      const tenantIds = ids[i] as string[];
      const lookup = () => tenantry.transaction(tenant, (tx) => items.get(tx, pick(tenantIds)));
      const insert = () => tenantry.transaction(tenant, (tx) => items.create(tx, { title: 'first touch' }));
      await timed(samples.lookup, 0, lookup);
      await timed(samples.lookup, 2, lookup);
      await timed(samples.insert, 0, insert);
      await timed(samples.insert, 2, insert);
    }
    const memAfter = pid === undefined ? Number.NaN : await rssAnonMiB(pid);
    const figures = (s: number[][]): TouchFigures => ({
      firstMs: median(s[0] as number[]),
      firstCpuUs: median(s[1] as number[]),
      secondMs: median(s[2] as number[]),
      secondCpuUs: median(s[3] as number[]),
    });
    return {
      tier,
      sample: order.length,
      lookup: figures(samples.lookup),
      insert: figures(samples.insert),
      kibPerTenant: ((memAfter - memBefore) * 1024) / order.length,
    };
  } finally {
    await tenantry.close();
  }
}

// ── Main ────────────────────────────────────────────────────────────────────────────────

export async function main(argv: readonly string[]): Promise<number> {
  let options: Options;
  try {
    const parsed = parseOptions(argv);
    if (parsed === 'help') {
      log(USAGE);
      return 0;
    }
    options = parsed;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const started = performance.now();
  const db = await createBenchDatabase(options.databaseUrl);
  let admin: pg.Pool | undefined;
  // One cleanup, shared: an interrupt drops the database under the running provisioning,
  // which then fails; its `finally` must wait for the same drop (roles included) rather
  // than let the error end the process halfway through it.
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await admin?.end().catch(() => {});
      if (options.keep) log(`kept database ${db.name} (roles ${db.roles.owner}, ${db.roles.runtime})`);
      else await db.drop();
    })());
  const onSignal = () => {
    log('\ninterrupted: cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    admin = new pg.Pool({
      connectionString: withDatabase(options.databaseUrl, db.name, 'tenantry_bench_admin'),
      max: 4,
    });
    const version = (await admin.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v ?? 'unknown';
    const machine = await describeMachine(version);
    const settings = (
      await admin.query<{ name: string; setting: string }>(
        `SELECT name, current_setting(name) AS setting FROM pg_settings
          WHERE name IN ('shared_buffers', 'max_connections', 'fsync', 'synchronous_commit') ORDER BY name`,
      )
    ).rows;
    log(`Tenantry tiers benchmark — database ${db.name}`);
    log(
      `machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, ${machine.kernel}, load ${machine.loadAverage.join(' ')}`,
    );
    log(`node ${machine.node}; ${machine.postgres}`);
    log(`postgres settings: ${settings.map((s) => `${s.name} ${s.setting}`).join(', ')}`);
    log(
      `tenants ${options.tenants} per tier (schema: ${COLD_BLOCKS * (options.tenants / BLOCKS)} cold + ${(BLOCKS - COLD_BLOCKS) * (options.tenants / BLOCKS)} warm), concurrency ${options.concurrency}; throughput: ${options.clients} clients per tier, ${options.seconds} s per cell in ${options.rounds} alternating rounds (+${options.warmup} s warm-up)`,
    );
    log(
      'tables: the example app (example_001_items: items with PK, (created_at, id) and GIN indexes, RLS; example_002: tenant_usage + usage trigger)',
    );

    // Setup through the public API.
    let t0 = performance.now();
    const owner = await Tenantry.connect<ItemsDB>({
      databaseUrl: withDatabase(options.databaseUrl, db.name, 'tenantry_bench_setup'),
      secret: db.secret,
      roles: db.roles,
      migrations: itemsMigrations,
      adminPoolMax: options.concurrency + 2,
    });
    let provisioned: Provisioned;
    try {
      await owner.setup();
      await owner.migrate();
      log(`setup + migrate: ${since(t0)}`);
      t0 = performance.now();
      provisioned = await provision(owner, admin, options);
      log(`provisioning: ${since(t0)}`);
    } finally {
      await owner.close();
    }

    log('');
    log('Provisioning summary (tenants/s per block; schema/pool = the paired blocks)');
    log(table(BLOCK_HEADER, provisioned.pairs.map(blockRow), 2));

    // Throughput against the number of tenants.
    t0 = performance.now();
    const { poolIds, schemaIds } = await seed(admin, provisioned.pool, provisioned.schema, options.rows);
    log('');
    log(`seeded ${options.rows} items per tenant (${2 * options.tenants} tenants): ${since(t0)}`);
    const poolContexts = provisioned.pool.map((t) => contextOf(t));
    const schemaContexts = provisioned.schema.map((t) => contextOf(t));
    const counts = [...new Set([...THROUGHPUT_COUNTS.filter((c) => c < options.tenants), options.tenants])].filter(
      (c) => c <= Math.min(options.tenants, THROUGHPUT_COUNTS.at(-1) as number),
    );

    // Plans of the lookup and the insert as the runtime role, at the largest count.
    const check = {
      pool: await openTier(db, options.databaseUrl, 'tenantry_bench_check_pool', 1),
      schema: await openTier(db, options.databaseUrl, 'tenantry_bench_check_schema', 1),
    };
    try {
      log('Plans (EXPLAIN ANALYZE as the runtime role, in a tenant transaction)');
      for (const tier of ['pool', 'schema'] as const) {
        const i = Math.floor(Math.random() * options.tenants);
        const tenant = (tier === 'pool' ? poolContexts : schemaContexts)[i] as TenantContext;
        const id = ((tier === 'pool' ? poolIds : schemaIds)[i] as string[])[0];
        const plan = await check[tier].transaction(tenant, async (tx) => {
          const { rows } = await tx.query<{ 'QUERY PLAN': unknown }>(
            `EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON) SELECT id, title FROM items WHERE tenant_id = $1 AND id = $2`,
            [tenant.id, id],
          );
          return rows[0]?.['QUERY PLAN'];
        });
        log(`  ${tier.padEnd(6)} lookup: ${describeScans(scanNodes(plan)).join(' | ')}`);
      }
    } finally {
      await Promise.all([check.pool.close(), check.schema.close()]);
    }

    // Every cell measures the tier at n tenants and again at its first 10, in the same
    // alternating rounds: "relative to 10" is then a paired ratio, robust to the load from
    // elsewhere that drifts over the minutes between cells.
    const cpu = new ServerCpu(admin);
    const cells: Cell[] = [];
    const base = counts[0] as number;
    log('');
    log(
      `Throughput: a point lookup by primary key and an insert (the example app's items.get + items.create), on a random tenant of the first n of its tier that no other client of the side is in; ${options.clients} clients per tier, each tier on its own runtime pool, fresh connections per n; each n measured with the same tier at ${base} tenants in alternating rounds`,
    );
    for (const n of counts.slice(1)) {
      const pool = await openTier(db, options.databaseUrl, 'tenantry_bench_pool', options.clients);
      const schema = await openTier(db, options.databaseUrl, 'tenantry_bench_schema', options.clients);
      try {
        const side = (tier: Tier, tenantry: Tenantry<ItemsDB>, of: number): Side => {
          const contexts = tier === 'pool' ? poolContexts : schemaContexts;
          const ids = tier === 'pool' ? poolIds : schemaIds;
          // Tenants in a transaction of this side right now. The example app's usage trigger
          // updates one row per tenant, so two clients on one tenant queue on its lock until
          // the first commits: at 10 tenants and 8 clients that would be half the
          // transactions, and measure row contention, not the number of tenants.
          const busy = new Set<number>();
          return {
            key: `${tier}@${of}`,
            label: `${tier} tier, ${of} tenants`,
            run: async () => {
              let i = Math.floor(Math.random() * of);
              while (busy.has(i) && busy.size < of) i = Math.floor(Math.random() * of);
              busy.add(i);
              try {
                return await tenantTransaction(tenantry, contexts[i] as TenantContext, ids[i] as string[]);
              } finally {
                busy.delete(i);
              }
            },
          };
        };
        const results = await measureSides(
          [side('pool', pool, base), side('pool', pool, n), side('schema', schema, base), side('schema', schema, n)],
          { clients: options.clients, seconds: options.seconds, rounds: options.rounds, warmup: options.warmup, cpu },
        );
        const memory = {
          pool: median(
            await Promise.all((await backendPids(admin, db, 'tenantry_bench_pool')).map((pid) => rssAnonMiB(pid))),
          ),
          schema: median(
            await Promise.all((await backendPids(admin, db, 'tenantry_bench_schema')).map((pid) => rssAnonMiB(pid))),
          ),
        };
        const [p10, pn, s10, sn] = results as [SideResult, SideResult, SideResult, SideResult];
        const cell: Cell = {
          tenants: n,
          results,
          relative: { pool: pairedTps(pn, p10), schema: pairedTps(sn, s10) },
          schemaOverPool: pairedTps(sn, pn),
          memory,
        };
        cells.push(cell);
        const rounds = (r: SideResult) => r.rounds.map((x) => fixed(x.tps, 0)).join(' ');
        log(
          `  n=${n}: per-round tx/s — pool@${base} ${rounds(p10)}; pool@${n} ${rounds(pn)}; schema@${base} ${rounds(s10)}; schema@${n} ${rounds(sn)}`,
        );
      } finally {
        await Promise.all([pool.close(), schema.close()]);
      }
    }
    const throughputRows = cells.map((cell) => {
      const [p10, pn, s10, sn] = cell.results as [SideResult, SideResult, SideResult, SideResult];
      return [
        String(cell.tenants),
        fixed(p10.tps, 0),
        fixed(pn.tps, 0),
        fixed(cell.relative.pool, 2),
        fixed(pn.p50, 2),
        fixed(pn.p99, 1),
        fixed(pn.pgCpuUs, 0),
        fixed(s10.tps, 0),
        fixed(sn.tps, 0),
        fixed(cell.relative.schema, 2),
        fixed(sn.p50, 2),
        fixed(sn.p99, 1),
        fixed(sn.pgCpuUs, 0),
        fixed(cell.schemaOverPool, 2),
        fixed(cell.memory.pool, 1),
        fixed(cell.memory.schema, 1),
      ];
    });
    const throughputHeader = [
      'n',
      `pool@${base}`,
      'pool@n',
      `pool n/${base}`,
      'p50 ms',
      'p99 ms',
      'pg µs/tx',
      `schema@${base}`,
      'schema@n',
      `schema n/${base}`,
      'p50 ms',
      'p99 ms',
      'pg µs/tx',
      'schema/pool @n',
      'pool MiB',
      'schema MiB',
    ];
    log('');
    log(
      `Throughput against the number of tenants (tx/s: medians of ${options.rounds} rounds; ratios: medians of per-round ratios; latency and pg CPU of the @n side; MiB: median RssAnon per backend of the tier's pool after the cell)`,
    );
    log(table(throughputHeader, throughputRows, 1));

    // What a connection pays the first time it serves a tenant, at the full count.
    t0 = performance.now();
    const sample = Math.min(200, options.tenants - 1);
    const touches = [
      await firstTouch(db, options.databaseUrl, admin, 'pool', poolContexts, poolIds, sample),
      await firstTouch(db, options.databaseUrl, admin, 'schema', schemaContexts, schemaIds, sample),
    ];
    log('');
    log(
      `First use of a tenant by a connection: ${sample} random tenants of ${options.tenants}, one fresh connection per tier, each transaction twice (medians; pg µs = the backend's CPU): ${since(t0)}`,
    );
    log(
      table(
        [
          'tier',
          'lookup 1st ms',
          '2nd ms',
          '1st pg µs',
          '2nd pg µs',
          'insert 1st ms',
          '2nd ms',
          '1st pg µs',
          '2nd pg µs',
          'backend KiB/tenant',
        ],
        touches.map((t) => [
          t.tier,
          fixed(t.lookup.firstMs, 2),
          fixed(t.lookup.secondMs, 2),
          fixed(t.lookup.firstCpuUs, 0),
          fixed(t.lookup.secondCpuUs, 0),
          fixed(t.insert.firstMs, 2),
          fixed(t.insert.secondMs, 2),
          fixed(t.insert.firstCpuUs, 0),
          fixed(t.insert.secondCpuUs, 0),
          fixed(t.kibPerTenant, 0),
        ]),
        1,
      ),
    );

    const { rows: catalogRows } = await admin.query<{
      relations: string;
      pg_class: string;
      pg_attribute: string;
      db: string;
    }>(
      `SELECT (SELECT count(*) FROM pg_class) AS relations,
              pg_size_pretty(pg_total_relation_size('pg_class')) AS pg_class,
              pg_size_pretty(pg_total_relation_size('pg_attribute')) AS pg_attribute,
              pg_size_pretty(pg_database_size(current_database())) AS db`,
    );
    const catalog = catalogRows[0];

    // Summary.
    const cold = provisioned.pairs.filter(([s]) => s.phase === 'cold');
    const warm1 = provisioned.pairs.filter(([s]) => s.phase === 'warm' && s.concurrency === 1);
    const warmN = provisioned.pairs.filter(([s]) => s.phase === 'warm' && s.concurrency !== 1);
    const rates = (list: [Block, Block][], i: 0 | 1) => list.map((pair) => fixed(pair[i].rate, 0)).join(' → ');
    const claimMedian = (list: [Block, Block][]) => median(list.map(([s]) => s.rate));
    const claimVerdict = (list: [Block, Block][], c: number) => {
      const m = claimMedian(list);
      const min = Math.min(...list.map(([x]) => x.rate));
      return `c=${c} median ${fixed(m, 0)}/s (slowest block ${fixed(min, 0)}) ${m >= CLAIM_TARGET ? 'PASS' : 'MISS'}`;
    };
    log('');
    log('Summary');
    log(
      `  cold schema create (c=1), per block: ${rates(cold, 0)} tenants/s; pool-tier create alongside: ${rates(cold, 1)}`,
    );
    log(
      `  warm fill (background, one connection), per block: ${provisioned.fills.map((f) => fixed(f.rate, 0)).join(' → ')} schemas/s`,
    );
    log(
      `  warm claims: c=1 ${rates(warm1, 0)} tenants/s (pool ${rates(warm1, 1)}); c=${options.concurrency} ${rates(warmN, 0)} (pool ${rates(warmN, 1)})`,
    );
    log(
      `  claims target ≥ ${CLAIM_TARGET} tenants/s: ${claimVerdict(warm1, 1)}; ${claimVerdict(warmN, options.concurrency)}`,
    );
    for (const cell of cells) {
      log(
        `  throughput at ${cell.tenants} tenants relative to ${base}: pool ${fixed(cell.relative.pool, 2)}, schema ${fixed(cell.relative.schema, 2)}; schema/pool at ${cell.tenants} ${fixed(cell.schemaOverPool, 2)}`,
      );
    }
    const schemaTouch = touches[1] as FirstTouch;
    log(
      `  first use of a schema tenant by a connection: lookup ${fixed(schemaTouch.lookup.firstMs, 2)} ms (then ${fixed(schemaTouch.lookup.secondMs, 2)}), insert ${fixed(schemaTouch.insert.firstMs, 2)} ms (then ${fixed(schemaTouch.insert.secondMs, 2)}); backend CPU ${fixed(schemaTouch.lookup.firstCpuUs + schemaTouch.insert.firstCpuUs, 0)} µs (then ${fixed(schemaTouch.lookup.secondCpuUs + schemaTouch.insert.secondCpuUs, 0)}); ≈${fixed(schemaTouch.kibPerTenant, 0)} KiB of backend memory per tenant`,
    );
    log(
      `  catalog at the end: ${catalog?.relations} relations; pg_class ${catalog?.pg_class}, pg_attribute ${catalog?.pg_attribute}; database ${catalog?.db}`,
    );
    const finished = await describeMachine(version);
    log(`  load average at the end: ${finished.loadAverage.join(' ')}; total time ${since(started)}`);

    if (options.json) {
      await writeFile(
        options.json,
        `${JSON.stringify(
          {
            command: `node bench/tiers.ts ${argv.join(' ')}`.trim(),
            machine: { ...machine, loadAverageAtEnd: finished.loadAverage, settings },
            options,
            provisioning: { pairs: provisioned.pairs, fills: provisioned.fills },
            throughput: cells.map((c) => ({
              tenants: c.tenants,
              relative: c.relative,
              schemaOverPool: c.schemaOverPool,
              memoryMiB: c.memory,
              sides: c.results.map(({ rounds, ...r }) => ({ ...r, rounds: rounds.map((x) => x.tps) })),
            })),
            firstTouch: touches,
            catalog,
            totalSeconds: (performance.now() - started) / 1000,
          },
          null,
          2,
        )}\n`,
      );
      log(`results written to ${options.json}`);
    }
    return 0;
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
