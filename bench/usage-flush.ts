/**
 * What the running window totals of `usage.top` (migration 0026) cost the usage flush: one
 * `UsageMeter.flush()` of N counted tenants (one request each since the last flush), with
 * the totals' triggers on `tenant_usage_minutes` enabled, against the same flush with them
 * disabled (the flush as it was before the totals), alternating repetition by repetition in
 * one database. Most flushes of a minute update the tenants' minute rows, the first inserts
 * them: both happen in both columns.
 *
 *   npm run bench -- usage-flush [--tenants 1000,10000] [--reps 20] [--keep]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the database is dropped at the end unless `--keep`.
 */
import { parseArgs } from 'node:util';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { benchMigrations } from './lib/dataset.ts';
import { fixed, log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median, quantile } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

const TRIGGERS = [
  'tenant_usage_minutes_windows_insert',
  'tenant_usage_minutes_windows_update',
  'tenant_usage_minutes_windows_delete',
];

export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { tenants: { type: 'string' }, reps: { type: 'string' }, keep: { type: 'boolean', default: false } },
  });
  const sizes = (values.tenants ?? '1000,10000').split(',').map((v) => positive(v, 0, '--tenants', true));
  const reps = positive(values.reps, 20, '--reps', true);
  const db = await createBenchDatabase(benchDatabaseUrl());
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: benchMigrations,
    usage: { flushMs: 3_600_000 },
  });
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const largest = Math.max(...sizes);
    await tenantry.adminPool.query(
      `INSERT INTO tenantry.tenants (slug, name, tier, placement_id, plan)
       SELECT 'f-' || i, 'Tenant ' || i, 'pool', (SELECT id FROM tenantry.placements WHERE name = 'shared'), 'pro'
         FROM generate_series(1, $1::int) i`,
      [largest],
    );
    const { rows: all } = await tenantry.adminPool.query<{ id: string; tier: 'pool'; plan: string }>(
      `SELECT id, tier, plan FROM tenantry.tenants WHERE slug LIKE 'f-%' ORDER BY slug`,
    );
    const meter = tenantry.usage.meter;
    if (!meter) throw new Error('usage accounting is off');
    const triggers = async (on: boolean) => {
      for (const t of TRIGGERS) {
        await tenantry.adminPool.query(
          `ALTER TABLE tenantry.tenant_usage_minutes ${on ? 'ENABLE' : 'DISABLE'} TRIGGER ${t}`,
        );
      }
    };
    const { rows: v } = await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    const machine = await describeMachine(v[0]?.v ?? 'unknown');
    log(
      `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, node ${machine.node}, PostgreSQL ${machine.postgres}; load ${machine.loadAverage.join(' ')}`,
    );
    const table: string[][] = [];
    for (const n of sizes) {
      const counted = all.slice(0, n);
      const times = { totals: [] as number[], baseline: [] as number[] };
      for (let i = -2; i < reps; i++) {
        for (const side of i % 2 === 0 ? (['totals', 'baseline'] as const) : (['baseline', 'totals'] as const)) {
          await triggers(side === 'totals');
          for (const r of counted) meter.recordRequest(r, { status: 200, bytesIn: 10, bytesOut: 100, apiKey: true });
          const t0 = performance.now();
          await meter.flush();
          if (i >= 0) times[side].push(performance.now() - t0);
        }
      }
      await triggers(true);
      const row = [
        `flush of ${n.toLocaleString('en')} tenants`,
        fixed(median(times.baseline), 1),
        fixed(
          quantile(
            [...times.baseline].sort((a, b) => a - b),
            0.95,
          ),
          1,
        ),
        fixed(median(times.totals), 1),
        fixed(
          quantile(
            [...times.totals].sort((a, b) => a - b),
            0.95,
          ),
          1,
        ),
        fixed(median(times.totals) / median(times.baseline), 2),
      ];
      table.push(row);
      log(`  ${row.join(' | ')}`);
    }
    log('');
    log(markdownTable(['operation', 'without totals median (ms)', 'p95', 'with totals median', 'p95', 'ratio'], table));
    log(`load after: ${(await describeMachine(machine.postgres)).loadAverage.join(' ')}`);
    return 0;
  } finally {
    await tenantry.close();
    if (values.keep) log(`kept database ${db.name}`);
    else await db.drop();
  }
}
