/**
 * `npm run fuzz:isolation -- --ops N --seed S [--concurrency C] [--exclude kind,kind]`
 *
 * Runs the isolation fuzzer (test-support/isolation-fuzzer/) on a database of its own:
 * twelve tenants on the three tiers, N random operations (library and HTTP, honest and
 * adversarial) checked against a model of who owns what, then a superuser sweep of every
 * copy of `items`. Prints progress about every 10 s, then the figures and every distinct
 * finding with the operation and seed that replay it. Exits 1 on any leak or anomaly.
 *
 * `DATABASE_URL` (a superuser: the sweep reads every copy of the tables) names the server;
 * without it an embedded PostgreSQL runs in a temporary directory. The run creates
 * `tenantry_fuzz_<random>` (and the tenant databases of its database-tier tenants) and
 * roles `tf_<random>_owner/_runtime`, and drops them at the end (or on Ctrl-C).
 *
 * Memory is bounded whatever N is (the model keeps a bounded number of items per tenant):
 * `--ops 1000000` levels off at the RSS of `--ops 200000` (~400 MB with the reference
 * server, which runs in this process).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { tenantDatabasePrefix } from '../packages/tenantry/src/control/connection-url.ts';
import { startEmbeddedPostgres } from '../packages/tenantry/src/embedded/embedded-postgres.ts';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { createServer } from '../packages/tenantry/src/http/server.ts';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import {
  formatIsolationReport,
  fuzzPlans,
  OP_KINDS,
  runIsolationFuzz,
} from '../test-support/isolation-fuzzer/index.ts';

const USAGE = `usage: npm run fuzz:isolation -- --ops N --seed S [--concurrency C] [--exclude kind,kind]

  --ops N           operations to run (default 100000)
  --seed S          0..4294967295 (default: random, printed)
  --concurrency C   operations in flight (default 16; 1 replays a run exactly)
  --exclude K,K     operation kinds to leave out
  --http-share F    share of operations sent over HTTP (default 0.1)

kinds: ${OP_KINDS.join(', ')}

DATABASE_URL       superuser connection (default: embedded PostgreSQL in a temporary directory)`;

function options() {
  const { values } = parseArgs({
    options: {
      ops: { type: 'string', default: '100000' },
      seed: { type: 'string' },
      concurrency: { type: 'string', default: '16' },
      exclude: { type: 'string', default: '' },
      'http-share': { type: 'string', default: '0.1' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name: string, value: string, min: number, max: number) => {
    const n = Number(value.replaceAll('_', ''));
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      console.error(`--${name} must be an integer from ${min} to ${max}\n\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  const share = Number(values['http-share']);
  if (!(share >= 0 && share <= 1)) {
    console.error(`--http-share must be between 0 and 1\n\n${USAGE}`);
    process.exit(2);
  }
  return {
    ops: int('ops', values.ops, 0, 1e9),
    seed: values.seed === undefined ? randomInt(0, 2 ** 32) : int('seed', values.seed, 0, 0xffffffff),
    concurrency: int('concurrency', values.concurrency, 1, 256),
    exclude: values.exclude.split(',').filter(Boolean),
    httpShare: share,
  };
}

/** The server's superuser URL: DATABASE_URL, or an embedded PostgreSQL started here. */
async function server(): Promise<{ url: string; stop(): Promise<void> }> {
  const url = process.env.DATABASE_URL;
  if (url) return { url, stop: async () => {} };
  const dir = await mkdtemp(join(tmpdir(), 'tenantry-fuzz-pg-'));
  await chmod(dir, 0o755); // the server may run as another OS user (see embedded-postgres.ts)
  console.log('DATABASE_URL is unset: starting embedded PostgreSQL');
  const embedded = await startEmbeddedPostgres({ dataDir: join(dir, 'data') });
  return {
    url: embedded.url,
    async stop() {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const withDatabase = (url: string, database: string) => {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
};

async function main(): Promise<number> {
  const o = options();
  const pgServer = await server();
  const suffix = randomBytes(4).toString('hex');
  const name = `tenantry_fuzz_${suffix}`;
  const roles = { owner: `tf_${suffix}_owner`, runtime: `tf_${suffix}_runtime` };
  const admin = new pg.Client({ connectionString: pgServer.url });
  await admin.connect();
  let tenantry: Tenantry<unknown> | undefined;
  let app: Awaited<ReturnType<typeof createServer>> | undefined;
  const drop = async () => {
    // The database-tier tenants' databases and templates carry the main database's name as prefix.
    const { rows } = await admin.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE left(datname, length($1) + 1) = $1 || $2',
      [tenantDatabasePrefix(name), '_'],
    );
    for (const { datname } of rows) {
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`);
    }
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    for (const role of [roles.runtime, roles.owner]) {
      await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
    }
  };
  // A long run stopped with Ctrl-C must not leave its databases and roles behind.
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    console.log('interrupted: dropping the run’s databases and roles');
    void drop()
      .finally(() => pgServer.stop())
      .finally(() => process.exit(130));
  });
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    tenantry = await Tenantry.connect({
      databaseUrl: withDatabase(pgServer.url, name),
      secret: randomBytes(32).toString('hex'),
      roles,
      migrations: itemsMigrations,
      pool: { max: Math.min(o.concurrency, 20) },
    });
    await tenantry.setup();
    await tenantry.migrate();
    app = await createServer(tenantry, { logger: false, plans: fuzzPlans() });
    const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
    const replay = `npm run fuzz:isolation -- --ops ${o.ops} --seed ${o.seed} --concurrency 1${o.exclude.length ? ` --exclude ${o.exclude.join(',')}` : ''}`;
    console.log(`isolation fuzz: ${o.ops.toLocaleString('en-US')} ops, seed ${o.seed}, concurrency ${o.concurrency}`);
    const report = await runIsolationFuzz({
      tenantry,
      baseUrl,
      adminUrl: withDatabase(pgServer.url, name),
      ops: o.ops,
      seed: o.seed,
      concurrency: o.concurrency,
      exclude: o.exclude,
      httpShare: o.httpShare,
      onProgress: (p) => {
        if (interrupted) return;
        const rate = Math.round(p.done / (p.elapsedMs / 1000));
        const mb = Math.round(process.memoryUsage().rss / 1024 / 1024);
        console.log(
          `  ${Math.round(p.elapsedMs / 1000)} s: ${p.done.toLocaleString('en-US')}/${p.total.toLocaleString('en-US')} ops (${rate}/s), ${p.checks.toLocaleString('en-US')} checks, ${p.leaks} leaks, ${p.anomalies} anomalies, rss ${mb} MB`,
        );
      },
      // Once interrupted, what the drop breaks is no finding.
      onFinding: (f) => {
        if (interrupted) return;
        const where = f.example.op < 0 ? 'in the final sweep' : `at op #${f.example.op}`;
        console.log(`  first ${f.severity} [${f.kind}] ${f.what} ${where} (seed ${o.seed})`);
      },
    });
    console.log(formatIsolationReport(report, replay));
    return report.leaks + report.anomalies > 0 ? 1 : 0;
  } finally {
    await app?.close();
    await tenantry?.close();
    await drop();
    await admin.end();
    await pgServer.stop();
  }
}

process.exitCode = await main();
