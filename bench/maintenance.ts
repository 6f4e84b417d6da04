/**
 * What maintenance costs the application while it runs: a tenant write (`tenantry.query`,
 * one INSERT into the example's items) measured with no maintenance, while
 * `REINDEX TABLE CONCURRENTLY items` runs back to back (what `tenantry db reindex` does),
 * and while a plain `REINDEX TABLE items` does (what it avoids: writes wait for each
 * rebuild). Same run, alternating rounds; ratios to the side without maintenance. The
 * maintenance loop follows the side being measured, so a rebuild started at the end of one
 * side can spill a few hundred milliseconds into the next.
 *
 *   node bench/maintenance.ts [--seconds 12] [--rounds 6] [--warmup 1] [--clients 1,8] [--rows 200000] [--quick]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser.
 * The benchmark works in a database of its own and removes it.
 */
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { contextOf, Tenantry } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { measureSides, ServerCpu } from './lib/measure.ts';
import { log } from './lib/print.ts';
import { costTable } from './lib/ratio-table.ts';
import { describeMachine } from './lib/report.ts';
import { parseRoundOptions } from './lib/rounds.ts';
import type { Side } from './lib/workloads.ts';

type Mode = 'none' | 'concurrently' | 'plain';

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseRoundOptions(argv, '1,8', { rows: [200_000, 20_000] });
  const db = await createBenchDatabase(benchDatabaseUrl());
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    pool: { max: Math.max(...options.clients) },
  });
  let mode: Mode = 'none';
  let running = true;
  let rebuilds = { concurrently: 0, plain: 0 };
  // The maintenance loop: rebuilds the items indexes for as long as the side under measure wants it.
  const loop = (async () => {
    while (running) {
      const now = mode;
      if (now === 'none') {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const sql = now === 'concurrently' ? 'REINDEX TABLE CONCURRENTLY public.items' : 'REINDEX TABLE public.items';
      await tenantry.adminPool.query(sql);
      rebuilds[now]++;
    }
  })();
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const tenant = contextOf(await tenantry.tenants.create({ slug: 'bench-maint', name: 'Bench' }));
    await tenantry.adminPool.query(
      `INSERT INTO public.items (tenant_id, title) SELECT $1, 'seed ' || g FROM generate_series(1, $2) g`,
      [tenant.id, options.rows],
    );
    await tenantry.adminPool.query('VACUUM ANALYZE public.items');
    const pg = (await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]
      ?.v;
    const machine = await describeMachine(pg ?? 'unknown');
    log(`machine: ${JSON.stringify(machine)}`);
    log(`options: ${JSON.stringify(options)}`);
    let n = 0;
    const write = () =>
      tenantry.query(tenant, 'INSERT INTO items (tenant_id, title) VALUES ($1, $2)', [tenant.id, `w ${++n}`]);
    const side = (key: Mode, label: string): Side => ({
      key,
      label,
      run: () => {
        mode = key;
        return write();
      },
    });
    const sides = [
      side('none', 'insert, no maintenance'),
      side('concurrently', 'insert during REINDEX … CONCURRENTLY'),
      side('plain', 'insert during plain REINDEX (blocks writes)'),
    ];
    const cpu = new ServerCpu(tenantry.adminPool);
    for (const clients of options.clients) {
      rebuilds = { concurrently: 0, plain: 0 };
      const results = await measureSides(sides, { ...options, clients, cpu });
      mode = 'none';
      log(costTable(`${clients} client(s), ${options.rows} rows`, results, 'none'));
      log(`rebuilds: ${rebuilds.concurrently} concurrent, ${rebuilds.plain} plain`);
      log();
    }
    log(`load average at the end: ${(await describeMachine(machine.postgres)).loadAverage.join(', ')}`);
    return 0;
  } finally {
    running = false;
    mode = 'none';
    await loop.catch(() => {});
    await tenantry.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
