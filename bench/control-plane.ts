/**
 * Control-plane operations at fleet size: each operation timed on a small installation
 * (1,000 tenants) and a big one (100,000 pool-tier tenants; 20,000 schema-tier tenants in
 * the schema variant), in the same run, alternating installation by installation, repetition
 * by repetition. Target: the big installation's median within 1.2× of the small one's, and
 * `/metrics` of the same size (bounded, whatever the number of tenants).
 *
 * Operations, in-process through the public API (what the CLI and the REST routes call):
 * `tenants.list` (first page, and the middle page by cursor), `tenants.get` by slug and by
 * id (cold: the registry, which has no cache; warm: the request path's `TenantCache`), API
 * key verification (a real key created through the API; cold: a store with its cache off;
 * warm: `tenantry.apiKeys`), `planFleet()` (`migrate --plan`), `usage.top()` (`tenants top`),
 * and `GET /metrics` of the reference server (steady scrapes, and the first scrape of a new
 * server, which reads what later scrapes reuse), with its size in bytes.
 *
 * Each installation is a database of the benchmark's own, filled with one
 * `INSERT … SELECT generate_series` per control-plane table: tenants, one API key row each,
 * six hourly storage snapshots each, per-minute usage rows for a tenth of them over the last 24 h,
 * and this process's usage counters for that tenth (so `/metrics` has tenants to rank). The
 * schema variant creates real schemas (the example application's `items` table, copied
 * with `LIKE … INCLUDING ALL` from one tenant provisioned through the API, in batches), their
 * target rows and migration ledger rows, with 25 targets behind head in both installations
 * so that the plan has the same real work to report.
 *
 *   npm run bench -- control-plane [--variants pool,schema] [--small 1000] [--tenants 100000]
 *     [--schema-tenants 20000] [--reps 30] [--keep]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the databases are dropped at the end unless `--keep`.
 */
import { parseArgs } from 'node:util';
import { ApiKeyStore } from '../packages/tenantry/src/auth/api-key-store.ts';
import { createServer } from '../packages/tenantry/src/http/server.ts';
import { TenantCache } from '../packages/tenantry/src/identify/tenant-cache.ts';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import { KeyRing } from '../packages/tenantry/src/secrets/keys.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { type BenchDatabase, createBenchDatabase } from './lib/database.ts';
import { benchMigrations } from './lib/dataset.ts';
import { fixed, log, since } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median, quantile } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

const USAGE =
  'usage: npm run bench -- control-plane [--variants pool,schema] [--small 1000] [--tenants 100000] [--schema-tenants 20000] [--reps 30] [--keep]\n';
const ADMIN = 'bench-control-plane-admin-token-0123456789';
const TARGET = 1.2;
/** Targets behind head in both installations of the schema variant: what the plan reports. */
const BEHIND = 25;
/** Hourly storage snapshots per tenant (`serve` takes one an hour and keeps 90 days). */
const SNAPSHOTS = 6;
/** Schemas created per transaction (each takes a few locks; the lock table is finite). */
const SCHEMA_BATCH = 250;

type Variant = 'pool' | 'schema';

interface Options {
  readonly variants: readonly Variant[];
  readonly small: number;
  readonly tenants: number;
  readonly schemaTenants: number;
  readonly reps: number;
  readonly keep: boolean;
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      variants: { type: 'string' },
      small: { type: 'string' },
      tenants: { type: 'string' },
      'schema-tenants': { type: 'string' },
      reps: { type: 'string' },
      keep: { type: 'boolean', default: false },
    },
  });
  const variants = (values.variants ?? 'pool,schema').split(',').map((v) => v.trim());
  for (const v of variants) if (v !== 'pool' && v !== 'schema') throw new Error(`unknown variant ${v}`);
  return Object.freeze({
    variants: variants as Variant[],
    small: positive(values.small, 1000, '--small', true),
    tenants: positive(values.tenants, 100_000, '--tenants', true),
    schemaTenants: positive(values['schema-tenants'], 20_000, '--schema-tenants', true),
    reps: positive(values.reps, 30, '--reps', true),
    keep: values.keep === true,
  });
}

/** One installation: its database, a Tenantry on it, a server, and what the operations need. */
interface Installation {
  readonly label: string;
  readonly tenants: number;
  readonly db: BenchDatabase;
  readonly tenantry: Tenantry;
  readonly cache: TenantCache;
  readonly coldKeys: ApiKeyStore;
  readonly key: string;
  readonly slugs: readonly string[];
  readonly ids: readonly string[];
  readonly middleCursor: string;
  app: Awaited<ReturnType<typeof createServer>>;
  base: string;
}

const newServer = async (tenantry: Tenantry) => {
  const app = await createServer(tenantry as Tenantry<unknown>, {
    logger: false,
    adminToken: ADMIN,
    console: false,
    usage: { snapshotIntervalMs: 0 },
  });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, base };
};

/** Tenants, API key rows, snapshots and usage rows of a pool-tier installation, in bulk. */
async function fillPool(t: Tenantry, n: number): Promise<void> {
  await t.adminPool.query(
    `INSERT INTO tenantry.tenants (slug, name, tier, placement_id, plan, status, created_at)
     SELECT 'cp-' || i, 'Tenant ' || i, 'pool', (SELECT id FROM tenantry.placements WHERE name = 'shared'),
            (ARRAY['free', 'pro', 'enterprise'])[1 + i % 3], CASE WHEN i % 97 = 0 THEN 'suspended' ELSE 'active' END,
            now() - make_interval(secs => i)
       FROM generate_series(1, $1::int) i`,
    [n],
  );
}

/**
 * Real schemas for `n` schema-tier tenants (batches of {@link SCHEMA_BATCH}, one transaction
 * each), with the `items` table of `template`'s schema, and their tenant, target and ledger
 * rows. {@link BEHIND} of them are recorded one migration behind head.
 */
async function fillSchema(t: Tenantry, n: number, template: string): Promise<void> {
  const t0 = performance.now();
  for (let from = 1; from <= n; from += SCHEMA_BATCH) {
    const to = Math.min(n, from + SCHEMA_BATCH - 1);
    await t.adminPool.query(
      `DO $$ BEGIN
         FOR i IN ${from}..${to} LOOP
           EXECUTE format('CREATE SCHEMA %I', 'cp_' || i);
           EXECUTE format('CREATE TABLE %I.items (LIKE %I.items INCLUDING ALL)', 'cp_' || i, '${template}');
         END LOOP;
       END $$`,
    );
    if (to % 5000 < SCHEMA_BATCH && to >= 5000) log(`  ${to} schemas (${since(t0)})`);
  }
  log(`  ${n} schemas created in ${since(t0)} (${fixed(n / ((performance.now() - t0) / 1000), 0)} schemas/s)`);
  const head = benchMigrations.length;
  const last = benchMigrations.at(-1)?.id as string;
  await t.adminPool.query(
    `WITH p AS (SELECT id, name FROM tenantry.placements WHERE name = 'schemas'),
     ins AS (
       INSERT INTO tenantry.tenants (slug, name, tier, placement_id, schema_name, plan, status, created_at)
       SELECT 'cp-' || i, 'Tenant ' || i, 'schema', p.id, 'cp_' || i,
              (ARRAY['free', 'pro', 'enterprise'])[1 + i % 3], CASE WHEN i % 97 = 0 THEN 'suspended' ELSE 'active' END,
              now() - make_interval(secs => i)
         FROM generate_series(1, $1::int) i, p
       RETURNING id, schema_name)
     INSERT INTO tenantry.targets (id, kind, placement_id, schema_name, state, tenant_id, applied_count, version)
     SELECT 'schema/' || p.name || '/' || ins.schema_name, 'schema', p.id, ins.schema_name, 'active', ins.id,
            CASE WHEN substr(ins.schema_name, 4)::int <= $4 THEN $2 - 1 ELSE $2 END,
            CASE WHEN substr(ins.schema_name, 4)::int <= $4 THEN NULL ELSE $3 END
       FROM ins, p`,
    [n, head, last, BEHIND],
  );
  await t.adminPool.query(
    `INSERT INTO tenantry.migrations (chain, target, id)
     SELECT 'tenant', t.id, m.id FROM tenantry.targets t, unnest($1::text[]) WITH ORDINALITY m(id, k)
      WHERE t.schema_name LIKE 'cp\\_%' AND m.k <= t.applied_count`,
    [benchMigrations.map((m) => m.id)],
  );
}

/** What every installation has besides its tenants: key rows, snapshots, usage rows. */
async function fillCommon(t: Tenantry): Promise<void> {
  await t.adminPool.query(
    `INSERT INTO tenantry.api_keys (tenant_id, name, environment, display_prefix, hash, scopes, created_by)
     SELECT id, 'bulk', 'live', 'tnt_live_' || substr(md5(id::text), 1, 12), decode(md5(id::text) || md5(slug), 'hex'),
            '{items:read}', 'bench'
       FROM tenantry.tenants WHERE slug LIKE 'cp-%'`,
  );
  await t.adminPool.query(
    `INSERT INTO tenantry.tenant_metrics (tenant_id, taken_at, tier, table_rows, storage_bytes, storage_exact, users,
                                          transactions_24h, requests_24h)
     SELECT id, now() - make_interval(hours => h, mins => abs(hashtext(slug)) % 60), tier, '{"items": 10}',
            8192 + abs(hashtext(slug)) % 100000 + h, false, 0, 0, 0
       FROM tenantry.tenants, generate_series(0, $1::int - 1) h WHERE slug LIKE 'cp-%'`,
    [SNAPSHOTS],
  );
  // A tenth of the tenants, 6 minutes each spread over the last 24 h.
  await t.adminPool.query(
    `INSERT INTO tenantry.tenant_usage_minutes (minute, tenant_id, requests, transactions, statements, db_time_ms)
     SELECT date_trunc('minute', now() - make_interval(mins => (abs(hashtext(t.slug)) + k * 233) % 1440)), t.id,
            10 + k, 10 + k, 20 + k, 3.5 * k
       FROM (SELECT id, slug FROM tenantry.tenants WHERE hashtext(slug) % 10 = 0) t, generate_series(1, 6) k
     ON CONFLICT DO NOTHING`,
  );
  await t.adminPool.query('VACUUM ANALYZE tenantry.tenants, tenantry.api_keys, tenantry.targets, tenantry.migrations');
  await t.adminPool.query('VACUUM ANALYZE tenantry.tenant_metrics, tenantry.tenant_usage_minutes');
  // This process's counters for the same tenth: the tenants `/metrics` ranks.
  const { rows } = await t.adminPool.query<{ id: string; tier: 'pool' | 'schema'; plan: string }>(
    `SELECT id, tier, plan FROM tenantry.tenants WHERE hashtext(slug) % 10 = 0`,
  );
  const meter = t.usage.meter;
  if (!meter) throw new Error('usage accounting is off');
  rows.forEach((r, i) => {
    for (let k = 0; k <= i % 7; k++) {
      meter.recordRequest(r, { status: 200, bytesIn: 0, bytesOut: 100, apiKey: true });
    }
  });
}

async function install(label: string, variant: Variant, n: number): Promise<Installation> {
  const db = await createBenchDatabase(benchDatabaseUrl());
  try {
    return await installIn(db, label, variant, n);
  } catch (error) {
    await db.drop();
    throw error;
  }
}

async function installIn(db: BenchDatabase, label: string, variant: Variant, n: number): Promise<Installation> {
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: benchMigrations,
    // Counters stay in memory during the run: a flush would land in some repetitions only.
    usage: { flushMs: 3_600_000 },
  });
  try {
    return await fill(db, tenantry, label, variant, n);
  } catch (error) {
    await tenantry.close();
    throw error;
  }
}

async function fill(
  db: BenchDatabase,
  tenantry: Tenantry,
  label: string,
  variant: Variant,
  n: number,
): Promise<Installation> {
  const t0 = performance.now();
  await tenantry.setup();
  await tenantry.migrate();
  if (variant === 'pool') {
    await fillPool(tenantry, n);
  } else {
    const template = await tenantry.tenants.create({ slug: 'template', name: 'Template', tier: 'schema' });
    await fillSchema(tenantry, n, template.schemaName as string);
  }
  await fillCommon(tenantry);
  await tenantry.usage.meter?.flush(); // the first flush writes every counted tenant: not timed
  log(`${label}: ${n.toLocaleString('en')} ${variant}-tier tenants and their rows in ${since(t0)} (${db.name})`);

  const owner = await tenantry.tenants.get(`cp-${Math.ceil(n / 2)}`);
  const { key } = await tenantry.apiKeys.create(owner.id, {
    name: 'bench',
    environment: 'live',
    scopes: ['items:read'],
  });
  const coldKeys = new ApiKeyStore(tenantry.adminPool, new KeyRing(db.secret).key('api-key-hash'), { cacheTtlMs: 0 });
  const cache = new TenantCache(tenantry.tenants, { ttlMs: 3_600_000 });
  const picks = Array.from({ length: 200 }, (_, i) => 1 + Math.floor(((i + 0.5) / 200) * n));
  const slugs = picks.map((i) => `cp-${i}`);
  const { rows } = await tenantry.adminPool.query<{ id: string }>(
    'SELECT id FROM tenantry.tenants WHERE slug = ANY($1) ORDER BY slug',
    [slugs],
  );
  const ids = rows.map((r) => r.id);
  // The middle page: walk there up to 500 at a time, as a client would.
  let middleCursor: string | undefined;
  const step = Math.min(500, Math.floor(n / 2));
  for (let seen = 0; seen < Math.floor(n / 2); seen += step) {
    const page = await tenantry.tenants.list({ limit: step, ...(middleCursor ? { cursor: middleCursor } : {}) });
    middleCursor = page.nextCursor;
  }
  if (!middleCursor) throw new Error('no middle cursor');
  const { app, base } = await newServer(tenantry);
  return { label, tenants: n, db, tenantry, cache, coldKeys, key, slugs, ids, middleCursor, app, base };
}

interface Operation {
  readonly name: string;
  /** Untimed, before each run. */
  prepare?(inst: Installation): Promise<void>;
  /** Runs once; returns a size in bytes when the operation has one. */
  run(inst: Installation, i: number): Promise<number | undefined>;
  /** Repetitions (default: --reps). */
  readonly reps?: number;
}

const scrape = async (base: string): Promise<number> => {
  const response = await fetch(`${base}/metrics`);
  const body = await response.text();
  if (response.status !== 200) throw new Error(`/metrics: ${response.status}`);
  return Buffer.byteLength(body);
};

/**
 * Waits until no other statement runs in the installation's database: the background
 * readings a previous server's scrape started would otherwise be measured with the next.
 */
async function quiet(x: Installation): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await x.tenantry.adminPool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()`,
    );
    if (rows[0]?.n === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const OPERATIONS: readonly Operation[] = [
  {
    name: 'tenants.list, first page (50)',
    run: async (x) => void (await x.tenantry.tenants.list({ limit: 50 })),
  },
  {
    name: 'tenants.list, middle page by cursor',
    run: async (x) => void (await x.tenantry.tenants.list({ limit: 50, cursor: x.middleCursor })),
  },
  {
    // 5 a page: the small installation has 10 suspended tenants, the page is full in both.
    name: 'tenants.list, status=suspended (5)',
    run: async (x) => void (await x.tenantry.tenants.list({ limit: 5, status: 'suspended' })),
  },
  {
    name: 'tenants.get by slug (cold)',
    run: async (x, i) => void (await x.tenantry.tenants.get(x.slugs[i % x.slugs.length] as string)),
  },
  {
    name: 'tenants.get by id (cold)',
    run: async (x, i) => void (await x.tenantry.tenants.get(x.ids[i % x.ids.length] as string)),
  },
  {
    name: 'tenant cache by slug (warm)',
    run: async (x, i) => void (await x.cache.get(x.slugs[i % 3] as string)),
  },
  {
    name: 'API key verify (cold, cache off)',
    run: async (x) => {
      if (!(await x.coldKeys.verify(x.key))) throw new Error('key refused');
      return undefined;
    },
  },
  {
    name: 'API key verify (warm)',
    run: async (x) => {
      if (!(await x.tenantry.apiKeys.verify(x.key))) throw new Error('key refused');
      return undefined;
    },
  },
  { name: 'planFleet (migrate --plan)', run: async (x) => void (await x.tenantry.planFleet()) },
  {
    name: 'usage.top 15m (tenants top)',
    run: async (x) => void (await x.tenantry.usage.top({ by: 'time', window: '15m', limit: 10 })),
  },
  {
    name: 'usage.top 24h',
    run: async (x) => void (await x.tenantry.usage.top({ by: 'requests', window: '24h', limit: 10 })),
  },
  {
    name: 'usage.storageByTier (a storage reading)',
    run: async (x) => void (await x.tenantry.usage.storageByTier()),
  },
  { name: 'GET /metrics (steady)', run: (x) => scrape(x.base) },
  {
    name: 'GET /metrics (first scrape, new server)',
    reps: 6,
    // A new server, not timed: its readings are not cached yet.
    prepare: async (x) => {
      await x.app.close();
      await quiet(x);
      Object.assign(x, await newServer(x.tenantry));
    },
    run: (x) => scrape(x.base),
  },
];

async function measure(
  small: Installation,
  big: Installation,
  reps: number,
): Promise<{ rows: string[][]; flat: boolean }> {
  const rows: string[][] = [];
  let flat = true;
  for (const op of OPERATIONS) {
    const n = op.reps ?? reps;
    const times = new Map<Installation, number[]>([
      [small, []],
      [big, []],
    ]);
    const sizes = new Map<Installation, number>();
    for (let i = -3; i < n; i++) {
      // Alternating which goes first; the first three are warm-up.
      for (const inst of i % 2 === 0 ? [small, big] : [big, small]) {
        await op.prepare?.(inst);
        const t0 = performance.now();
        const size = await op.run(inst, i + 3);
        if (i >= 0) times.get(inst)?.push(performance.now() - t0);
        if (size !== undefined) sizes.set(inst, size);
      }
    }
    const ms = (inst: Installation) => median(times.get(inst) ?? []);
    const p95 = (inst: Installation) =>
      quantile(
        [...(times.get(inst) ?? [])].sort((a, b) => a - b),
        0.95,
      );
    const ratio = ms(big) / ms(small);
    const met = ratio <= TARGET;
    flat &&= met;
    const size = (inst: Installation) => (sizes.has(inst) ? ` (${sizes.get(inst)} B)` : '');
    const row = [
      op.name,
      `${fixed(ms(small), 2)}${size(small)}`,
      fixed(p95(small), 2),
      `${fixed(ms(big), 2)}${size(big)}`,
      fixed(p95(big), 2),
      fixed(ratio, 2),
      met ? 'met' : 'MISSED',
    ];
    rows.push(row);
    log(`  ${row.join(' | ')}`);
  }
  return { rows, flat };
}

export async function main(argv: readonly string[]): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const installed: Installation[] = [];
  const cleanup = async () => {
    for (const inst of installed.splice(0)) {
      await inst.app.close().catch(() => {});
      await inst.coldKeys.close().catch(() => {});
      await inst.tenantry.close().catch(() => {});
      if (options.keep) log(`kept database ${inst.db.name}`);
      else await inst.db.drop();
    }
  };
  try {
    let allFlat = true;
    for (const variant of options.variants) {
      const bigN = variant === 'pool' ? options.tenants : options.schemaTenants;
      const small = await install(`small (${variant})`, variant, options.small);
      installed.push(small);
      const big = await install(`big (${variant})`, variant, bigN);
      installed.push(big);
      const { rows: v } = await small.tenantry.adminPool.query<{ v: string }>(
        "SELECT current_setting('server_version') AS v",
      );
      const machine = await describeMachine(v[0]?.v ?? 'unknown');
      log('');
      log(
        `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, node ${machine.node}, PostgreSQL ${machine.postgres}; load ${machine.loadAverage.join(' ')}`,
      );
      log(
        `${variant} tier: ${options.small.toLocaleString('en')} against ${bigN.toLocaleString('en')} tenants, ${options.reps} repetitions per operation (ms)`,
      );
      const { rows, flat } = await measure(small, big, options.reps);
      allFlat &&= flat;
      log('');
      log(
        markdownTable(
          [
            'operation',
            `${options.small.toLocaleString('en')} median`,
            'p95',
            `${bigN.toLocaleString('en')} median`,
            'p95',
            'ratio',
            `target ≤ ${TARGET}`,
          ],
          rows,
        ),
      );
      log(`load after: ${(await describeMachine(machine.postgres)).loadAverage.join(' ')}`);
      log('');
      await cleanup();
    }
    log(allFlat ? 'every operation flat (≤ 1.2×)' : 'at least one operation is NOT flat');
    return 0;
  } finally {
    await cleanup();
  }
}
