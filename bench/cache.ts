/**
 * The tenant cache: a hit (Redis, and in-process) against the point lookup it saves, a
 * one-statement tenant transaction (`tenantry.query`, one round trip to PostgreSQL). Same
 * run, alternating rounds, ratios and medians printed.
 *
 *   node bench/cache.ts [--seconds 12] [--rounds 6] [--warmup 1] [--clients 1,8] [--items 1000] [--quick]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser;
 * `REDIS_URL` defaults to redis://127.0.0.1:6379 (the Redis side is skipped when unreachable).
 * The benchmark works in a database of its own and a key prefix of its own, and removes both.
 */
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { TenantScopedCache } from '../packages/tenantry/src/cache/tenant-scoped-cache.ts';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { contextOf, Tenantry } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { measureSides, type SideResult } from './lib/measure.ts';
import { fixed, log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { parseRoundOptions, type RoundOptions } from './lib/rounds.ts';
import { table } from './lib/table.ts';
import { pick, type Side } from './lib/workloads.ts';

type Redis = ReturnType<typeof createClient>;

interface Options extends RoundOptions {
  readonly items: number;
}

function parseOptions(argv: readonly string[]): Options {
  return parseRoundOptions(argv, '1,8', { items: [1000, 200] });
}

/** Each side's throughput, median and p99 latency, and both as ratios to the tenant query. */
function formatResults(clients: number, results: readonly SideResult[]): string {
  const base = results.find((r) => r.key === 'query') as SideResult;
  const rows = results.map((r) => [
    r.label,
    fixed(r.tps, 0),
    fixed(r.p50, 3),
    fixed(r.p99, 3),
    r.key === 'query' ? '1.00' : fixed(base.p50 / r.p50, 2),
    r.key === 'query' ? '1.00' : fixed(r.tps / base.tps, 2),
  ]);
  return [
    `── ${clients} client(s) ──`,
    table(['side', 'ops/s', 'p50 ms', 'p99 ms', 'p50 speed-up', 'ops/s ratio'], rows, 1),
  ].join('\n');
}

async function connectRedis(url: string): Promise<Redis | undefined> {
  const client = createClient({ url, socket: { connectTimeout: 1000, reconnectStrategy: false } });
  client.on('error', () => {});
  try {
    await client.connect();
    return client;
  } catch {
    log(`no Redis at ${url}: the Redis side is skipped`);
    return undefined;
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const db = await createBenchDatabase(benchDatabaseUrl());
  const redis = await connectRedis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
  const prefix = `tenantry-bench:cache:${randomBytes(4).toString('hex')}`;
  const maxClients = Math.max(...options.clients);
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    pool: { max: maxClients },
  });
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const tenant = contextOf(await tenantry.tenants.create({ slug: 'bench', name: 'Bench' }));
    const ids = await tenantry.transaction(tenant, async (tx) => {
      const { rows } = await tx.query<{ id: string }>(
        "INSERT INTO items (tenant_id, title) SELECT $1, 'item ' || g FROM generate_series(1, $2) g RETURNING id",
        [tenant.id, options.items],
      );
      return rows.map((r) => r.id);
    });
    await tenantry.adminPool.query('ANALYZE items');
    const pgVersion = (await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v"))
      .rows[0]?.v;
    const redisVersion = redis ? /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] : undefined;
    const machine = await describeMachine(pgVersion ?? 'unknown');
    log(`machine: ${JSON.stringify({ ...machine, redis: redisVersion ?? 'none' })}`);
    log(`options: ${JSON.stringify(options)}`);

    const SQL = 'SELECT id, title, description, created_at, updated_at FROM items WHERE tenant_id = $1 AND id = $2';
    const read = async (id: string) => (await tenantry.query(tenant, SQL, [tenant.id, id])).rows[0];
    const caches = [
      { key: 'memory', label: 'cache hit, in-process', cache: new TenantScopedCache() },
      ...(redis
        ? [
            {
              key: 'redis',
              label: 'cache hit, Redis (1 EVALSHA)',
              cache: new TenantScopedCache({ redis, keyPrefix: prefix }),
            },
          ]
        : []),
    ];
    for (const { cache } of caches) {
      for (const id of ids)
        await cache.getOrCompute(`item:${id}`, () => read(id), { tenant: tenant.id, ttlMs: 3_600_000 });
    }
    const sides: Side[] = [
      {
        key: 'query',
        label: 'tenantry.query point lookup (1 round trip)',
        run: async () => {
          if (!(await read(pick(ids)))) throw new Error('an item is missing');
        },
      },
      ...caches.map(({ key, label, cache }) => ({
        key,
        label,
        run: async () => {
          const id = pick(ids);
          const item = await cache.getOrCompute(`item:${id}`, () => read(id), { tenant: tenant.id, ttlMs: 3_600_000 });
          if (!item) throw new Error('an item is missing');
        },
      })),
    ];
    for (const clients of options.clients) {
      const { seconds, rounds, warmup } = options;
      const results = await measureSides(sides, { clients, seconds, rounds, warmup });
      const block = formatResults(clients, results);
      log(block);
      log();
    }
    for (const { key, cache } of caches) {
      const s = cache.stats();
      log(`${key}: hits ${s.hits}, misses ${s.misses}, computations ${s.computations}, errors ${s.errors}`);
    }
    log(`load average at the end: ${(await describeMachine(machine.postgres)).loadAverage.join(', ')}`);
    return caches.every(({ cache }) => cache.stats().errors === 0) ? 0 : 1;
  } finally {
    if (redis) {
      for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
        if (keys.length > 0) await redis.del(keys);
      }
      await redis.quit().catch(() => {});
    }
    await tenantry.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
