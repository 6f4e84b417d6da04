/**
 * A server child of `bench/http.ts`: the Tenantry reference server or the bare baseline,
 * on a free loopback port, driven over IPC (see `ipc.ts`). Not meant to be run by hand.
 */
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import { definePlans } from '../../packages/tenantry/src/admit/plans.ts';
import { TenantRateLimiter } from '../../packages/tenantry/src/admit/rate-limit.ts';
import { itemsMigrations } from '../../packages/tenantry/src/example/items.ts';
import { createServer } from '../../packages/tenantry/src/http/server.ts';
import { TenantCache } from '../../packages/tenantry/src/identify/tenant-cache.ts';
import { Tenantry } from '../../packages/tenantry/src/index.ts';
import { createBareServer } from './bare-server.ts';
import type { ChildConfig, ChildReady, ChildUsage, Envelope, Reply } from './ipc.ts';
import { BARE_PROBES, Meter, meterQueries, meterWire, probe, TENANTRY_PROBES, timeStages } from './probes.ts';

const meter = new Meter();
meterWire(meter);
let closing: Promise<void> | undefined;
let closeServer: () => Promise<void> = async () => {};
/** Closes the server (and Tenantry's pools) once, however often asked. */
const closeAll = () => {
  closing ??= closeServer();
  return closing;
};

async function startTenantry(config: ChildConfig): Promise<ChildReady> {
  meterQueries(meter, (user) => (user === config.roles.runtime ? 'runtime pool' : 'admin pool'));
  TenantCache.prototype.get = probe(meter, TENANTRY_PROBES.tenant, TenantCache.prototype.get);
  TenantRateLimiter.prototype.consume = probe(meter, TENANTRY_PROBES.admit, TenantRateLimiter.prototype.consume);
  const tenantry = await Tenantry.connect({
    databaseUrl: config.databaseUrl,
    secret: config.secret,
    roles: config.roles,
    migrations: itemsMigrations,
  });
  tenantry.apiKeys.verify = probe(meter, TENANTRY_PROBES.verify, tenantry.apiKeys.verify);
  const pool = tenantry.runtimePool as unknown as { connect: (...a: unknown[]) => Promise<unknown> };
  pool.connect = probe(meter, TENANTRY_PROBES.connect, pool.connect);
  // The plugin runs tenant transactions as `transaction(context, fn)`.
  const transaction = tenantry.transaction as (ref: unknown, fn: (tx: unknown) => Promise<unknown>) => Promise<unknown>;
  const timedTransaction = probe(meter, TENANTRY_PROBES.transaction, transaction);
  (tenantry as unknown as { transaction: typeof transaction }).transaction = function (
    this: unknown,
    ref: unknown,
    fn: (tx: unknown) => Promise<unknown>,
  ) {
    return timedTransaction.call(this, ref, meter.on ? probe(meter, TENANTRY_PROBES.work, fn) : fn);
  };

  const server = await createServer(tenantry, {
    logger: false,
    plans: definePlans({ bench: config.planLimits }),
    // The item cache would answer most reads without PostgreSQL: this bench measures the
    // tenant transaction against the baseline's query (bench/cache.ts measures the cache).
    cache: false,
  });
  timeStages(server, meter);
  const closeVariant = config.matrix
    ? (await import('./variants.ts')).addAutocommitRoute(server, {
        databaseUrl: config.databaseUrl,
        poolMax: tenantry.config.pool.max,
        idleTimeoutMs: tenantry.config.pool.idleTimeoutMs,
      })
    : async () => {};
  closeServer = async () => {
    await server.close();
    await closeVariant();
    await tenantry.close();
  };
  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  return {
    url,
    poolMax: tenantry.config.pool.max,
    idleTimeoutMs: tenantry.config.pool.idleTimeoutMs,
    pid: process.pid,
  };
}

async function startBare(config: ChildConfig): Promise<ChildReady> {
  meterQueries(meter, () => 'bare pool');
  const poolMax = config.poolMax ?? 10;
  const idleTimeoutMs = config.idleTimeoutMs ?? 30_000;
  const { app: server, pool } = createBareServer({
    databaseUrl: config.databaseUrl,
    poolMax,
    idleTimeoutMs,
    prepared: config.barePrepared === true,
  });
  const timed = pool as unknown as { query: (...a: unknown[]) => Promise<unknown> };
  timed.query = probe(meter, BARE_PROBES.query, timed.query);
  timeStages(server, meter);
  // Loaded only for --matrix, so the baseline process never even imports Tenantry otherwise.
  const closeVariant = config.matrix
    ? await (await import('./variants.ts')).addTransactionRoute(server, {
        databaseUrl: config.databaseUrl,
        secret: config.secret,
        roles: config.roles,
        tenants: config.tenants ?? [],
      })
    : async () => {};
  closeServer = async () => {
    await server.close();
    await closeVariant();
  };
  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  return { url, poolMax, idleTimeoutMs, pid: process.pid };
}

function usage(): ChildUsage {
  const cpu = process.cpuUsage();
  const elu = performance.eventLoopUtilization();
  return { userUs: cpu.user, systemUs: cpu.system, eluIdleMs: elu.idle, eluActiveMs: elu.active };
}

let profiler: Session | undefined;

/** Starts V8's sampling profiler in this process (no restart, so no start-up in the profile). */
async function startProfile(intervalUs: number): Promise<void> {
  profiler = new Session();
  profiler.connect();
  await profiler.post('Profiler.enable');
  await profiler.post('Profiler.setSamplingInterval', { interval: intervalUs });
  await profiler.post('Profiler.start');
}

async function stopProfile(path: string): Promise<string> {
  if (!profiler) throw new Error('no profile running');
  const { profile } = await profiler.post('Profiler.stop');
  profiler.disconnect();
  profiler = undefined;
  await writeFile(path, JSON.stringify(profile));
  return path;
}

async function handle(message: Envelope): Promise<unknown> {
  switch (message.type) {
    case 'start':
      return message.config.side === 'tenantry' ? startTenantry(message.config) : startBare(message.config);
    case 'usage':
      return usage();
    case 'meter-start':
      meter.start();
      return null;
    case 'meter-stop':
      return meter.stop();
    case 'profile-start':
      return startProfile(message.intervalUs).then(() => null);
    case 'profile-stop':
      return stopProfile(message.path);
    case 'close':
      await closeAll();
      return null;
  }
}

process.on('message', (message: Envelope) => {
  handle(message).then(
    (value) => {
      process.send?.({ id: message.id, ok: true, value } satisfies Reply, () => {
        // A normal exit, so that --cpu-prof writes its profile.
        if (message.type === 'close') process.exit(0);
      });
    },
    (error: unknown) => {
      process.send?.({ id: message.id, ok: false, error: (error as Error).stack ?? String(error) } satisfies Reply);
    },
  );
});
process.on('disconnect', () => {
  // The parent is gone: close what is open and leave.
  void closeAll().finally(() => process.exit(0));
});
