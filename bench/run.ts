/**
 * `npm run bench -- <name> [options]`: runs one benchmark of `bench/`.
 *
 *   npm run bench -- core --quick
 *   npm run bench -- core --tenants 1000 --rows 1000000 --seconds 10 --clients 1,16
 *   npm run bench -- tiers --tenants 1000
 *   npm run bench -- fleet --tenants 10000
 *   npm run bench -- sql --clients 1,8   (pgbench; server cost of the context)
 *   npm run bench -- cache --quick       (a cache hit against the point lookup it saves)
 *   npm run bench -- data --items 200000   (export, import, erasure against COPY TO STDOUT)
 *   npm run bench -- audit --quick       (a tenant write with and without its audit entry)
 *   npm run bench -- maintenance --quick (a tenant write during REINDEX CONCURRENTLY and plain REINDEX)
 *   npm run bench -- events --quick      (WebSocket fan-out of committed events, against a bare ws server)
 *   npm run bench -- outbox --quick      (events/s to an in-process subscriber and to a local webhook receiver)
 *   npm run bench -- jobs --quick        (a burst from one tenant and a trickle from 50: fair against FIFO)
 *   npm run bench -- orm --quick         (a point lookup through tenantry/prisma and tenantry/drizzle)
 *   npm run bench -- console             (the console's tenant list at 100,000 tenants, against the REST list)
 *   npm run bench -- console-live        (tenant writes with and without console Live viewers, and their delay)
 *   npm run bench -- citus               (the pool tier on a Citus cluster; needs CITUS_URL and DATABASE_URL)
 *   npm run bench -- control-plane       (control-plane operations at 1,000 against 100,000 pool / 20,000 schema tenants)
 *   npm run bench -- usage-flush         (the usage flush with and without the running window totals of usage.top)
 */
const BENCHMARKS: Record<string, () => Promise<{ main(argv: readonly string[]): Promise<number> }>> = {
  core: () => import('./core.ts'),
  'api-keys': () => import('./api-keys.ts'),
  http: () => import('./http.ts'),
  tiers: () => import('./tiers.ts'),
  'schema-affinity': () => import('./schema-affinity.ts'),
  fleet: () => import('./fleet.ts'),
  provisioning: () => import('./provisioning.ts'),
  sql: () => import('./sql.ts'),
  cache: () => import('./cache.ts'),
  data: () => import('./data.ts'),
  audit: () => import('./audit.ts'),
  maintenance: () => import('./maintenance.ts'),
  events: () => import('./events.ts'),
  outbox: () => import('./outbox.ts'),
  jobs: () => import('./jobs.ts'),
  orm: () => import('./orm.ts'),
  console: () => import('./console.ts'),
  'console-live': () => import('./console-live.ts'),
  citus: () => import('./citus.ts'),
  'control-plane': () => import('./control-plane.ts'),
  'usage-flush': () => import('./usage-flush.ts'),
};

// `npm run bench -- --quick` means the core benchmark.
const args = process.argv.slice(2);
const [name, ...rest] = args[0] === undefined || args[0].startsWith('-') ? ['core', ...args] : args;
const load = BENCHMARKS[name as string];
if (!load) {
  process.stderr.write(`unknown benchmark ${JSON.stringify(name)}; available: ${Object.keys(BENCHMARKS).join(', ')}\n`);
  process.exitCode = 2;
} else {
  process.exitCode = await (await load()).main(rest);
}
