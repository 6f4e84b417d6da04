import type { Command } from 'commander';
import { TenantryError } from '../../errors/catalog.ts';
import { itemsMigrations } from '../../example/items.ts';
import { connectFromEnvironment, loadMigrations, note } from '../run.ts';
import { defineJobs, workerPlans } from './jobs.ts';

/** What `tenantry serve` needs beyond the core: the optional peer dependencies of `tenantry/server`. */
const SERVER_PEERS =
  'fastify fastify-plugin fastify-type-provider-zod @fastify/cors @fastify/helmet @fastify/swagger @fastify/swagger-ui @fastify/websocket ws prom-client @opentelemetry/api';

/**
 * Loads an optional peer dependency's module (the reference server, node-redis); when it is
 * not installed, says which packages to install instead of printing a resolution error.
 */
async function loadOptional<T>(load: () => Promise<T>, packages: string): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new TenantryError('CONFIG_INVALID', `this command needs optional packages: npm install ${packages}`, {
      cause: error,
    });
  }
}

/**
 * A node-redis client for shared rate limits, when `REDIS_URL` is set. It is connected
 * in the background: the server starts even while Redis is down, and the limiter applies
 * its declared policy until Redis answers.
 */
async function connectRedis(url: string | undefined) {
  if (!url) {
    note('REDIS_URL is unset: rate limits are kept in this process only');
    return undefined;
  }
  const { createClient } = await loadOptional(() => import('redis'), 'redis');
  const client = createClient({
    url,
    socket: { connectTimeout: 2000, reconnectStrategy: (n) => Math.min(n * 200, 2000) },
  });
  // Without an 'error' listener a lost connection would crash the process.
  client.on('error', () => {});
  client.connect().catch(() => note('Redis is unreachable: rate limits follow the declared policy until it answers'));
  return client;
}

/**
 * Starts the OpenTelemetry Node SDK when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
 * `OTEL_TRACES_EXPORTER`) is set, if the application installed `@opentelemetry/sdk-node`;
 * it reads the standard `OTEL_*` variables itself. Tenantry depends only on the API.
 */
async function startTelemetry(): Promise<{ shutdown(): Promise<void> } | undefined> {
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT && !process.env.OTEL_TRACES_EXPORTER) return undefined;
  const specifier = '@opentelemetry/sdk-node';
  try {
    const { NodeSDK } = (await import(specifier)) as {
      NodeSDK: new () => { start(): void; shutdown(): Promise<void> };
    };
    const sdk = new NodeSDK();
    sdk.start();
    note('OpenTelemetry SDK started from the OTEL_* environment');
    return sdk;
  } catch {
    note('OTEL_* is set but @opentelemetry/sdk-node is not installed: traces stay off (npm i @opentelemetry/sdk-node)');
    return undefined;
  }
}

/** `--workers` and `--jobs` of `tenantry serve`: its background job workers. */
interface JobOptions {
  workers: string;
  jobs?: string;
}

/** `tenantry serve`: roles, control-plane migrations, then the HTTP server until SIGINT/SIGTERM. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the reference server (embedded PostgreSQL when DATABASE_URL is unset)')
    .option('-p, --port <port>', 'port to listen on (env PORT)', process.env.PORT ?? '3000')
    .option('--host <host>', 'interface to bind', process.env.HOST ?? '127.0.0.1')
    .option('--migrations <module>', 'module exporting the tenant-table migrations to apply')
    .option(
      '--warm-schemas <n>',
      'warm schemas kept ready for new schema-tier tenants (env TENANTRY_WARM_SCHEMAS)',
      process.env.TENANTRY_WARM_SCHEMAS ?? '0',
    )
    .option(
      '--workers <n>',
      'background jobs run at once by this server, 0 for none (env TENANTRY_WORKERS)',
      process.env.TENANTRY_WORKERS ?? '2',
    )
    .option('--jobs <module>', 'module exporting defineJobs(jobs): the application’s job types')
    .action(async (opts: { port: string; host: string; migrations?: string; warmSchemas: string } & JobOptions) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${opts.port}`);
      const warmSchemas = Number(opts.warmSchemas);
      if (!Number.isInteger(warmSchemas) || warmSchemas < 0 || warmSchemas > 10_000) {
        throw new Error(`invalid --warm-schemas ${opts.warmSchemas}: an integer from 0 to 10000`);
      }
      const workers = Number(opts.workers);
      if (!Number.isInteger(workers) || workers < 0 || workers > 1000) {
        throw new Error(`invalid --workers ${opts.workers}: an integer from 0 to 1000`);
      }
      const { createServer } = await loadOptional(() => import('../../http/server.ts'), SERVER_PEERS);
      const telemetry = await startTelemetry();
      // The example application's tables, then the caller's own.
      const { tenantry, env } = await connectFromEnvironment([
        ...itemsMigrations,
        ...(await loadMigrations(opts.migrations)),
      ]);
      await tenantry.migrate();
      const adminToken = process.env.TENANTRY_ADMIN_TOKEN;
      if (!adminToken) note('TENANTRY_ADMIN_TOKEN is unset: the control plane (/v1/tenants…) answers 401');
      const redis = await connectRedis(process.env.REDIS_URL);
      const app = await createServer(tenantry, {
        ...(adminToken ? { adminToken } : {}),
        ...(redis ? { redis } : {}),
        onRedisError: process.env.TENANTRY_RATE_LIMIT_ON_REDIS_ERROR === 'fail-closed' ? 'fail-closed' : 'fail-open',
        // The example app's item reads go through the tenant cache (Redis when REDIS_URL is set).
        cache: true,
        warmSchemas,
      });
      const address = await app.listen({ port, host: opts.host });
      // The outbox's events reach their subscribers (the webhook deliverer) from here on.
      await tenantry.events.start();
      // Background jobs: the example's types and the application's, run fairly across tenants.
      await defineJobs(tenantry.jobs, opts.jobs);
      if (workers > 0) {
        const plans = workerPlans();
        await tenantry.jobs.worker({ concurrency: workers, ...(plans ? { plans } : {}) }).start();
      }
      process.stdout.write(`Tenantry is serving on ${address} (try ${address}/health)\n`);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        note(`${signal}: shutting down`);
        await app.close();
        await redis?.quit().catch(() => {});
        await telemetry?.shutdown().catch(() => {});
        await tenantry.close();
        await env.embedded?.stop();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
    });
}
