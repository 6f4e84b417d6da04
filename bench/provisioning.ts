/**
 * Provisioning rates alone (the provisioning part of `bench/tiers.ts`, without its
 * throughput section, and with the warm pool as large as asked): cold schema-tier creates
 * at concurrency 1, pool-tier creates at concurrency 1 and `--concurrency`, then warm
 * claims at concurrency 1 from a pool of `--warm` warm schemas. Blocks of each kind
 * alternate (cold, pool 1, pool C, cold, …) so load from elsewhere on a shared machine hits
 * them alike; round trips per create are counted on the wire.
 *
 * With `--warm-real R` below `--warm W`, R real warm schemas are made and W − R warm rows
 * are added after them in claim order (a claim touches only `tenantry.targets`).
 *
 *   npm run bench -- provisioning [--block 100] [--blocks 3] [--concurrency 8] [--warm 10000] [--warm-real 10000]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the benchmark works in a database of its own and drops it at the end.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase, withAddress, withDatabase } from './lib/database.ts';
import { fixed, log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median } from './lib/stats.ts';
import { WireCounter } from './lib/wire-counter.ts';

const PLACEMENT = 'schemas';

export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      block: { type: 'string' },
      blocks: { type: 'string' },
      concurrency: { type: 'string' },
      warm: { type: 'string' },
      'warm-real': { type: 'string' },
    },
  });
  const block = positive(values.block, 100, '--block', true);
  const blocks = positive(values.blocks, 3, '--blocks', true);
  const concurrency = positive(values.concurrency, 8, '--concurrency', true);
  const warm = values.warm === '0' ? 0 : positive(values.warm, 10_000, '--warm', true);
  const warmReal = Math.min(warm, positive(values['warm-real'], warm, '--warm-real', true));
  if (warmReal < Math.min(warm, block * blocks))
    throw new Error('--warm-real must cover the claims (--block × --blocks)');
  const base = benchDatabaseUrl();
  const db = await createBenchDatabase(base);
  const counter = new WireCounter('127.0.0.1', Number(new URL(base).port || 5432));
  const port = await counter.listen();
  const tenantry = await Tenantry.connect({
    databaseUrl: withAddress(withDatabase(base, db.name, 'tenantry_bench_provisioning'), '127.0.0.1', port),
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    adminPoolMax: concurrency + 2,
  });
  try {
    const machine = await describeMachine(
      (await tenantry.adminPool.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v ?? '',
    );
    log(`Tenantry provisioning benchmark — database ${db.name}`);
    log(
      `machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, load ${machine.loadAverage.join(' ')}`,
    );
    log(`node ${machine.node}; ${machine.postgres}`);
    await tenantry.setup();
    await tenantry.migrate();
    let serial = 0;
    const run = async (tier: 'schema' | 'pool', conc: number) => {
      const before = counter.snapshot();
      const t0 = performance.now();
      let i = 0;
      await Promise.all(
        Array.from({ length: conc }, async () => {
          while (i < block) {
            i++;
            const n = serial++;
            await tenantry.tenants.create({ slug: `p-${n}`, name: `P ${n}`, tier });
          }
        }),
      );
      const rate = block / ((performance.now() - t0) / 1000);
      const trips = WireCounter.diff(counter.snapshot(), before, block).roundTrips;
      return { rate, trips };
    };
    const rates: Record<string, number[]> = { cold: [], pool1: [], poolC: [], claim: [] };
    const trips: Record<string, number> = {};
    const line = (name: string, r: { rate: number; trips: number }) => {
      rates[name]?.push(r.rate);
      trips[name] = r.trips;
      log(
        `  ${name.padEnd(6)} ${fixed(r.rate, 1).padStart(7)}/s  ${fixed(r.trips, 1)} round trips per create  (load ${fixed(loadavg()[0] ?? 0, 2)})`,
      );
    };
    log(
      `\n${blocks} rounds of: ${block} cold schema creates (c=1), ${block} pool creates (c=1), ${block} pool creates (c=${concurrency})`,
    );
    for (let b = 0; b < blocks; b++) {
      line('cold', await run('schema', 1));
      line('pool1', await run('pool', 1));
      line('poolC', await run('pool', concurrency));
    }
    if (warm > 0) {
      const t0 = performance.now();
      // Four fills at once, each seeing none warm and creating a quarter (not measured: the
      // warm pool is background work; what is measured is claiming from it).
      const quarters = await Promise.all(
        [0, 1, 2, 3].map(() => tenantry.provisioner.fillWarmSchemas(PLACEMENT, Math.ceil(warmReal / 4))),
      );
      const created = quarters.reduce((a, b) => a + b, 0);
      const s = (performance.now() - t0) / 1000;
      log(`\nwarm fill: ${created} schemas in ${fixed(s, 1)} s (${fixed(created / s, 1)}/s, four fills at once)`);
      if (warm > created) {
        // A claim reads and writes the control plane only (the warm index on
        // tenantry.targets), so a pool of `warm` is its rows: the rest are added as rows at
        // head, ordered after the real schemas, which the claims take first.
        await tenantry.adminPool.query(
          `INSERT INTO tenantry.targets (id, kind, placement_id, schema_name, state, applied_count, version, created_at)
           SELECT 'schema/schemas/w_' || g, 'schema', p.id, 'w_' || g, 'warm', $2, $3, now() + interval '1 day'
             FROM generate_series(1, $1) g, tenantry.placements p WHERE p.name = $4`,
          [warm - created, itemsMigrations.length, itemsMigrations.at(-1)?.id, PLACEMENT],
        );
        await tenantry.adminPool.query('ANALYZE tenantry.targets');
        log(
          `warm pool: ${created} real schemas + ${warm - created} warm rows after them = ${await tenantry.provisioner.warmCount(PLACEMENT)}`,
        );
      }
      log(
        `${blocks} rounds of: ${block} warm claims (c=1) from ~${warm} warm, ${block} pool creates (c=${concurrency})`,
      );
      for (let b = 0; b < blocks; b++) {
        line('claim', await run('schema', 1));
        line('poolC', await run('pool', concurrency));
      }
      log(`warm schemas left: ${await tenantry.provisioner.warmCount(PLACEMENT)}`);
    }
    log('\nmedians:');
    for (const [name, list] of Object.entries(rates)) {
      if (list.length > 0)
        log(
          `  ${name.padEnd(6)} ${fixed(median(list), 1)}/s over ${list.length} blocks, ${fixed(trips[name] ?? 0, 1)} round trips per create`,
        );
    }
    return 0;
  } finally {
    await tenantry.close();
    await counter.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
