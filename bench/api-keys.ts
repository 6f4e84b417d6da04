/**
 * API key verification: Tenantry's `ApiKeyStore.verify` (one indexed lookup + HMAC-SHA256,
 * cache off; and with its ≤ 1 s cache warm) against bcrypt cost 10, the hashing seed 002
 * proposed. Same run, alternating rounds, ratios printed. Then counts what 100,000
 * malformed or wrong-checksum keys send to PostgreSQL (target: nothing).
 *
 * The bcrypt side is `bcryptjs` (pure JavaScript, the workspace's bench-only dependency
 * since the lockfile dropped `@node-rs/bcrypt`). Native bcrypt is faster per hash but
 * the same order of magnitude; bcrypt's cost is by design, so the ratio's size survives.
 *
 *   node bench/api-keys.ts [--seconds 12] [--rounds 6] [--warmup 1] [--clients 1,4] [--keys 1000] [--quick]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * the benchmark works in a database of its own and drops it at the end.
 */
import { compare as bcryptCompare, hash as bcryptHash } from 'bcryptjs';
import pg from 'pg';
import { apiKeyChecksum, generateApiKey } from '../packages/tenantry/src/auth/api-key-format.ts';
import { ApiKeyStore } from '../packages/tenantry/src/auth/api-key-store.ts';
import { postgresDialect, Tenantry } from '../packages/tenantry/src/index.ts';
import { apiKeysMigration } from '../packages/tenantry/src/migrate/api-keys-migration.ts';
import { controlPlaneMigrations } from '../packages/tenantry/src/migrate/control-plane.ts';
import { applyMigrations } from '../packages/tenantry/src/migrate/runner.ts';
import { KeyRing } from '../packages/tenantry/src/secrets/keys.ts';
import { benchDatabaseUrl } from './lib/argv.ts';
import { createBenchDatabase, withAddress } from './lib/database.ts';
import { measureSides, type SideResult } from './lib/measure.ts';
import { fixed, log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { parseRoundOptions, type RoundOptions } from './lib/rounds.ts';
import { table } from './lib/table.ts';
import { WireCounter } from './lib/wire-counter.ts';
import { pick, type Side } from './lib/workloads.ts';

const BCRYPT_COST = 10;
const MALFORMED = 100_000;

interface Options extends RoundOptions {
  readonly databaseUrl: string;
  readonly keys: number;
}

function parseOptions(argv: readonly string[]): Options {
  return Object.freeze({ databaseUrl: benchDatabaseUrl(), ...parseRoundOptions(argv, '1,4', { keys: [1000, 100] }) });
}

/** Counts every statement a pg client of this process sends, until `restore()`. */
function countStatements(): { count(): number; restore(): void } {
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  let n = 0;
  proto.query = function (this: unknown, ...args: unknown[]) {
    n++;
    return original.apply(this, args);
  };
  return {
    count: () => n,
    restore: () => {
      proto.query = original;
    },
  };
}

/** 100,000 keys that must never reach the database: wrong checksum, wrong shape, wrong prefix. */
function malformedKeys(template: string): string[] {
  const otherPrefix = generateApiKey({ prefix: 'frt', environment: 'live' }).key; // valid checksum, not ours
  const flipAt = (i: number) => {
    const c = template[i] as string;
    const swapped = c === 'a' ? 'b' : c === '_' ? '-' : 'a';
    return template.slice(0, i) + swapped + template.slice(i + 1);
  };
  const variants: ((i: number) => string)[] = [
    (i) => flipAt(9 + (i % 50)), // one body character changed: checksum wrong
    (i) => flipAt(i % template.length),
    (i) => `tnt_live_${String(i).padStart(50, 'x')}`,
    () => otherPrefix,
    (i) => template.slice(0, i % template.length),
    (i) => `${template}${i}`,
    (i) => `Bearer ${i}`,
    () => '',
  ];
  return Array.from({ length: MALFORMED }, (_, i) => (variants[i % variants.length] as (i: number) => string)(i));
}

function formatResults(clients: number, results: readonly SideResult[], labels: Record<string, string>): string {
  const rows = results.map((r) => [
    r.key,
    labels[r.key] ?? '',
    fixed(r.tps, r.tps < 100 ? 1 : 0),
    fixed(r.p50, 3),
    fixed(r.p99, 3),
  ]);
  const header = ['side', 'what', 'verify/s', 'p50 ms', 'p99 ms'];
  const tps = (key: string) => results.find((r) => r.key === key)?.tps ?? Number.NaN;
  return [
    `── API key verification — ${clients} client${clients === 1 ? '' : 's'} ${'─'.repeat(30)}`,
    table(header, rows, 2),
    `hmac/bcrypt ${fixed(tps('hmac') / tps('bcrypt'), 1)}×   hmac-cached/bcrypt ${fixed(
      tps('hmac-cached') / tps('bcrypt'),
      1,
    )}×   (verifications per second, medians of ${results[0]?.rounds.length ?? 0} rounds)`,
  ].join('\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const db = await createBenchDatabase(options.databaseUrl);
  const maxClients = Math.max(...options.clients);
  const tenantry = await Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles });
  const pools: pg.Pool[] = [];
  const stores: ApiKeyStore[] = [];
  let counter: WireCounter | undefined;
  try {
    await tenantry.setup();
    const migrations = controlPlaneMigrations(db.roles.runtime);
    // Once control-plane.ts lists the migration itself, setup() has applied it already.
    if (!migrations.some((m) => m.id === apiKeysMigration.id)) migrations.push(apiKeysMigration);
    const client = await tenantry.adminPool.connect();
    try {
      await applyMigrations(client, {
        chain: 'control',
        target: 'main',
        schema: 'tenantry',
        ownerRole: db.roles.owner,
        runtimeRole: db.roles.runtime,
        dialect: postgresDialect,
        migrations,
      });
    } finally {
      client.release();
    }
    const { rows } = await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    const machine = await describeMachine(rows[0]?.v ?? 'unknown');
    log(`machine: ${JSON.stringify(machine)}`);
    log(
      `options: ${JSON.stringify({ ...options, databaseUrl: undefined })}; bcrypt cost ${BCRYPT_COST}; database ${db.name}`,
    );

    const hmacKey = new KeyRing(db.secret).key('api-key-hash');
    const newPool = (url = db.url, max = maxClients) => {
      const pool = new pg.Pool({ connectionString: url, max, idleTimeoutMillis: 0 });
      pools.push(pool);
      return pool;
    };
    const newStore = (pool: pg.Pool, cacheTtlMs: number) => {
      const store = new ApiKeyStore(pool, hmacKey, { cacheTtlMs });
      stores.push(store);
      return store;
    };
    const admin = newStore(tenantry.adminPool, 0);
    const tenants = await Promise.all(
      Array.from({ length: 10 }, (_, i) => tenantry.tenants.create({ slug: `bench-${i}`, name: `Bench ${i}` })),
    );
    const keys: string[] = [];
    for (let i = 0; i < options.keys; i++) {
      const tenant = tenants[i % tenants.length] as (typeof tenants)[number];
      const created = await admin.create(tenant.id, {
        name: `key ${i}`,
        environment: 'live',
        scopes: ['items:read'],
      });
      keys.push(created.key);
    }
    await tenantry.adminPool.query('ANALYZE tenantry.api_keys');
    const bcryptKeys = keys.slice(0, 8);
    const bcryptHashes = await Promise.all(bcryptKeys.map((k) => bcryptHash(k, BCRYPT_COST)));
    log(`created ${keys.length} API keys over ${tenants.length} tenants; ${bcryptHashes.length} bcrypt hashes`);

    const uncached = newStore(newPool(), 0);
    const cached = newStore(newPool(), 1000);
    await cached.start();
    const labels: Record<string, string> = {
      hmac: 'ApiKeyStore.verify, cache off: 1 indexed lookup + HMAC-SHA256',
      'hmac-cached': 'ApiKeyStore.verify, warm cache (TTL 1 s, LISTEN on)',
      bcrypt: `bcryptjs compare, cost ${BCRYPT_COST} (no database lookup)`,
    };
    const sides: Side[] = [
      {
        key: 'hmac',
        label: labels.hmac as string,
        run: async () => {
          if (!(await uncached.verify(pick(keys)))) throw new Error('a valid key was refused');
        },
      },
      {
        key: 'hmac-cached',
        label: labels['hmac-cached'] as string,
        run: async () => {
          if (!(await cached.verify(pick(keys)))) throw new Error('a valid key was refused');
        },
      },
      {
        key: 'bcrypt',
        label: labels.bcrypt as string,
        run: async () => {
          const i = Math.floor(Math.random() * bcryptKeys.length);
          if (!(await bcryptCompare(bcryptKeys[i] as string, bcryptHashes[i] as string))) {
            throw new Error('bcrypt refused a valid key');
          }
        },
      },
    ];
    const summary: string[] = [];
    for (const clients of options.clients) {
      const results = await measureSides(sides, {
        clients,
        seconds: options.seconds,
        rounds: options.rounds,
        warmup: options.warmup,
      });
      const block = formatResults(clients, results, labels);
      log(block);
      log();
      summary.push(block.split('\n').at(-1) as string);
    }

    // Offline rejection: a store whose pool talks to PostgreSQL through a counting proxy.
    // The measured stores close first, so no usage flush of theirs lands in the counts.
    await Promise.all([uncached.close(), cached.close()]);
    const target = new URL(db.url);
    counter = new WireCounter(target.hostname, Number(target.port || 5432));
    const port = await counter.listen();
    const proxied = newPool(withAddress(db.url, '127.0.0.1', port), 2);
    const watched = newStore(proxied, 0);
    if (!(await watched.verify(keys[0] as string))) throw new Error('a valid key was refused'); // connects
    await watched.flush();
    const bad = malformedKeys(keys[0] as string);
    const statements = countStatements();
    const originalConnect = proxied.connect.bind(proxied);
    let checkouts = 0;
    proxied.connect = ((...args: unknown[]) => {
      checkouts++;
      return (originalConnect as (...a: unknown[]) => unknown)(...args);
    }) as typeof proxied.connect;
    const wireBefore = counter.snapshot();
    const t0 = performance.now();
    let accepted = 0;
    for (const key of bad) if ((await watched.verify(key)) !== undefined) accepted++;
    const ms = performance.now() - t0;
    const wire = WireCounter.diff(counter.snapshot(), wireBefore);
    const offline = {
      statements: statements.count(),
      checkouts,
      roundTrips: wire.roundTrips,
      bytesUp: wire.bytesUp,
    };
    // Control: well-formed keys with a valid checksum and a wrong secret do reach the database.
    const forged = keys.slice(0, 100).map((k) => {
      const unchecked = `${k.slice(0, -7)}${k.at(-7) === 'a' ? 'b' : 'a'}`;
      return unchecked + apiKeyChecksum(unchecked);
    });
    const controlBefore = counter.snapshot();
    const statementsBefore = statements.count();
    for (const key of forged) if ((await watched.verify(key)) !== undefined) accepted++;
    const control = {
      statements: statements.count() - statementsBefore,
      roundTrips: WireCounter.diff(counter.snapshot(), controlBefore).roundTrips,
    };
    statements.restore();

    log('── offline rejection ─────────────────────────────────────────');
    log(
      `${bad.length.toLocaleString('en')} malformed or wrong-checksum keys: accepted ${accepted}, ` +
        `pg statements ${offline.statements}, pool checkouts ${offline.checkouts}, ` +
        `round trips to PostgreSQL ${offline.roundTrips}, bytes sent ${offline.bytesUp} ` +
        `(${fixed(ms, 0)} ms, ${fixed((bad.length / ms) * 1000, 0)} rejections/s)`,
    );
    log(
      `control: ${forged.length} well-formed keys with a wrong secret: pg statements ${control.statements}, ` +
        `round trips ${control.roundTrips} (one lookup each, all refused)`,
    );
    log();
    log('── summary ───────────────────────────────────────────────────');
    log(`load average at the end: ${(await describeMachine(machine.postgres)).loadAverage.join(', ')}`);
    for (const [i, line] of summary.entries()) log(`${options.clients[i]} client(s): ${line}`);
    log(`offline rejection: ${offline.statements} queries for ${bad.length.toLocaleString('en')} bad keys (target 0)`);
    return accepted === 0 && offline.statements === 0 && offline.roundTrips === 0 ? 0 : 1;
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await Promise.all(pools.map((p) => p.end()));
    await counter?.close();
    await tenantry.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
