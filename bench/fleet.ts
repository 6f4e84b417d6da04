/**
 * Fleet migrations: one `ALTER TABLE … ADD COLUMN` + `CREATE INDEX` rolled out to N
 * schema-tier tenants by Tenantry's fleet runner (`migrateFleet`: planned from the control
 * plane, `--concurrency` targets at once, each in its own transaction with its lock, its
 * ledger rows and its progress record), against the loop one would write by hand: one
 * connection, per schema one round trip of
 * `BEGIN; SET LOCAL search_path; ALTER TABLE; CREATE INDEX; COMMIT`, no bookkeeping.
 *
 * Same run, alternating: the N schemas are split into two interleaved halves A and B
 * (every other schema by target id). Round 1 rolls out column 1, the fleet on A and the
 * loop on B; round 2 rolls out column 2, the loop on A and the fleet on B (each side goes
 * first once). The half a side does not migrate is kept out of the fleet's plan by
 * recording it at head beforehand, and the loop's ledger rows are written after it, outside
 * the timing. Then a no-op run over all N tenants (everything at head), and one over
 * `--plan-targets` targets (rows added at head in the control plane): target ≤ 0.1 s.
 *
 * With a list of concurrencies (`--concurrency 1,2,4,8,16`) each gets its two rounds (and
 * its own column), in that order, and the table at the end gives loop/fleet per
 * concurrency.
 *
 *   npm run bench -- fleet [--tenants 10000] [--concurrency 4 | 1,2,4,8,16] [--plan-targets 100000] [--keep]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the benchmark works in a database of its own and drops it at the end. Provisioning the
 * tenants is slow (minutes for 10,000) and not what is measured here.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type TenantMigration, Tenantry } from '../packages/tenantry/src/index.ts';
import { quoteIdent } from '../packages/tenantry/src/sql.ts';
import { benchDatabaseUrl } from './lib/argv.ts';
import { createBenchDatabase, withDatabase } from './lib/database.ts';
import { type BenchDB, benchMigrations } from './lib/dataset.ts';
import { log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

const USAGE =
  'usage: npm run bench -- fleet [--tenants 10000] [--concurrency 4 | 1,2,4,8,16] [--plan-targets 100000] [--keep]\n';

interface Options {
  readonly databaseUrl: string;
  readonly tenants: number;
  /** Fleet concurrencies to measure, each in two alternating rounds against the loop. */
  readonly concurrency: readonly number[];
  readonly keep: boolean;
  /** Targets the last no-op plan is timed over (rows beyond --tenants are added at head). */
  readonly planTargets: number;
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      tenants: { type: 'string' },
      concurrency: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'plan-targets': { type: 'string' },
    },
  });
  const int = (value: string | undefined, fallback: number, name: string, min: number) => {
    const n = value === undefined ? fallback : Number(value);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`);
    return n;
  };
  return Object.freeze({
    databaseUrl: benchDatabaseUrl(),
    tenants: int(values.tenants, 10_000, 'tenants', 2),
    concurrency: (values.concurrency ?? '4').split(',').map((c) => int(c, 4, 'concurrency', 1)),
    keep: values.keep === true,
    planTargets: int(values['plan-targets'], 100_000, 'plan-targets', 0),
  });
}

/** Migration `n` of the benchmark: a nullable column (no table rewrite) and an index on it. */
function columnMigration(n: number): TenantMigration {
  return {
    id: `bench_fleet_${n}`,
    up: (m) => m.query(columnSql(n)),
  };
}
const columnSql = (n: number) =>
  `ALTER TABLE items ADD COLUMN note_${n} text; CREATE INDEX ON items (tenant_id, note_${n})`;

interface Half {
  readonly ids: readonly string[];
  readonly schemas: readonly string[];
}

/** The hand-written loop: one connection, one round trip per schema. */
async function baselineLoop(url: string, half: Half, n: number): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const t0 = performance.now();
    for (const schema of half.schemas) {
      await client.query(`BEGIN; SET LOCAL search_path = ${quoteIdent(schema)}; ${columnSql(n)}; COMMIT`);
    }
    return performance.now() - t0;
  } finally {
    await client.end();
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const db = await createBenchDatabase(options.databaseUrl);
  const url = (app: string) => withDatabase(options.databaseUrl, db.name, app);
  const connect = (migrations: readonly TenantMigration[]) =>
    Tenantry.connect<BenchDB>({
      databaseUrl: url('tenantry_bench_fleet'),
      secret: db.secret,
      roles: db.roles,
      migrations,
    });
  const admin = new pg.Pool({ connectionString: url('tenantry_bench_admin'), max: 2 });
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await admin.end().catch(() => {});
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
    const version = (await admin.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v ?? 'unknown';
    const machine = await describeMachine(version);
    log(`Tenantry fleet-migration benchmark — database ${db.name}`);
    log(
      `machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, ${machine.kernel}, load ${machine.loadAverage.join(' ')}`,
    );
    log(`node ${machine.node}; ${machine.postgres}`);
    log(`tenants ${options.tenants} (schema tier), fleet concurrency ${options.concurrency.join(', ')}`);

    // Provisioning, through the public API (context only: measured by bench/tiers.ts).
    let t0 = performance.now();
    const base = await connect(benchMigrations);
    try {
      await base.setup();
      await base.migrate();
      let next = 0;
      let shown = 0;
      const worker = async () => {
        for (let i = next++; i < options.tenants; i = next++) {
          await base.tenants.create({
            slug: `fleet-${String(i).padStart(6, '0')}`,
            name: `Fleet ${i}`,
            tier: 'schema',
          });
          if (next - shown >= options.tenants / 10) {
            shown = next;
            log(`  provisioned ${Math.min(next, options.tenants)} (${seconds(performance.now() - t0)})`);
          }
        }
      };
      await Promise.all(Array.from({ length: 4 }, worker));
    } finally {
      await base.close();
    }
    log(`provisioned ${options.tenants} schema-tier tenants in ${seconds(performance.now() - t0)}`);

    const { rows } = await admin.query<{ id: string; schema_name: string }>(
      "SELECT id, schema_name FROM tenantry.targets WHERE kind = 'schema' ORDER BY id",
    );
    const split = (parity: number): Half => {
      const mine = rows.filter((_, i) => i % 2 === parity);
      return { ids: mine.map((r) => r.id), schemas: mine.map((r) => r.schema_name) };
    };
    const halves = { A: split(0), B: split(1) };
    log(`halves: A ${halves.A.ids.length} schemas, B ${halves.B.ids.length} (interleaved by target id)`);

    const results: { round: number; concurrency: number; fleet: number; loop: number; n: number }[] = [];
    const rounds = options.concurrency.flatMap((c, i) => [
      [2 * i + 1, c, 'A', 'B'] as const,
      [2 * i + 2, c, 'B', 'A'] as const,
    ]);
    for (const [round, concurrency, fleetHalf, loopHalf] of rounds) {
      const migrations = [...benchMigrations, ...Array.from({ length: round }, (_, k) => columnMigration(k + 1))];
      const head = migrations.length;
      const last = migrations.at(-1)?.id as string;
      const tenantry = await connect(migrations);
      try {
        await tenantry.migrate(); // the shared tables: not part of the comparison
        // The loop's half is recorded at head up front, so the fleet's plan leaves it alone.
        await admin.query('UPDATE tenantry.targets SET applied_count = $2, version = $3 WHERE id = ANY($1)', [
          halves[loopHalf].ids,
          head,
          last,
        ]);
        const plan = await tenantry.planFleet();
        if (plan.targets.length !== halves[fleetHalf].ids.length) {
          throw new Error(`the plan has ${plan.targets.length} targets, expected ${halves[fleetHalf].ids.length}`);
        }
        const runFleet = async () => {
          const t = performance.now();
          const report = await tenantry.migrateFleet({ concurrency });
          if (report.failed.length > 0 || report.migrated !== halves[fleetHalf].ids.length) {
            throw new Error(`fleet run failed: ${JSON.stringify(report).slice(0, 500)}`);
          }
          return performance.now() - t;
        };
        const runLoop = () => baselineLoop(url('tenantry_bench_loop'), halves[loopHalf], round);
        // Each side goes first once per concurrency.
        let fleet: number;
        let loop: number;
        if (round % 2 === 1) {
          fleet = await runFleet();
          loop = await runLoop();
        } else {
          loop = await runLoop();
          fleet = await runFleet();
        }
        await admin.query(
          "INSERT INTO tenantry.migrations (chain, target, id) SELECT 'tenant', unnest($1::text[]), $2",
          [halves[loopHalf].ids, last],
        );
        results.push({ round, concurrency, fleet, loop, n: halves[fleetHalf].ids.length });
        log(
          `round ${round}: fleet (${concurrency} at a time) on ${fleetHalf}: ${seconds(fleet)} (${(
            halves[fleetHalf].ids.length / (fleet / 1000)
          ).toFixed(0)} schemas/s); sequential loop on ${loopHalf}: ${seconds(loop)} (${(
            halves[loopHalf].ids.length / (loop / 1000)
          ).toFixed(0)} schemas/s); loop/fleet ${(loop / fleet).toFixed(2)}× (load ${loadavg()[0]?.toFixed(2)})`,
        );
      } finally {
        await tenantry.close();
      }
    }
    for (const concurrency of options.concurrency) {
      const mine = results.filter((r) => r.concurrency === concurrency);
      const fleetTotal = mine.reduce((s, r) => s + r.fleet, 0);
      const loopTotal = mine.reduce((s, r) => s + r.loop, 0);
      log(
        `concurrency ${String(concurrency).padStart(2)}: over ${options.tenants} schema migrations per side, fleet ${seconds(fleetTotal)} (${(
          options.tenants / (fleetTotal / 1000)
        ).toFixed(
          0,
        )}/s), loop ${seconds(loopTotal)} (${(options.tenants / (loopTotal / 1000)).toFixed(0)}/s); loop/fleet ${(loopTotal / fleetTotal).toFixed(2)}× (>1: the fleet is faster)`,
      );
    }

    // Everything is at head: the plan is one indexed query, whatever N.
    const { rows: check } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tenantry.targets t
        WHERE t.kind = 'schema'
          AND (SELECT count(*) FROM pg_attribute a
                WHERE a.attrelid = to_regclass(format('%I.items', t.schema_name))
                  AND a.attname = ANY($1)) = $2`,
      [rounds.map(([r]) => `note_${r}`), rounds.length],
    );
    if (check[0]?.n !== options.tenants) throw new Error(`only ${check[0]?.n} schemas have every column`);
    const tenantry = await connect([...benchMigrations, ...rounds.map(([r]) => columnMigration(r))]);
    try {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        t0 = performance.now();
        const report = await tenantry.migrateFleet();
        times.push(performance.now() - t0);
        if (report.total !== 0) throw new Error(`no-op run found ${report.total} targets behind`);
      }
      times.sort((a, b) => a - b);
      log(
        `no-op run over ${options.tenants} tenants (all at head), 5 runs: median ${seconds(times[2] as number)}, max ${seconds(times[4] as number)} (target ≤ 0.1 s)`,
      );
      if (options.planTargets > options.tenants) {
        // The plan reads the control plane alone, so its cost at a size too large to
        // provision here is measured on target rows added directly, at head like the rest.
        const extra = options.planTargets - options.tenants;
        const head = benchMigrations.length + rounds.length;
        await admin.query(
          `INSERT INTO tenantry.targets (id, kind, placement_id, schema_name, state, applied_count, version)
           SELECT 'schema/schemas/x_' || g, 'schema', p.id, 'x_' || g, 'active', $2, $3
             FROM generate_series(1, $1) g, tenantry.placements p WHERE p.name = 'schemas'`,
          [extra, head, `bench_fleet_${rounds.length}`],
        );
        await admin.query('ANALYZE tenantry.targets');
        const big: number[] = [];
        for (let i = 0; i < 5; i++) {
          t0 = performance.now();
          const report = await tenantry.migrateFleet();
          big.push(performance.now() - t0);
          if (report.total !== 0) throw new Error(`no-op run found ${report.total} targets behind`);
        }
        big.sort((a, b) => a - b);
        log(
          `no-op run over ${options.planTargets} targets (${extra} added as rows at head), 5 runs: median ${seconds(big[2] as number)}, max ${seconds(big[4] as number)} (target ≤ 0.1 s)`,
        );
        await admin.query("DELETE FROM tenantry.targets WHERE id LIKE 'schema/schemas/x\\_%'");
      }
    } finally {
      await tenantry.close();
    }
    return 0;
  } finally {
    await cleanup();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
