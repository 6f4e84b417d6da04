/**
 * Schema tier at many tenants: the runtime pool's tenant-affine lending against plain
 * most-recently-used lending (what the pool did before: no affinity, a connection replaced
 * after 2,000 transactions), in steady state. Both sides serve the same N schema-tier tenants
 * with the same transaction (`items.get` + `items.create`) on a random tenant no other client
 * of the side is in; each side first serves every tenant once (a running server has), then
 * the sides at 10 and at N tenants run in alternating rounds. Printed: tx/s at N over tx/s
 * at 10 per side (median of per-round ratios; the target for the schema tier is
 * ≥ 0.80 at 10,000), and the anonymous memory (RssAnon) of each side's backends.
 *
 *   node bench/schema-affinity.ts [--tenants 1000] [--clients 8] [--seconds 20] [--rounds 10]
 *                                 [--keep FILE | --reuse FILE] [--affinity-wait MS]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the benchmark works in a database of its own and drops it. Creating 10,000 tenants takes
 * about 20 minutes, so `--keep FILE` keeps the database and writes what a later run needs
 * (its name, roles, secret and tenants) to FILE, and `--reuse FILE` runs on that database
 * again without creating tenants (`--tenants` at most the number kept), and keeps it too.
 * `--affinity-wait` sets the tenant-affine side's `pool.affinityWaitMs` (default: the pool's).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type ItemsDB, items, itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { contextOf, type TenantContext, Tenantry } from '../packages/tenantry/src/index.ts';
import { quoteIdent } from '../packages/tenantry/src/sql.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { rssAnonMiB } from './lib/backend-memory.ts';
import {
  type BenchDatabase,
  createBenchDatabase,
  type SavedBenchDatabase,
  savedBenchDatabase,
  withDatabase,
} from './lib/database.ts';
import { measureSides, ServerCpu, type SideResult } from './lib/measure.ts';
import { fixed, log, since } from './lib/print.ts';
import { median } from './lib/stats.ts';
import type { Side } from './lib/workloads.ts';

const BASE = 10;

function parseOptions(argv: readonly string[]) {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      tenants: { type: 'string' },
      clients: { type: 'string' },
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      keep: { type: 'string' },
      reuse: { type: 'string' },
      'affinity-wait': { type: 'string' },
    },
  });
  if (values.keep !== undefined && values.reuse !== undefined) throw new Error('--keep and --reuse exclude each other');
  const wait = values['affinity-wait'];
  return Object.freeze({
    keep: values.keep,
    // Absent: the pool's default. 0 is allowed (no waiting).
    affinityWaitMs: wait === undefined ? undefined : wait === '0' ? 0 : positive(wait, 0, '--affinity-wait', true),
    reuse: values.reuse,
    databaseUrl: benchDatabaseUrl(),
    tenants: positive(values.tenants, 1000, '--tenants', true),
    clients: positive(values.clients, 8, '--clients', true),
    seconds: positive(values.seconds, 20, '--seconds', false),
    rounds: positive(values.rounds, 10, '--rounds', true),
  });
}

/** What `--keep` writes and `--reuse` reads: the database and its seeded tenants. */
interface Kept extends SavedBenchDatabase {
  readonly tenants: readonly { readonly context: TenantContext; readonly itemId: string }[];
}

async function backendMemory(admin: pg.Pool, db: BenchDatabase, applicationName: string): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND usename = $2`,
    [applicationName, db.roles.runtime],
  );
  return Promise.all(rows.map((r) => rssAnonMiB(r.pid)));
}

/** Runs `work` over `items` with `concurrency` workers. */
async function eachConcurrently<T>(list: readonly T[], concurrency: number, work: (item: T) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < list.length) await work(list[next++] as T);
    }),
  );
}

/** Size of the database's catalog, and how long VACUUM and ANALYZE of its tables take. */
async function catalogReport(admin: pg.Pool): Promise<void> {
  const { rows } = await admin.query<{ relations: string; bytes: string; attribute: string }>(
    `SELECT (SELECT count(*) FROM pg_class) AS relations,
            (SELECT sum(pg_total_relation_size(oid)) FROM pg_class
              WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r') AS bytes,
            pg_total_relation_size('pg_catalog.pg_attribute') AS attribute`,
  );
  const tables = (
    await admin.query<{ name: string }>(
      `SELECT oid::regclass::text AS name FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r'`,
    )
  ).rows.map((r) => r.name);
  const timed = async (command: string) => {
    const t0 = performance.now();
    for (const table of tables) await admin.query(`${command} ${table}`);
    return (performance.now() - t0) / 1000;
  };
  const vacuum = await timed('VACUUM');
  const analyze = await timed('ANALYZE');
  const r = rows[0];
  const mib = (x: string | undefined) => fixed(Number(x) / 2 ** 20, 1);
  log(
    `catalog: ${Number(r?.relations).toLocaleString('en-US')} relations in pg_class; pg_catalog tables ${mib(r?.bytes)} MiB ` +
      `(pg_attribute ${mib(r?.attribute)} MiB); VACUUM of the ${tables.length} catalog tables ${fixed(vacuum, 1)} s, ANALYZE ${fixed(analyze, 1)} s`,
  );
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const started = performance.now();
  const kept = options.reuse === undefined ? undefined : (JSON.parse(await readFile(options.reuse, 'utf8')) as Kept);
  if (kept && kept.tenants.length < options.tenants) {
    throw new Error(
      `--reuse ${options.reuse} has ${kept.tenants.length} tenants, fewer than --tenants ${options.tenants}`,
    );
  }
  const db = kept ? savedBenchDatabase(options.databaseUrl, kept) : await createBenchDatabase(options.databaseUrl);
  const admin = new pg.Pool({ connectionString: withDatabase(options.databaseUrl, db.name), max: 8 });
  const opened: Tenantry<ItemsDB>[] = [];
  try {
    const owner = await Tenantry.connect<ItemsDB>({
      databaseUrl: withDatabase(options.databaseUrl, db.name, 'affinity_setup'),
      secret: db.secret,
      roles: db.roles,
      migrations: itemsMigrations,
      adminPoolMax: 10,
    });
    opened.push(owner);
    let t0 = performance.now();
    const contexts: TenantContext[] = new Array(options.tenants);
    const ids: string[] = new Array(options.tenants);
    if (kept) {
      kept.tenants.slice(0, options.tenants).forEach((t, i) => {
        contexts[i] = t.context;
        ids[i] = t.itemId;
      });
      log(`reusing ${db.name}: ${options.tenants} of its ${kept.tenants.length} schema-tier tenants`);
    } else {
      await owner.setup();
      await owner.migrate();
      await eachConcurrently(
        Array.from({ length: options.tenants }, (_, i) => i),
        8,
        async (i) => {
          const record = await owner.tenants.create({ slug: `aff-${i}`, name: `Affinity ${i}`, tier: 'schema' });
          // Seeded as the superuser, not through runtime connections: a backend that has
          // served thousands of schemas processes every new schema's catalog invalidations
          // slowly, and seeding through them made creating 10,000 tenants about ten times
          // slower past 7,000 (one seed even hit the 30 s statement timeout).
          const { rows } = await admin.query<{ id: string }>(
            `INSERT INTO ${quoteIdent(record.schemaName as string)}.items (tenant_id, title) VALUES ($1, 'seeded') RETURNING id`,
            [record.id],
          );
          ids[i] = rows[0]?.id as string;
          contexts[i] = contextOf(record);
        },
      );
      log(`${options.tenants} schema-tier tenants created and seeded: ${since(t0)}`);
    }
    if (options.keep !== undefined) {
      const saved: Kept = {
        name: db.name,
        roles: db.roles,
        secret: db.secret,
        tenants: contexts.map((context, i) => ({ context, itemId: ids[i] as string })),
      };
      await writeFile(options.keep, JSON.stringify(saved));
      log(`kept: ${options.keep} (run again with --reuse ${options.keep}; drop the database ${db.name} when done)`);
    }

    const open = async (name: string, affinity: boolean) => {
      const t = await Tenantry.connect<ItemsDB>({
        databaseUrl: withDatabase(options.databaseUrl, db.name, name),
        secret: db.secret,
        roles: db.roles,
        migrations: itemsMigrations,
        pool: affinity
          ? {
              max: options.clients,
              idleTimeoutMs: 3_600_000,
              maxSchemasPerConnection: Math.max(1_000, options.tenants),
              ...(options.affinityWaitMs === undefined ? {} : { affinityWaitMs: options.affinityWaitMs }),
            }
          : { max: options.clients, idleTimeoutMs: 3_600_000, tenantAffinity: false, maxUses: 2_000 },
      });
      opened.push(t);
      return t;
    };
    const sides = { affine: await open('affinity_on', true), plain: await open('affinity_off', false) };
    const transaction = (t: Tenantry<ItemsDB>, i: number) =>
      t.transaction(contexts[i] as TenantContext, async (tx) => {
        if (!(await items.get(tx, ids[i] as string))) throw new Error('seeded item not found');
        await items.create(tx, { title: 'benchmark item' });
      });
    t0 = performance.now();
    for (const t of Object.values(sides)) {
      await eachConcurrently(
        Array.from({ length: options.tenants }, (_, i) => i),
        options.clients,
        (i) => transaction(t, i),
      );
    }
    log(`warm-up (every tenant once per side): ${since(t0)}`);

    const side = (name: keyof typeof sides, of: number): Side => {
      const busy = new Set<number>();
      return {
        key: `${name}@${of}`,
        label: `${name}, ${of} tenants`,
        run: async () => {
          let i = Math.floor(Math.random() * of);
          while (busy.has(i) && busy.size < of) i = Math.floor(Math.random() * of);
          busy.add(i);
          try {
            return await transaction(sides[name], i);
          } finally {
            busy.delete(i);
          }
        },
      };
    };
    const n = options.tenants;
    const load = loadavg().map((x) => x.toFixed(1));
    const results = await measureSides(
      [side('affine', BASE), side('affine', n), side('plain', BASE), side('plain', n)],
      {
        clients: options.clients,
        seconds: options.seconds,
        rounds: options.rounds,
        warmup: 0,
        cpu: new ServerCpu(admin),
      },
    );
    const [a10, an, p10, pn] = results as [SideResult, SideResult, SideResult, SideResult];
    const paired = (x: SideResult, y: SideResult) =>
      median(x.rounds.map((r, i) => r.tps / (y.rounds[i]?.tps ?? Number.NaN)));
    const memory = {
      affine: await backendMemory(admin, db, 'affinity_on'),
      plain: await backendMemory(admin, db, 'affinity_off'),
    };
    const mem = (xs: number[]) =>
      `median ${fixed(median(xs), 1)} MiB, sum ${fixed(
        xs.reduce((s, x) => s + x, 0),
        0,
      )} MiB`;
    log('');
    log(
      `schema tier, ${options.clients} clients, ${options.rounds} alternating rounds of ${fixed(options.seconds / options.rounds, 1)} s per side`,
    );
    log(
      `load average ${load.join(' / ')} at start, ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' / ')} at end`,
    );
    log(
      '| lending | tx/s at 10 | tx/s at N | N/10 (paired) | p99 ms at N | server µs/tx at 10 / N | Node µs/tx at 10 / N | backend RssAnon |',
    );
    log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    const cpu = (at10: SideResult, atN: SideResult) =>
      `${fixed(at10.pgCpuUs, 0)} / ${fixed(atN.pgCpuUs, 0)} | ${fixed(at10.nodeCpuUs, 0)} / ${fixed(atN.nodeCpuUs, 0)}`;
    log(
      `| tenant-affine | ${fixed(a10.tps, 0)} | ${fixed(an.tps, 0)} | **${fixed(paired(an, a10), 2)}** | ${fixed(an.p99, 1)} | ${cpu(a10, an)} | ${mem(memory.affine)} |`,
    );
    log(
      `| plain (before) | ${fixed(p10.tps, 0)} | ${fixed(pn.tps, 0)} | **${fixed(paired(pn, p10), 2)}** | ${fixed(pn.p99, 1)} | ${cpu(p10, pn)} | ${mem(memory.plain)} |`,
    );
    log(
      `affine/plain at N (paired): ${fixed(paired(an, pn), 2)}; N = ${n}; pool.affinityWaitMs ${options.affinityWaitMs ?? 'default'}`,
    );
    await catalogReport(admin);
    log(`total ${since(started)}`);
    return 0;
  } finally {
    for (const t of opened.reverse()) await t.close().catch(() => {});
    await admin.end();
    if (options.keep === undefined && options.reuse === undefined) await db.drop();
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
