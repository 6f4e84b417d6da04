/**
 * The data-lifecycle benchmark: export, import and erasure of one large pool-tier tenant,
 * against PostgreSQL's own `COPY (SELECT … WHERE tenant_id = …) TO STDOUT` of the same rows
 * (psql, its output counted by this process), alternating, with the process RSS sampled
 * every 10 ms during each export and import. See BENCHMARKS.md for the figures.
 *
 *   node bench/data.ts [--items 200000] [--rounds 2] [--keep]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser
 * (it loads the rows); the benchmark works in a database of its own and drops it at the end.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import { appMigrations } from '../test-support/fixture.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { fixed, log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { markdownTable } from './lib/table.ts';

const MB = 1024 * 1024;

/** Peak RSS growth over `fn`, sampled every 10 ms, and its duration. */
async function measured<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number; rssGrowthMb: number }> {
  global.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  const t0 = performance.now();
  try {
    const value = await fn();
    return { value, ms: performance.now() - t0, rssGrowthMb: (peak - base) / MB };
  } finally {
    clearInterval(timer);
  }
}

/** Bytes psql's `COPY … TO STDOUT` of one query writes, read by this process. */
function copyOut(url: string, query: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('psql', [url, '-X', '-q', '-c', `COPY (${query}) TO STDOUT`]);
    let bytes = 0;
    child.stdout.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(bytes) : reject(new Error(`psql exited ${code}`))));
  });
}

export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { items: { type: 'string' }, rounds: { type: 'string' }, keep: { type: 'boolean' } },
  });
  const items = positive(values.items, 200_000, '--items', true);
  const rounds = positive(values.rounds, 2, '--rounds', true);
  const db = await createBenchDatabase(benchDatabaseUrl());
  const dir = await mkdtemp(join(tmpdir(), 'tenantry-bench-data-'));
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: appMigrations,
  });
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const tenant = await tenantry.tenants.create({ slug: 'big', name: 'Big' });
    const other = await tenantry.tenants.create({ slug: 'other', name: 'Other' });
    const su = new pg.Client({ connectionString: db.url });
    await su.connect();
    for (const t of [tenant, other]) {
      const n = t === tenant ? items : Math.ceil(items / 10);
      await su.query(
        `INSERT INTO public.items (tenant_id, title, description)
         SELECT $1, 'item ' || g, repeat(md5(g::text), 6) FROM generate_series(1, $2) g`,
        [t.id, n],
      );
      await su.query(
        `INSERT INTO public.comments (tenant_id, item_id, body)
         SELECT tenant_id, id, 'comment on ' || title || ' ' || repeat('y', 80) FROM public.items WHERE tenant_id = $1`,
        [t.id],
      );
    }
    await su.query('VACUUM ANALYZE');
    const { rows: version } = await su.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    await su.end();
    const machine = await describeMachine(version[0]?.v ?? '?');
    const rows = items * 2;
    log(`tenant with ${rows} rows (${items} items, ${items} comments), ${rounds} alternating rounds`);

    const results: string[][] = [];
    const add = (what: string, ms: number, bytes: number, rss: number | undefined) => {
      results.push([
        what,
        fixed(ms / 1000, 2),
        fixed(rows / (ms / 1000), 0),
        fixed(bytes / MB / (ms / 1000), 1),
        fixed(bytes / MB, 1),
        rss === undefined ? '–' : fixed(rss, 1),
      ]);
      log(`  ${results.at(-1)?.join('  ')}`);
    };
    for (let round = 0; round < rounds; round++) {
      const copy = await measured(async () => {
        let bytes = 0;
        for (const table of ['items', 'comments']) {
          bytes += await copyOut(db.url, `SELECT * FROM public.${table} WHERE tenant_id = '${tenant.id}'`);
        }
        return bytes;
      });
      add('COPY … TO STDOUT (baseline)', copy.ms, copy.value, undefined);
      const file = join(dir, `big-${round}.tar`);
      const exported = await measured(() => tenantry.exportTenant(tenant.id, createWriteStream(file)));
      const size = (await stat(file)).size;
      add('tenantry.exportTenant', exported.ms, size, exported.rssGrowthMb);
      const imported = await measured(() => tenantry.importTenant(createReadStream(file), { slug: `copy-${round}` }));
      add('tenantry.importTenant', imported.ms, size, imported.rssGrowthMb);
      const erased = await measured(() => tenantry.eraseTenant(`copy-${round}`));
      add('tenantry.eraseTenant (verified)', erased.ms, 0, erased.rssGrowthMb);
      await rm(file);
    }
    log();
    log(markdownTable(['operation', 's', 'rows/s', 'MB/s', 'MB', 'RSS growth MB'], results));
    log();
    log(`machine: ${JSON.stringify(machine)}`);
    return 0;
  } finally {
    await tenantry.close();
    await rm(dir, { recursive: true, force: true });
    if (values.keep) log(`kept database ${db.name}`);
    else await db.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2));
