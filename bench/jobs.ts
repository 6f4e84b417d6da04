/**
 * Background jobs: fairness and cost. A burst of `--burst` jobs (default 20,000) from one
 * tenant, then a steady trickle of `--trickle` jobs (default 500) spread over 50 quiet
 * tenants at `--rate` jobs/s, run by the same number of workers (`--workers`, default 4)
 * with Tenantry's fair scheduler and with the same queue in FIFO order; same run,
 * alternating rounds (`--rounds`, default 2 per side). Each job runs its tenant
 * transaction with one statement and `--work-ms` (default 1) of simulated I/O.
 *
 * Prints per side: the quiet tenants' wait (start − enqueue) p50/p95, the loud tenant's,
 * total throughput (all jobs / time to run them all) and the ratios fair/FIFO. Then the
 * tenant transaction's cost per job: the same claim/complete cycle with the statement in
 * a verified tenant transaction against the same on the admin connection without one.
 *
 *   node bench/jobs.ts [--burst 20000] [--trickle 500] [--rate 100] [--workers 4] [--rounds 2] [--work-ms 1] [--quick]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser.
 * The benchmark works in a database of its own and removes it.
 */
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { type TenantRecord, Tenantry } from '../packages/tenantry/src/index.ts';
import { COMPLETE_SQL, FAIR_CLAIM_SQL } from '../packages/tenantry/src/jobs/job-claim.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { fixed, log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median, quantile } from './lib/stats.ts';

interface Options {
  burst: number;
  trickle: number;
  rate: number;
  workers: number;
  rounds: number;
  workMs: number;
  overheadJobs: number;
}

function parse(argv: readonly string[]): Options {
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  return {
    burst: positive(get('--burst'), quick ? 3000 : 20_000, '--burst', true),
    trickle: positive(get('--trickle'), quick ? 150 : 500, '--trickle', true),
    rate: positive(get('--rate'), 100, '--rate', false),
    workers: positive(get('--workers'), 4, '--workers', true),
    rounds: positive(get('--rounds'), quick ? 1 : 2, '--rounds', true),
    workMs: Number(get('--work-ms') ?? 1),
    overheadJobs: positive(get('--overhead-jobs'), quick ? 500 : 3000, '--overhead-jobs', true),
  };
}

interface RoundResult {
  quietP50: number;
  quietP95: number;
  loudP50: number;
  jobsPerSecond: number;
  seconds: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntilDone(tenantry: Tenantry<unknown>): Promise<void> {
  for (;;) {
    const { rows } = await tenantry.adminPool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM tenantry.jobs WHERE state IN ('pending', 'running')",
    );
    if (rows[0]?.n === 0) return;
    await sleep(50);
  }
}

async function round(
  tenantry: Tenantry<unknown>,
  loud: TenantRecord,
  quiet: readonly TenantRecord[],
  order: 'fair' | 'fifo',
  o: Options,
): Promise<RoundResult> {
  const admin = tenantry.adminPool;
  await admin.query('TRUNCATE tenantry.jobs');
  await admin.query('UPDATE tenantry.job_queues SET running = 0, vtime = 0');
  await admin.query(
    `SELECT tenantry.job_insert($1, 'bench.work', '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL) FROM generate_series(1, $2)`,
    [loud.id, o.burst],
  );
  await admin.query('VACUUM ANALYZE tenantry.jobs');
  const worker = tenantry.jobs.worker({
    concurrency: o.workers,
    order,
    pollIntervalMs: 100,
    defaultConcurrency: o.workers,
  });
  const t0 = performance.now();
  await worker.start();
  // The trickle: one quiet tenant after the other, at a steady rate.
  const gapMs = 1000 / o.rate;
  for (let i = 0; i < o.trickle; i++) {
    const due = t0 + i * gapMs;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    await tenantry.jobs.enqueue(quiet[i % quiet.length] as TenantRecord, 'bench.work', { i });
  }
  await waitUntilDone(tenantry);
  const seconds = (performance.now() - t0) / 1000;
  await worker.close();
  const { rows } = await admin.query<{ loud: boolean; wait: number }>(
    `SELECT tenant_id = $1 AS loud, extract(epoch FROM started_at - created_at)::float8 AS wait
       FROM tenantry.jobs WHERE state = 'completed'`,
    [loud.id],
  );
  const quietWaits = rows
    .filter((r) => !r.loud)
    .map((r) => r.wait)
    .sort((a, b) => a - b);
  const loudWaits = rows
    .filter((r) => r.loud)
    .map((r) => r.wait)
    .sort((a, b) => a - b);
  return {
    quietP50: median(quietWaits),
    quietP95: quantile(quietWaits, 0.95),
    loudP50: median(loudWaits),
    jobsPerSecond: rows.length / seconds,
    seconds,
  };
}

/** Per-job cost of the tenant transaction: claim, one statement, complete — with and without it. */
async function overhead(tenantry: Tenantry<unknown>, tenant: TenantRecord, n: number) {
  const admin = tenantry.adminPool;
  const fill = async () => {
    await admin.query('TRUNCATE tenantry.jobs');
    await admin.query('UPDATE tenantry.job_queues SET running = 0, vtime = 0');
    await admin.query(
      `SELECT tenantry.job_insert($1, 'bench.noop', '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL) FROM generate_series(1, $2)`,
      [tenant.id, n],
    );
  };
  const results: { side: string; perJobUs: number }[] = [];
  for (const side of ['tenant transaction', 'no tenant transaction', 'tenant transaction', 'no tenant transaction']) {
    await fill();
    const t0 = performance.now();
    if (side === 'tenant transaction') {
      await tenantry.jobs.worker({ concurrency: 1 }).drain();
    } else {
      for (;;) {
        const { rows } = await admin.query<{ id: string; lease_id: string }>(FAIR_CLAIM_SQL, [
          'bench',
          ['bench.noop'],
          30_000,
        ]);
        const row = rows[0];
        if (!row) break;
        await admin.query('SELECT count(*) FROM items WHERE tenant_id = $1', [tenant.id]);
        await admin.query(COMPLETE_SQL, [row.id, row.lease_id]);
      }
    }
    results.push({ side, perJobUs: ((performance.now() - t0) * 1000) / n });
  }
  const avg = (side: string) => {
    const xs = results.filter((r) => r.side === side).map((r) => r.perJobUs);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  return { withTx: avg('tenant transaction'), without: avg('no tenant transaction') };
}

export async function main(argv: readonly string[]): Promise<number> {
  const o = parse(argv);
  const db = await createBenchDatabase(benchDatabaseUrl());
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    pool: { max: o.workers * 2 + 4 },
  });
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const pg = (await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]
      ?.v;
    log(`machine: ${JSON.stringify(await describeMachine(pg ?? 'unknown'))}`);
    log(`options: ${JSON.stringify(o)}`);
    const loud = await tenantry.tenants.create({ slug: 'loud', name: 'Loud' });
    const quiet: TenantRecord[] = [];
    for (let i = 0; i < 50; i++) quiet.push(await tenantry.tenants.create({ slug: `quiet-${i}`, name: `Quiet ${i}` }));
    const workMs = o.workMs;
    tenantry.jobs.define('bench.work', {
      run: async (_p, job) => {
        await job.tx.query('SELECT 1');
        if (workMs > 0) await sleep(workMs);
      },
    });
    tenantry.jobs.define('bench.noop', {
      run: async (_p, job) => {
        await job.tx.query('SELECT count(*) FROM items');
      },
    });
    const results: Record<'fair' | 'fifo', RoundResult[]> = { fair: [], fifo: [] };
    for (let r = 0; r < o.rounds; r++) {
      for (const order of r % 2 === 0 ? (['fair', 'fifo'] as const) : (['fifo', 'fair'] as const)) {
        const result = await round(tenantry, loud, quiet, order, o);
        results[order].push(result);
        log(
          `round ${r + 1} ${order}: quiet wait p50 ${fixed(result.quietP50 * 1000, 1)} ms, p95 ${fixed(result.quietP95 * 1000, 1)} ms; loud p50 ${fixed(result.loudP50, 2)} s; ${fixed(result.jobsPerSecond, 0)} jobs/s in ${fixed(result.seconds, 1)} s`,
        );
      }
    }
    const med = (order: 'fair' | 'fifo', f: (r: RoundResult) => number) => median(results[order].map(f));
    const fairP95 = med('fair', (r) => r.quietP95);
    const fifoP95 = med('fifo', (r) => r.quietP95);
    const fairTput = med('fair', (r) => r.jobsPerSecond);
    const fifoTput = med('fifo', (r) => r.jobsPerSecond);
    log();
    log('| side | quiet p50 wait | quiet p95 wait | loud p50 wait | jobs/s |');
    log('| --- | ---: | ---: | ---: | ---: |');
    for (const order of ['fair', 'fifo'] as const) {
      log(
        `| ${order} | ${fixed(med(order, (r) => r.quietP50) * 1000, 1)} ms | ${fixed(med(order, (r) => r.quietP95) * 1000, 1)} ms | ${fixed(
          med(order, (r) => r.loudP50),
          2,
        )} s | ${fixed(
          med(order, (r) => r.jobsPerSecond),
          0,
        )} |`,
      );
    }
    log();
    log(`quiet tenants' p95 wait, FIFO / fair: ${fixed(fifoP95 / fairP95, 1)}× (target ≥ 20×)`);
    log(`throughput, fair / FIFO: ${fixed(fairTput / fifoTput, 3)} (target ≥ 0.90)`);
    const cost = await overhead(tenantry, loud, o.overheadJobs);
    log(
      `per job, one worker: ${fixed(cost.withTx, 0)} µs with its verified tenant transaction, ${fixed(cost.without, 0)} µs without (claim, one statement, complete on the admin connection): the tenant transaction costs ${fixed(cost.withTx - cost.without, 0)} µs per job (${fixed(1e6 / cost.withTx, 0)} jobs/s against ${fixed(1e6 / cost.without, 0)})`,
    );
    return 0;
  } finally {
    await tenantry.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
