/**
 * The core benchmark: what a tenant transaction costs against the same statement in a
 * plain transaction that bypasses row-level security. See BENCHMARKS.md for the figures.
 *
 *   node bench/core.ts [--tenants 1000] [--rows 1000000] [--seconds 10] [--clients 1,16] [--keep] [--quick]
 */
import { writeFile } from 'node:fs/promises';
import pg from 'pg';
import { type TenantContext, Tenantry, type TenantryOptions } from '../packages/tenantry/src/index.ts';
import { KeyRing } from '../packages/tenantry/src/secrets/keys.ts';
import { breakdownWorkload } from './lib/breakdown.ts';
import { type BenchDatabase, createBenchDatabase, withAddress, withDatabase } from './lib/database.ts';
import {
  type BenchDB,
  benchMigrations,
  createTenants,
  loadItems,
  relationSizes,
  sampleRows,
  vocabulary,
} from './lib/dataset.ts';
import { measureSides, ServerCpu, type SideResult } from './lib/measure.ts';
import { type CoreOptions, parseCoreOptions, USAGE } from './lib/options.ts';
import { describeScans, searchesThroughIndex } from './lib/plan.ts';
import { log, since } from './lib/print.ts';
import { describeMachine, formatBlock, formatSteps, formatSummary, formatWire, ratios, TARGET } from './lib/report.ts';
import { USAGE_TARGET, usageWorkload } from './lib/usage-workload.ts';
import { WireCounter, type WireCounts } from './lib/wire-counter.ts';
import { type SideEnv, type SideKey, type Workload, workloads } from './lib/workloads.ts';

/** The pools one phase of the benchmark runs on. */
async function openEnv(
  db: BenchDatabase,
  adminUrl: string,
  clients: number,
  viaPort?: number,
  usageSides = false,
): Promise<SideEnv> {
  const url = (app: string) => {
    const u = withDatabase(adminUrl, db.name, app);
    return viaPort ? withAddress(u, '127.0.0.1', viaPort) : u;
  };
  const baseline = new pg.Pool({ connectionString: url('tenantry_bench_a'), max: clients, idleTimeoutMillis: 0 });
  const connect = (usage?: TenantryOptions['usage']) =>
    Tenantry.connect<BenchDB>({
      databaseUrl: url('tenantry_bench_b'),
      secret: db.secret,
      roles: db.roles,
      migrations: benchMigrations,
      pool: { max: clients, idleTimeoutMs: 3_600_000 },
      ...(usage !== undefined ? { usage } : {}),
    });
  const tenantry = await connect();
  // The usage workload's other instances: accounting off, and counters plus application_name.
  const usage = usageSides ? { off: await connect(false), named: await connect({ applicationName: true }) } : undefined;
  // Open every connection now, so no measurement pays for a connect (or misses a backend's CPU).
  for (const pool of [
    baseline,
    tenantry.runtimePool,
    ...(usage ? [usage.off.runtimePool, usage.named.runtimePool] : []),
  ]) {
    const held = await Promise.all(Array.from({ length: clients }, () => pool.connect()));
    for (const client of held) client.release();
  }
  return { baseline, tenantry, contextKey: new KeyRing(db.secret).key('context-hmac'), usage };
}

async function closeEnv(env: SideEnv): Promise<void> {
  await Promise.all([env.baseline.end(), env.tenantry.close(), env.usage?.off.close(), env.usage?.named.close()]);
}

/** Protocol messages per transaction of each side, through the counting proxy, one client. */
async function countWire(
  db: BenchDatabase,
  adminUrl: string,
  list: readonly Workload[],
  n: number,
): Promise<{ workload: string; side: SideKey; counts: WireCounts }[]> {
  const target = new URL(adminUrl);
  const counter = new WireCounter(target.hostname, Number(target.port || 5432));
  const port = await counter.listen();
  const env = await openEnv(
    db,
    adminUrl,
    1,
    port,
    list.some((w) => w.key === 'usage'),
  );
  const out: { workload: string; side: SideKey; counts: WireCounts }[] = [];
  try {
    for (const workload of list) {
      for (const side of workload.sides(env)) {
        for (let i = 0; i < 3; i++) await side.run(); // connect, and Tenantry's one-time role check
        const before = counter.snapshot();
        for (let i = 0; i < n; i++) await side.run();
        out.push({ workload: workload.key, side: side.key, counts: WireCounter.diff(counter.snapshot(), before, n) });
      }
    }
  } finally {
    await closeEnv(env);
    await counter.close();
  }
  return out;
}

interface Block {
  readonly workload: string;
  readonly title: string;
  readonly clients: number;
  readonly results: SideResult[];
}

export async function main(argv: readonly string[]): Promise<number> {
  let options: CoreOptions;
  try {
    const parsed = parseCoreOptions(argv, process.env);
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
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await admin?.end().catch(() => {});
    if (options.keep) log(`kept database ${db.name} (roles ${db.roles.owner}, ${db.roles.runtime})`);
    else await db.drop();
  };
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
    log(`Tenantry core benchmark — database ${db.name}`);
    log(
      `machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, ${machine.kernel}, load ${machine.loadAverage.join(' ')}`,
    );
    log(`node ${machine.node}; ${machine.postgres}`);
    log(
      `tenants ${options.tenants}, rows ${options.rows}, clients ${options.clients.join(',')}, ${options.seconds} s per side in ${options.rounds} alternating rounds (+${options.warmup} s warm-up)`,
    );

    // Setup through the public API: roles, control plane, the items table.
    let t0 = performance.now();
    const owner = await Tenantry.connect<BenchDB>({
      databaseUrl: withDatabase(options.databaseUrl, db.name, 'tenantry_bench_setup'),
      secret: db.secret,
      roles: db.roles,
      migrations: benchMigrations,
    });
    let tenants: TenantContext[];
    try {
      await owner.setup();
      await owner.migrate();
      log(`setup + migrate: ${since(t0)}`);
      t0 = performance.now();
      tenants = await createTenants(owner, options.tenants);
      log(`${options.tenants} tenants through tenantry.tenants.create (4 at a time): ${since(t0)}`);
    } finally {
      await owner.close();
    }
    t0 = performance.now();
    const words = vocabulary();
    let shown = 0;
    await loadItems(admin, tenants, options.rows, words, (done) => {
      if (done - shown >= options.rows / 5 || done === options.rows) {
        shown = done;
        log(`  loaded ${done} rows (${since(t0)})`);
      }
    });
    const sizes = await relationSizes(admin);
    log(`load + index + VACUUM ANALYZE: ${since(t0)} — ${sizes.map((s) => `${s.name} ${s.size}`).join(', ')}`);
    const sample = await sampleRows(admin, tenants, options.rows);
    const data = { tenants, sample, words };
    const all: Record<string, Workload> = {
      ...workloads(data),
      breakdown: breakdownWorkload(data),
      usage: usageWorkload(data),
    };
    const usageSides = options.workloads.includes('usage');
    const chosen = options.workloads.map((k) => all[k] as Workload);
    const { rows: gin } = await admin.query<{ name: string }>(
      `SELECT indexname AS name FROM pg_indexes WHERE tablename = 'items' AND indexdef ILIKE '%USING gin%'`,
    );
    const ginIndex = gin[0]?.name ?? '(none)';

    // Round trips per transaction.
    log('');
    log(
      `Protocol messages per transaction (${options.countTransactions} sequential transactions per side, via a counting proxy)`,
    );
    const wire = await countWire(
      db,
      options.databaseUrl,
      chosen.filter((w) => w.key !== 'fts-leakproof'),
      options.countTransactions,
    );
    log(formatWire(wire));

    // Same parameters on every side: same rows? which plan?
    log('');
    log('Plans (EXPLAIN ANALYZE; b and b-raw as the runtime role inside a tenant transaction)');
    const checkEnv = await openEnv(db, options.databaseUrl, 2, undefined, usageSides);
    const plans: Record<string, unknown> = {};
    try {
      for (const workload of chosen) {
        await workload.before?.(admin);
        try {
          const checks = await workload.check(checkEnv);
          plans[workload.key] = checks.map((c) => ({ side: c.key, rows: c.rows, scans: c.plan?.scans }));
          log(`${workload.title}`);
          for (const c of checks) {
            log(
              `  ${c.key.padEnd(7)} ${workload.writes ? '' : `${c.rows} rows; `}${describeScans(c.plan?.scans ?? []).join(' | ')}`,
            );
            if (options.verbose && c.plan) log(c.plan.text.replace(/^/gm, '        '));
          }
          if (!workload.writes) {
            const a = checks[0];
            const same = workload.key.startsWith('fts')
              ? checks.every((c) => c.rows === a?.rows)
              : checks.every((c) => c.ids === a?.ids);
            if (!same) log('  WARNING: the sides returned different rows for the same parameters');
          }
          if (workload.key.startsWith('fts')) {
            for (const c of checks) {
              const used = searchesThroughIndex(c.plan?.scans ?? [], ginIndex);
              log(
                `  ${c.key.padEnd(7)} searches through GIN index ${ginIndex}: ${used ? 'yes' : 'NO (@@ is a filter)'}`,
              );
            }
          }
        } finally {
          await workload.after?.(admin);
        }
      }
    } finally {
      await closeEnv(checkEnv);
    }

    // The measurements.
    const cpu = new ServerCpu(admin);
    const blocks: Block[] = [];
    for (const clients of options.clients) {
      const env = await openEnv(db, options.databaseUrl, clients, undefined, usageSides);
      try {
        for (const workload of chosen) {
          if (workload.singleClient && clients !== options.clients[0]) continue;
          if (options.verbose) log(`\n${workload.title} — ${clients} clients: measuring`);
          await workload.before?.(admin);
          try {
            const results = await measureSides(
              workload.sides(env).filter((s) => !options.sides || options.sides.includes(s.key)),
              { clients, seconds: options.seconds, rounds: options.rounds, warmup: options.warmup, cpu },
              options.verbose
                ? (key, round, s) =>
                    log(
                      `    round ${round} ${key.padEnd(7)} ${s.tps.toFixed(0).padStart(6)} tx/s  p50 ${s.p50.toFixed(3)} ms`,
                    )
                : undefined,
            );
            blocks.push({ workload: workload.key, title: workload.title, clients, results });
            log('');
            log(formatBlock(workload.title, clients, results));
            if (workload.key === 'breakdown') log(formatSteps(results));
          } finally {
            await workload.after?.(admin);
          }
        }
      } finally {
        await closeEnv(env);
      }
    }

    log('');
    log(
      `Summary (medians over rounds; target: b/a latency ≤ ${TARGET.latency.toFixed(2)} and b/a throughput ≥ ${TARGET.throughput.toFixed(2)})`,
    );
    log(formatSummary(blocks));
    for (const block of blocks.filter((b) => b.workload === 'usage')) {
      for (const r of ratios(block.results)) {
        log(
          `usage accounting, ${block.clients} clients: ${r.side}/a p50 latency ${r.latency.toFixed(3)}, throughput ${r.throughput.toFixed(3)} (target: latency ≤ ${USAGE_TARGET})`,
        );
      }
    }
    const rt = wire.filter((w) => w.side === 'a' || w.side === 'b');
    log(
      `round trips per transaction: ${rt.map((w) => `${w.workload}/${w.side} ${w.counts.roundTrips.toFixed(2)}`).join(', ')}`,
    );
    log(`total time ${since(started)}`);

    if (options.json) {
      const finished = await describeMachine(version);
      await writeFile(
        options.json,
        `${JSON.stringify(
          {
            command: `node bench/core.ts ${argv.join(' ')}`.trim(),
            machine: { ...machine, loadAverageAtEnd: finished.loadAverage },
            options,
            sizes,
            wire,
            plans,
            blocks: blocks.map((b) => ({ ...b, ratios: ratios(b.results) })),
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
