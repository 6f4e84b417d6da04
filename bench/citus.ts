/**
 * The pool tier on a Citus cluster (`CITUS_URL`: a coordinator's superuser URL, workers
 * registered), three comparisons, each side alternating in timed rounds in the same run:
 *
 * 1. point lookup through Tenantry (`dialect: 'citus'`, the example's prepared `items.getQuery`
 *    in a one-statement transaction) against the same SELECT with an explicit
 *    `tenant_id = $1` predicate as the superuser (no RLS, no context) on the same cluster,
 *    once autocommit and once inside `BEGIN … COMMIT` (sent in one round trip, as Tenantry
 *    sends its transaction): Citus runs an autocommit router statement on the worker
 *    without a transaction block, so the second ratio leaves out Citus's own cost of a
 *    distributed transaction and shows Tenantry's;
 * 2. insert through Tenantry (`items.create`) against the same INSERT as the superuser,
 *    autocommit and in `BEGIN … COMMIT`;
 * 3. throughput of the point lookup through Tenantry at `--clients` (default 8) on one
 *    PostgreSQL server (`DATABASE_URL`, `dialect: 'postgres'`) against the cluster.
 *
 * `CITUS_PEER_DN`: the subject of the client certificate Citus connects with (docs/citus.md,
 * "Peer binding"); unset, the benchmark runs with the `'network'` opt-out.
 *
 *   CITUS_URL=… CITUS_PEER_DN=… DATABASE_URL=… npm run bench -- citus [--seconds 5] [--rounds 4] [--clients 8] [--tenants 200] [--rows 50] [--only 'BEGIN']
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type ItemsDB, items, itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { type TenantContext, Tenantry, withTenant } from '../packages/tenantry/src/index.ts';
import { runPipelined } from '../packages/tenantry/src/wire/statement-pipeline.ts';
import { citusPeerOptions, createCitusDatabase } from '../test-support/citus.ts';
import { median } from './lib/stats.ts';

let SECONDS = 5;
let ROUNDS = 4;
let CLIENTS = 8;
let TENANTS = 200;
let ROWS = 50;
/** Run only the comparisons whose label contains this (`--only`). */
let ONLY: string | undefined;

/** A deployment under test: Tenantry, its tenants with their item ids, and a superuser pool on the same database. */
interface Side {
  readonly tenantry: Tenantry<ItemsDB>;
  readonly superuser: pg.Pool;
  readonly tenants: { ctx: TenantContext; ids: string[] }[];
  drop(): Promise<void>;
}

async function prepare(kind: 'citus' | 'postgres'): Promise<Side> {
  let url: string;
  let secret: string;
  let roles: { owner: string; runtime: string };
  let drop: () => Promise<void>;
  if (kind === 'citus') {
    const db = await createCitusDatabase('bench');
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    for (const n of db.nodes) {
      await admin.query('SELECT citus_set_node_property($1, $2, $3, true)', [n.host, n.port, 'shouldhaveshards']);
    }
    await admin.end();
    ({ url, secret, roles } = db);
    drop = () => db.drop();
  } else {
    const suffix = randomBytes(4).toString('hex');
    const name = `tenantry_bench_single_${suffix}`;
    const base = new URL(process.env.DATABASE_URL as string);
    const admin = new pg.Client({ connectionString: base.toString() });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
    await admin.end();
    base.pathname = `/${name}`;
    url = base.toString();
    secret = randomBytes(32).toString('hex');
    roles = { owner: `tb_${suffix}_owner`, runtime: `tb_${suffix}_runtime` };
    drop = async () => {
      const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      for (const r of [roles.runtime, roles.owner]) await c.query(`DROP ROLE IF EXISTS "${r}"`);
      await c.end();
    };
  }
  const tenantry = await Tenantry.connect<ItemsDB>({
    databaseUrl: url,
    secret,
    roles,
    migrations: itemsMigrations,
    dialect: kind,
    // The cluster's peer identity (CITUS_PEER_DN), as the Citus suites configure it.
    ...(kind === 'citus' ? { citus: citusPeerOptions() } : {}),
    usage: false,
    pool: { max: CLIENTS },
  });
  await tenantry.setup();
  await tenantry.migrate();
  const tenants: Side['tenants'] = [];
  for (let i = 0; i < TENANTS; i++) {
    const t = await tenantry.tenants.create({ slug: `b-${i}`, name: `B ${i}` });
    const ctx: TenantContext = { id: t.id, slug: t.slug, tier: t.tier, plan: t.plan, status: t.status };
    const ids = await tenantry.transaction(ctx, async (tx) => {
      const out: string[] = [];
      for (let r = 0; r < ROWS; r++) out.push((await items.create(tx, { title: `item ${r} of ${i}` })).id);
      return out;
    });
    tenants.push({ ctx, ids });
  }
  const superuser = new pg.Pool({ connectionString: url, max: CLIENTS });
  return {
    tenantry,
    superuser,
    tenants,
    async drop() {
      await superuser.end();
      await tenantry.close();
      await drop();
    },
  };
}

const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)] as T;

/** Operations per second of `op` run by `clients` loops for `seconds`. */
async function rate(op: () => Promise<unknown>, clients: number, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        await op();
        n++;
      }
    }),
  );
  return n / seconds;
}

const COLUMNS = 'id, title, description, created_at, updated_at';

/** `BEGIN`, one statement and `COMMIT` as the superuser, pipelined in one round trip. */
async function inTransaction(pool: pg.Pool, text: string, values: readonly unknown[]): Promise<unknown> {
  const client = await pool.connect();
  try {
    return await runPipelined(client, [{ text: 'BEGIN' }, { text, values }, { text: 'COMMIT' }]);
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

const LOOKUP = `SELECT ${COLUMNS} FROM items WHERE tenant_id = $1 AND id = $2`;
const INSERT = `INSERT INTO items (tenant_id, title) VALUES ($1, $2) RETURNING ${COLUMNS}`;

const ops = (s: Side) => ({
  tenantryLookup: () => {
    const t = pick(s.tenants);
    return withTenant(t.ctx, () => s.tenantry.query(t.ctx, items.getQuery(pick(t.ids)) as never));
  },
  superLookup: () => {
    const t = pick(s.tenants);
    return s.superuser.query(LOOKUP, [t.ctx.id, pick(t.ids)]);
  },
  superTxLookup: () => {
    const t = pick(s.tenants);
    return inTransaction(s.superuser, LOOKUP, [t.ctx.id, pick(t.ids)]);
  },
  tenantryInsert: () => {
    const t = pick(s.tenants);
    return s.tenantry.transaction(t.ctx, (tx) => items.create(tx, { title: 'bench insert' }));
  },
  superInsert: () => {
    const t = pick(s.tenants);
    return s.superuser.query(INSERT, [t.ctx.id, 'bench insert']);
  },
  superTxInsert: () => {
    const t = pick(s.tenants);
    return inTransaction(s.superuser, INSERT, [t.ctx.id, 'bench insert']);
  },
});

/** A comparison named before it runs, so that `--only` can pick it. */
const comparison = (label: string, a: () => Promise<number>, b: () => Promise<number>) => ({
  label,
  run: () => compare(label, a, b),
});

/** Alternates `a` and `b` for ROUNDS rounds (order flipped every round); medians and the ratio a/b. */
async function compare(label: string, a: () => Promise<number>, b: () => Promise<number>): Promise<string> {
  const ra: number[] = [];
  const rb: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      ra.push(await a());
      rb.push(await b());
    } else {
      rb.push(await b());
      ra.push(await a());
    }
  }
  const ma = median(ra);
  const mb = median(rb);
  return `${label.padEnd(58)} ${ma.toFixed(0).padStart(7)} /s vs ${mb.toFixed(0).padStart(7)} /s   ratio ${(ma / mb).toFixed(2)}`;
}

export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seconds: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '4' },
      clients: { type: 'string', default: '8' },
      tenants: { type: 'string', default: '200' },
      rows: { type: 'string', default: '50' },
      only: { type: 'string' },
    },
  });
  SECONDS = Number(values.seconds);
  ROUNDS = Number(values.rounds);
  CLIENTS = Number(values.clients);
  TENANTS = Number(values.tenants);
  ROWS = Number(values.rows);
  ONLY = values.only;
  if (!process.env.CITUS_URL || !process.env.DATABASE_URL) {
    console.error('the citus benchmark needs CITUS_URL (a Citus coordinator) and DATABASE_URL (one PostgreSQL server)');
    return 2;
  }
  const started = Date.now();
  const cluster = await prepare('citus');
  const single = await prepare('postgres');
  try {
    const c = ops(cluster);
    const s = ops(single);
    // Warm every connection and plan.
    await rate(c.tenantryLookup, CLIENTS, 1);
    await rate(c.superLookup, CLIENTS, 1);
    await rate(c.superTxLookup, CLIENTS, 1);
    await rate(s.tenantryLookup, CLIENTS, 1);
    const comparisons = [
      comparison(
        'cluster, 1 client: lookup Tenantry vs superuser+predicate',
        () => rate(c.tenantryLookup, 1, SECONDS),
        () => rate(c.superLookup, 1, SECONDS),
      ),
      comparison(
        'cluster, 1 client: insert Tenantry vs superuser',
        () => rate(c.tenantryInsert, 1, SECONDS),
        () => rate(c.superInsert, 1, SECONDS),
      ),
      comparison(
        'cluster, 1 client: lookup Tenantry vs superuser in BEGIN…COMMIT',
        () => rate(c.tenantryLookup, 1, SECONDS),
        () => rate(c.superTxLookup, 1, SECONDS),
      ),
      comparison(
        'cluster, 1 client: insert Tenantry vs superuser in BEGIN…COMMIT',
        () => rate(c.tenantryInsert, 1, SECONDS),
        () => rate(c.superTxInsert, 1, SECONDS),
      ),
      comparison(
        `cluster, ${CLIENTS} clients: lookup Tenantry vs superuser+predicate`,
        () => rate(c.tenantryLookup, CLIENTS, SECONDS),
        () => rate(c.superLookup, CLIENTS, SECONDS),
      ),
      comparison(
        `cluster, ${CLIENTS} clients: insert Tenantry vs superuser`,
        () => rate(c.tenantryInsert, CLIENTS, SECONDS),
        () => rate(c.superInsert, CLIENTS, SECONDS),
      ),
      comparison(
        `cluster, ${CLIENTS} clients: lookup Tenantry vs superuser in BEGIN…COMMIT`,
        () => rate(c.tenantryLookup, CLIENTS, SECONDS),
        () => rate(c.superTxLookup, CLIENTS, SECONDS),
      ),
      comparison(
        `cluster, ${CLIENTS} clients: insert Tenantry vs superuser in BEGIN…COMMIT`,
        () => rate(c.tenantryInsert, CLIENTS, SECONDS),
        () => rate(c.superTxInsert, CLIENTS, SECONDS),
      ),
      comparison(
        `Tenantry lookup, ${CLIENTS} clients: cluster vs one server`,
        () => rate(c.tenantryLookup, CLIENTS, SECONDS),
        () => rate(s.tenantryLookup, CLIENTS, SECONDS),
      ),
      comparison(
        `Tenantry insert, ${CLIENTS} clients: cluster vs one server`,
        () => rate(c.tenantryInsert, CLIENTS, SECONDS),
        () => rate(s.tenantryInsert, CLIENTS, SECONDS),
      ),
    ];
    const lines: string[] = [];
    for (const { label, run } of comparisons) if (!ONLY || label.includes(ONLY)) lines.push(await run());
    const { loadavg, cpus } = await import('node:os');
    console.log(
      `citus bench: ${TENANTS} tenants × ${ROWS} items, ${ROUNDS} alternating rounds of ${SECONDS} s, ` +
        `${cpus().length} CPUs, load average ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}, ${Math.round((Date.now() - started) / 1000)} s`,
    );
    for (const line of lines) console.log(line);
  } finally {
    await cluster.drop();
    await single.drop();
  }
  return 0;
}

// Run directly (`node bench/citus.ts …`) as well as through `npm run bench -- citus`.
if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
