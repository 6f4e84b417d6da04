/**
 * `npm run bench -- sql [--rounds 5] [--seconds 4] [--clients 1,8] [--rows 200000] [--protocol prepared|extended] [--sides plain,one-trip,…]`
 *
 * The server cost of a point-lookup transaction under each way of placing a tenant context,
 * measured with pgbench (a C client: no Node in the way), sides alternating within a round,
 * throughput relative to the plain transaction, medians over rounds:
 *
 * - `plain`: superuser, `BEGIN; SELECT … WHERE tenant_id = … AND id = …; COMMIT` (3 round trips);
 * - `autocommit`: the superuser's `SELECT` alone (1 round trip);
 * - `recipe`: the unverified recipe: runtime role, RLS on `current_setting('app.tenant_id')`,
 *   `set_config` pipelined with `BEGIN` and the `SELECT` (2 round trips);
 * - `signed`: Tenantry's context statement with an HMAC-signed token each time (first use
 *   of a session, and always behind a transaction-mode pooler), pipelined the same way;
 * - `secret`: Tenantry's context statement with the session's one-time secret (2 round trips);
 * - `one-trip`: `BEGIN`, the context (secret), the `SELECT` and `COMMIT` in one pipeline
 *   (1 round trip: what `tenantry.query()` sent before it dropped `BEGIN` and `COMMIT`);
 * - `implicit`: the context and the `SELECT` in one pipeline, one implicit transaction
 *   committed at the Sync: what `tenantry.query()` sends with `usage: false` (with the
 *   process's copy of the tenant's row, current: the common case);
 * - `reread`: the same without that copy (a tenant's first transaction in a process, or the
 *   first after a tenant's state changed): `enter()` reads the tenant's row;
 * - `named`: the same with the context statement also naming the tenant in
 *   `application_name` (`usage: { applicationName: true }`, on in `tenantry serve`).
 *
 * Needs pgbench (Debian: postgresql-client) on PATH and `DATABASE_URL` (a superuser; default
 * the local server). Creates a database of its own and drops it.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { mintContextToken } from '../packages/tenantry/src/context/context-token.ts';
import { Tenantry } from '../packages/tenantry/src/index.ts';
import { KeyRing } from '../packages/tenantry/src/secrets/keys.ts';
import { createBenchDatabase, withDatabase } from './lib/database.ts';
import { benchMigrations } from './lib/dataset.ts';
import { describeMachine } from './lib/report.ts';
import { median } from './lib/stats.ts';

const run = promisify(execFile);

const SIDES = ['plain', 'autocommit', 'recipe', 'signed', 'secret', 'one-trip', 'implicit', 'reread', 'named'] as const;
type Side = (typeof SIDES)[number];

interface Options {
  /** pgbench's query mode: `prepared` (plans cached per connection) or `extended` (planned every time, as pg sends unnamed statements). */
  protocol: 'prepared' | 'extended';
  rounds: number;
  seconds: number;
  clients: number[];
  rows: number;
  /** The sides to run (`plain` always runs: it is the unit). */
  sides: Side[];
  /**
   * Instead of running: keep the database, write each side's pgbench script to this folder
   * and print the commands, for a profiler (`valgrind --tool=callgrind` counts a backend's
   * instructions whatever else the machine is doing).
   */
  emit?: string;
}

function parse(argv: readonly string[]): Options {
  const o: Options = { protocol: 'prepared', rounds: 5, seconds: 4, clients: [1, 8], rows: 200_000, sides: [...SIDES] };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1] ?? ''];
    if (flag === '--rounds') o.rounds = Number(value);
    else if (flag === '--seconds') o.seconds = Number(value);
    else if (flag === '--clients') o.clients = value.split(',').map(Number);
    else if (flag === '--rows') o.rows = Number(value);
    else if (flag === '--protocol' && (value === 'prepared' || value === 'extended')) o.protocol = value;
    else if (flag === '--emit') o.emit = value;
    else if (flag === '--sides') {
      const wanted = value.split(',');
      const unknown = wanted.filter((s) => !(SIDES as readonly string[]).includes(s));
      if (unknown.length > 0) throw new Error(`unknown side ${unknown.join(', ')}; sides: ${SIDES.join(', ')}`);
      o.sides = SIDES.filter((s) => s === 'plain' || wanted.includes(s));
    } else throw new Error(`unknown option ${flag}; see the comment at the top of bench/sql.ts`);
  }
  if (![o.rounds, o.seconds, o.rows, ...o.clients].every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error('--rounds, --seconds, --clients and --rows take positive integers');
  }
  return o;
}

/** The pgbench script of each side; `:id` is a random row of tenant T. */
function scripts(tenant: string, enterSql: string): Record<Side, string> {
  const pick = '\\set id random(1, :rows)\n';
  const select = (table: string) => `SELECT * FROM bench.${table} WHERE tenant_id = '${tenant}' AND n = :id;\n`;
  // pgbench substitutes :variables as bind parameters in prepared mode; the context
  // statement is Tenantry's own text with its parameters spelled as pgbench variables: a
  // signed token, or (the common call) the tenant and the previous transaction's secret.
  const spell = (values: readonly string[]) => values.reduce((sql, v, i) => sql.replace(`$${i + 1}`, v), enterSql);
  const enter = spell([':tok', ':nx', "'bench'", `'${tenant}'`, 'NULL', 'NULL', 'NULL', 'NULL']);
  // The common call, with the process's copy of the tenant's row (`:ver`, `:timeout`: the
  // tenant state version and the row's timeout, read once by the setup; nothing changes them
  // during the benchmark), and without it (`reread`).
  const chained = spell(['NULL', ':nx', "'bench'", `'${tenant}'`, ':prev', ':ver', ':timeout', 'NULL']);
  const reread = spell(['NULL', ':nx', "'bench'", `'${tenant}'`, ':prev', 'NULL', 'NULL', 'NULL']);
  // What the runner sends when usage names the tenant in application_name (tenantry serve).
  // (chr(58) is ':', which pgbench would read as the start of a variable's name.)
  const named = `SELECT e.* FROM (${chained}) e WHERE set_config('application_name', 'tenantry' || chr(58) || '${tenant}', true) IS NOT NULL`;
  // The first transaction of each pgbench client has no secret yet: it signs, as Tenantry does.
  const secretEnter = `\\set nx random(1, 4611686018427387903)
\\if :first
\\startpipeline
BEGIN;
${enter};
\\endpipeline
COMMIT;
\\set first 0
\\else
`;
  return {
    plain: `${pick}BEGIN;\n${select('items')}COMMIT;\n`,
    autocommit: `${pick}${select('items')}`,
    recipe: `${pick}\\startpipeline\nBEGIN;\nSELECT set_config('app.tenant_id', '${tenant}', true);\n${select('items_recipe')}\\endpipeline\nCOMMIT;\n`,
    signed: `${pick}\\set nx 0\n\\startpipeline\nBEGIN;\n${enter.replace(':nx', 'NULL')};\n${select('items')}\\endpipeline\nCOMMIT;\n`,
    secret: `${pick}${secretEnter}\\startpipeline\nBEGIN;\n${chained};\n${select('items')}\\endpipeline\nCOMMIT;\n\\endif\n\\set prev :nx\n`,
    'one-trip': `${pick}${secretEnter}\\startpipeline\nBEGIN;\n${chained};\n${select('items')}COMMIT;\n\\endpipeline\n\\endif\n\\set prev :nx\n`,
    implicit: `${pick}${secretEnter}\\startpipeline\n${chained};\n${select('items')}\\endpipeline\n\\endif\n\\set prev :nx\n`,
    reread: `${pick}${secretEnter}\\startpipeline\n${reread};\n${select('items')}\\endpipeline\n\\endif\n\\set prev :nx\n`,
    named: `${pick}${secretEnter}\\startpipeline\n${named};\n${select('items')}\\endpipeline\n\\endif\n\\set prev :nx\n`,
  };
}

async function pgbench(
  url: string,
  file: string,
  clients: number,
  seconds: number,
  vars: string[],
  protocol: Options['protocol'],
): Promise<number> {
  const u = new URL(url);
  const args = ['-n', '-M', protocol, '-c', String(clients), '-j', String(clients), '-T', String(seconds)];
  args.push('-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username));
  for (const v of vars) args.push('-D', v);
  args.push('-f', file, u.pathname.slice(1));
  const env = { ...process.env, PGPASSWORD: decodeURIComponent(u.password) };
  const { stdout } = await run('pgbench', args, { env, maxBuffer: 1 << 24 });
  const failed = /number of failed transactions: (\d+)/.exec(stdout)?.[1];
  if (failed && failed !== '0') throw new Error(`pgbench ${file}: ${failed} failed transactions\n${stdout}`);
  const tps = /tps = ([\d.]+)/.exec(stdout)?.[1];
  if (!tps) throw new Error(`pgbench ${file}: no tps in\n${stdout}`);
  return Number(tps);
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parse(argv);
  try {
    await run('pgbench', ['--version']);
  } catch {
    process.stderr.write(
      'pgbench not found: install PostgreSQL client tools (Debian: apt-get install postgresql-client)\n',
    );
    return 2;
  }
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const db = await createBenchDatabase(adminUrl);
  const dir = await mkdtemp(join(os.tmpdir(), 'tenantry-bench-sql-'));
  // `pooler` binding: a pgbench client cannot know its backend pid, so the signed side uses pid 0.
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: benchMigrations,
    tenantSchema: 'bench',
    contextBinding: 'pooler',
  });
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const tenant = await tenantry.tenants.create({ slug: 'bench', name: 'Bench' });
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const rt = `"${db.roles.runtime}"`;
      await admin.query(
        `
        ALTER TABLE bench.items ADD COLUMN n bigint;
        INSERT INTO bench.items (tenant_id, title, n) SELECT $1, 'item ' || g, g FROM generate_series(1, ${options.rows}) g;
        CREATE UNIQUE INDEX items_n ON bench.items (tenant_id, n);
        CREATE TABLE bench.items_recipe (tenant_id uuid NOT NULL, n bigint NOT NULL, title text, PRIMARY KEY (tenant_id, n));
        INSERT INTO bench.items_recipe SELECT tenant_id, n, title FROM bench.items;
        ALTER TABLE bench.items_recipe ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
        CREATE POLICY recipe ON bench.items_recipe USING (tenant_id = (SELECT current_setting('app.tenant_id', true)::uuid));
        GRANT SELECT ON bench.items_recipe TO ${rt};
        ANALYZE bench.items; ANALYZE bench.items_recipe;`.replace('$1', `'${tenant.id}'`),
      );
    } finally {
      await admin.end();
    }
    const key = new KeyRing(db.secret).key('context-hmac');
    const token = mintContextToken(key, 'work', tenant.id, 0, Date.now() + 24 * 3600_000);
    const files = scripts(tenant.id, tenantry.config.dialect.enterSql);
    for (const side of SIDES) await writeFile(join(dir, `${side}.sql`), files[side]);
    const runtimeUrl = (tenantry.runtimePool as unknown as { options: { connectionString: string } }).options
      .connectionString;
    const { rows: state } = await tenantry.adminPool.query<{ ver: string; timeout: number }>(
      `SELECT pg_sequence_last_value('tenantry.tenant_state_version') AS ver, statement_timeout_ms AS timeout
         FROM tenantry.tenants WHERE id = $1`,
      [tenant.id],
    );
    const vars = [
      `tok=${token}`,
      `rows=${options.rows}`,
      'first=1',
      'prev=0',
      `ver=${state[0]?.ver}`,
      `timeout=${state[0]?.timeout}`,
    ];
    if (options.emit) {
      await emitScripts(options.emit, files, { admin: withDatabase(adminUrl, db.name), runtime: runtimeUrl }, vars);
      return 0;
    }
    const machine = await describeMachine(
      (await tenantry.adminPool.query('SHOW server_version')).rows[0].server_version,
    );
    console.log(
      `# SQL level (pgbench), point lookup; ${machine.cpus} CPU ${machine.cpuModel}, PostgreSQL ${machine.postgres}`,
    );
    console.log(
      `# ${options.rounds} rounds × ${options.seconds} s per side, alternating, ${options.protocol} statements; throughput / plain (median)`,
    );
    for (const clients of options.clients) {
      const ratios: Record<Side, number[]> = Object.fromEntries(SIDES.map((s) => [s, []])) as never;
      const tps: Record<Side, number[]> = Object.fromEntries(SIDES.map((s) => [s, []])) as never;
      for (let r = 0; r < options.rounds; r++) {
        const order = r % 2 ? [...options.sides].reverse() : [...options.sides];
        const got = {} as Record<Side, number>;
        for (const side of order) {
          const superuser = side === 'plain' || side === 'autocommit';
          got[side] = await pgbench(
            superuser ? withDatabase(adminUrl, db.name) : runtimeUrl,
            join(dir, `${side}.sql`),
            clients,
            options.seconds,
            vars,
            options.protocol,
          );
          tps[side].push(got[side]);
        }
        for (const side of options.sides) ratios[side].push(got[side] / got.plain);
      }
      console.log(`\n${clients} client${clients > 1 ? 's' : ''}:`);
      for (const side of options.sides) {
        console.log(
          `  ${side.padEnd(11)} ${median(ratios[side]).toFixed(2)}   (${Math.round(median(tps[side]))} tps` +
            (ratios.recipe.length > 0
              ? `; vs recipe ${(median(ratios[side]) / median(ratios.recipe)).toFixed(2)}`
              : '') +
            ')',
        );
      }
    }
    console.log(
      `\nload average after: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    return 0;
  } finally {
    await tenantry.close();
    if (!options.emit) await db.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** `--emit`: the scripts and the pgbench command of each side, the database kept. */
async function emitScripts(
  folder: string,
  files: Record<Side, string>,
  urls: { admin: string; runtime: string },
  vars: readonly string[],
): Promise<void> {
  await mkdir(folder, { recursive: true });
  for (const side of SIDES) {
    await writeFile(join(folder, `${side}.sql`), files[side]);
    const url = side === 'plain' || side === 'autocommit' ? urls.admin : urls.runtime;
    const defines = vars.map((v) => `-D '${v}'`).join(' ');
    console.log(`pgbench -n -M prepared ${defines} -f ${join(folder, `${side}.sql`)} '${url}'`);
  }
}
