import { randomUUID } from 'node:crypto';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type { PlanCatalog } from '../admit/plans.ts';
import { type RateLimitRedisClient, type RedisErrorPolicy, TenantRateLimiter } from '../admit/rate-limit.ts';
import { rateLimitHeaders } from '../admit/rate-limit-headers.ts';
import { UsageQuotas } from '../admit/usage-quotas.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import { accessTokenAuthenticator, apiKeyAuthenticator } from '../auth/authenticators.ts';
import { TenantScopedCache } from '../cache/tenant-scoped-cache.ts';
import { consolePlugin } from '../console/console-plugin.ts';
import type { ConsoleSessionOptions } from '../console/session-store.ts';
import { ChangeFeed } from '../control/change-feed.ts';
import { ExportJobs, type ExportJobsOptions } from '../data/export-jobs.ts';
import { everyInterval } from '../effects/audit-partitions.ts';
import { TenantEventStream } from '../effects/event-stream.ts';
import { FleetEventFeed } from '../effects/fleet-event-feed.ts';
import { IdempotencyStore } from '../effects/idempotency-store.ts';
import { SocketHub, type SocketHubOptions } from '../effects/socket-hub.ts';
import { WebhookDeliverer, type WebhookDelivererOptions } from '../effects/webhook-deliverer.ts';
import { ERRORS, TenantryError } from '../errors/catalog.ts';
import { TenantCache } from '../identify/tenant-cache.ts';
import type { TenantClaim } from '../identify/tenant-claim.ts';
import type { Tenantry } from '../tenantry.ts';
import { WarmPoolRefiller } from '../tiers/warm-pool.ts';
import { cacheMetrics } from './cache-metrics.ts';
import { dbMetrics } from './db-metrics.ts';
import { idempotencyPlugin } from './idempotency.ts';
import { findUnstorableInput } from './input-guard.ts';
import { registerMetrics } from './metrics.ts';
import { type TenantryPluginOptions, tenantryPlugin } from './plugin.ts';
import { PROBLEM_JSON, problemOf, toProblem } from './problem.ts';
import { apiKeyRoutes } from './routes/api-keys.ts';
import { auditRoutes } from './routes/audit.ts';
import { authRoutes } from './routes/auth.ts';
import { dbAdminRoutes } from './routes/db-admin.ts';
import { eventRoutes } from './routes/events.ts';
import { exportRoutes } from './routes/exports.ts';
import { itemRoutes } from './routes/items.ts';
import { jobRoutes } from './routes/jobs.ts';
import { meRoutes } from './routes/me.ts';
import { tenantRoutes } from './routes/tenants.ts';
import { usageRoutes } from './routes/usage.ts';
import { userRoutes } from './routes/users.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import { securityHeaders } from './security-headers.ts';
import { registerTracing } from './tracing.ts';

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** Log as JSON with pino (default true); `false` silences request logs (tests). */
  logger?: boolean;
  /** Largest accepted request body, bytes (default 1 MiB). */
  bodyLimit?: number;
  /** Control-plane bearer token (`TENANTRY_ADMIN_TOKEN`); without it the control plane answers 401. */
  adminToken?: string;
  /** Credential checks for the data plane, in identification order. */
  authenticators?: readonly Authenticator[];
  /** Where a request may name its tenant besides its credential (default `['header']`). */
  claims?: readonly TenantClaim[];
  subdomainBase?: string;
  /** Per-tenant admission; default: a {@link TenantRateLimiter} on `redis` (in-process without it). */
  admit?: TenantryPluginOptions['admit'];
  /** Redis (node-redis client, connected, with an 'error' listener) for limits shared by every instance. */
  redis?: RateLimitRedisClient;
  /** Request rates per plan; default {@link DEFAULT_PLANS}. */
  plans?: PlanCatalog;
  /** What the rate limiter does when Redis is unreachable (default `fail-open`). */
  onRedisError?: RedisErrorPolicy;
  /** Allowed CORS origins (default: none, same-origin only). */
  corsOrigins?: readonly string[];
  /** Milliseconds a tenant lookup may be served from cache (default 5000; invalidated on change). */
  tenantCacheTtlMs?: number;
  /**
   * The tenant cache of the example application's item reads. `true`: on `redis` when given,
   * else in-process, flushed per tenant on tenant changes (what `tenantry serve` uses). One
   * you pass is used as is (give it the change feed yourself). Default: none, every read goes
   * to PostgreSQL — a cache is only coherent when every write path drops what it changes, and
   * writes made beside this server (scripts, jobs through the library) would be served stale
   * until the entry's TTL.
   */
  cache?: TenantScopedCache | boolean;
  /** Export jobs (`/v1/tenants/{id}/exports`): retention (default 24 h) and how often expired ones are swept (default 10 min). */
  exports?: ExportJobsOptions & { sweepIntervalMs?: number };
  /** Warm schemas kept waiting for new schema-tier tenants, refilled in the background (default 0: none). */
  warmSchemas?: number;
  /**
   * Webhook delivery (`/v1/webhooks`): a {@link WebhookDeliverer} subscribed to
   * `tenantry.events` (which the application starts). `allowPrivateAddresses` also lets
   * tenants register loopback, link-local and private addresses (default: refused).
   * `deliver: false` serves the routes without subscribing: one deliverer per `Tenantry`
   * instance, as two subscribed to the same dispatcher would each send every event.
   */
  webhooks?: WebhookDelivererOptions & { deliver?: boolean };
  /**
   * The tenant event sockets (`GET /v1/events`): heartbeat interval (default 30 s), bound of
   * unsent bytes per socket before it is dropped (default 1 MiB), sockets per tenant on this
   * instance (default 1000), and how long a socket may wait for its `auth` message (default 5 s).
   */
  events?: Omit<SocketHubOptions, 'recheck' | 'logger'> & { authTimeoutMs?: number };
  /**
   * Usage upkeep and quotas: tenant snapshots every `snapshotIntervalMs` (default hourly; 0:
   * none), with the metering partitions and retention; `quotaTtlMs`, how long a tenant's
   * month of requests and latest storage are cached for quota checks (default 10 s).
   */
  usage?: { snapshotIntervalMs?: number; quotaTtlMs?: number };
  /**
   * The operator console at `/console` (signed in with `adminToken`): `false` leaves it out;
   * `sessions` sets its idle and absolute session lifetimes (default 30 min and 12 h);
   * `liveViewerBuffer`, the bytes a Live viewer's socket may hold unsent before its stream is
   * cut off (default 256 KiB).
   */
  console?: false | { sessions?: ConsoleSessionOptions; liveViewerBuffer?: number };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The event sockets of this server (`GET /v1/events`). */
    eventSockets: SocketHub;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The reference server: the control plane (`/v1/tenants…`, admin token), the example
 * tenant application (`/v1/items…`), `/health`, `/health/ready`, `/metrics`
 * (Prometheus), `/openapi.json` and `/docs`; OpenTelemetry spans continue `traceparent`. Every error is RFC 9457 problem details with a stable `code` and the request
 * id; an `X-Request-ID` sent by the client is kept when well-formed and echoed back.
 *
 * @example
 * ```ts
 * const app = await createServer(tenantry, { adminToken: process.env.TENANTRY_ADMIN_TOKEN });
 * await app.listen({ port: 3000, host: '127.0.0.1' });
 * ```
 */
export async function createServer(tenantry: Tenantry<unknown>, options: ServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger:
      options.logger === false
        ? false
        : {
            level: 'info',
            redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]'],
          },
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    genReqId: (req) => {
      const sent = req.headers['x-request-id'];
      return typeof sent === 'string' && REQUEST_ID.test(sent) ? sent : randomUUID();
    },
    requestIdHeader: false,
    // Plain objects only in JSON bodies: `__proto__`/`constructor` keys are refused.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Bad percent-encoding (FST_ERR_BAD_URL) and params past maxParamLength (414): problem details too.
    frameworkErrors: (error, req, reply) => {
      const problem = toProblem(error, req.id);
      void (reply as FastifyReply).code(problem.status).type(PROBLEM_JSON).send(problem);
    },
  });
  // JSON bodies must be UTF-8 (RFC 8259 §8.1); a decoder that substitutes U+FFFD stores what nobody sent.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch {
      done(new TenantryError('INVALID_INPUT', 'the body is not valid UTF-8'), undefined);
      return;
    }
    parseJson(req, text, done);
  });
  app.addHook('preValidation', (req, _reply, done) => {
    const problem =
      findUnstorableInput(req.params, 'params') ??
      findUnstorableInput(req.query, 'querystring') ??
      findUnstorableInput(req.body, 'body');
    if (!problem) return done();
    done(
      new TenantryError('INVALID_INPUT', `${problem.path}: ${problem.message}`, {
        details: { problems: [problem] },
      }),
    );
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  // Helmet's headers (the API serves JSON; the only HTML is /docs, Swagger UI, which needs
  // its own scripts, hence no CSP), precomputed, and the request id: one callback hook.
  const headers = await securityHeaders({ contentSecurityPolicy: false });
  app.addHook('onRequest', (req, reply, done) => {
    reply.headers(headers);
    reply.header('x-request-id', req.id);
    done();
  });

  app.setErrorHandler((error, req, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const errors = error.validation.map((v) => ({
        path: [error.validationContext, v.instancePath.replace(/^\//, '').replaceAll('/', '.')]
          .filter(Boolean)
          .join('.'),
        message: v.message ?? 'invalid',
      }));
      const problem = problemOf('INVALID_INPUT', {
        detail: `${ERRORS.INVALID_INPUT.message}: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
        requestId: req.id,
        errors,
      });
      return reply.code(400).type(PROBLEM_JSON).send(problem);
    }
    const problem = toProblem(error, req.id);
    if (problem.status >= 500) req.log.error({ err: error }, 'request failed');
    const retryAfter = error instanceof TenantryError ? error.details?.retryAfterSeconds : undefined;
    if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
    if (problem.status === 429 || problem.status === 503) {
      if (!reply.getHeader('retry-after')) reply.header('retry-after', '1');
    }
    return reply.code(problem.status).type(PROBLEM_JSON).send(problem);
  });

  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .type(PROBLEM_JSON)
      .send(
        problemOf('NOT_FOUND', { detail: `No route for ${req.method} ${req.url.split('?')[0]}`, requestId: req.id }),
      );
  });

  // Without allowed origins no CORS header is ever sent and a preflight is a 404, exactly
  // what @fastify/cors does with `origin: false`, but without its hook on every request.
  if (options.corsOrigins?.length) await app.register(cors, { origin: [...options.corsOrigins] });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Tenantry', version: '0.1.0', description: 'Tenant control plane and example tenant application' },
      components: {
        securitySchemes: {
          adminToken: { type: 'http', scheme: 'bearer', description: 'TENANTRY_ADMIN_TOKEN' },
          tenantCredential: { type: 'http', scheme: 'bearer', description: 'API key or access token' },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  const limiter =
    options.admit === undefined
      ? new TenantRateLimiter({
          ...(options.redis ? { redis: options.redis } : {}),
          ...(options.plans ? { plans: options.plans } : {}),
          onRedisError: options.onRedisError ?? 'fail-open',
          logger: app.log,
        })
      : undefined;
  const rateLimit: NonNullable<TenantryPluginOptions['admit']> =
    options.admit ??
    (async (tenant) => {
      const decision = await (limiter as TenantRateLimiter).consume(tenant.id, tenant.plan);
      return { allowed: decision.allowed, headers: rateLimitHeaders(decision) };
    });
  // Quotas read from usage (requests per month, storage) come before the rate limit, so a
  // refused request spends none of the minute's budget.
  const quotas = new UsageQuotas(tenantry.usage, {
    ...(options.plans ? { plans: options.plans } : {}),
    ...(options.usage?.quotaTtlMs !== undefined ? { ttlMs: options.usage.quotaTtlMs } : {}),
  });
  const admit: TenantryPluginOptions['admit'] = async (tenant, request) => {
    await quotas.check(tenant, request.method);
    return rateLimit(tenant, request);
  };

  const feed = new ChangeFeed(tenantry.config.databaseUrl, { logger: app.log });
  const tenants = new TenantCache(tenantry.tenants, { feed, ttlMs: options.tenantCacheTtlMs ?? 5000 });
  await tenantry.apiKeys.start(feed);
  app.addHook('onClose', async () => feed.close());
  const cache =
    options.cache === true
      ? new TenantScopedCache({ redis: options.redis, feed, logger: app.log })
      : options.cache || undefined;
  if (cache && options.cache === true) app.addHook('onClose', () => cache.close());
  if (cache) {
    // A hard delete erases the tenant's cache keys too, and verifies none is left.
    const removeHook = tenantry.addErasureHook({
      name: 'cache',
      erase: (tenantId) => cache.eraseTenant(tenantId),
      remaining: (tenantId) => cache.remainingKeys(tenantId),
    });
    app.addHook('onClose', async () => removeHook());
  }
  // The audit log's partitions exist ahead of need (now, then checked every hour); expired
  // idempotency keys go hourly too.
  const idempotency = new IdempotencyStore(tenantry.adminPool);
  await tenantry.audit.partitions.ensure();
  const stopUpkeep = everyInterval(
    async () => {
      await tenantry.audit.partitions.ensure();
      await idempotency.purgeExpired();
    },
    { logger: tenantry.config.logger, name: 'audit partitions and idempotency keys upkeep' },
  );
  app.addHook('onClose', async () => stopUpkeep());
  // Tenant snapshots (storage for quotas and trends), metering partitions and retention.
  const snapshotMs = options.usage?.snapshotIntervalMs ?? 3_600_000;
  if (snapshotMs > 0) {
    const stopSnapshots = everyInterval(
      async () => {
        await tenantry.usage.upkeep();
        await tenantry.usage.snapshot();
      },
      { intervalMs: snapshotMs, logger: tenantry.config.logger, name: 'tenant snapshots and usage upkeep' },
    );
    app.addHook('onClose', async () => stopSnapshots());
  }
  if (options.warmSchemas) {
    const refiller = new WarmPoolRefiller(tenantry.provisioner, {
      size: options.warmSchemas,
      logger: tenantry.config.logger,
    });
    refiller.start();
    app.addHook('onClose', () => refiller.stop());
  }

  await app.register(tenantryPlugin, {
    tenantry,
    tenants,
    authenticators: options.authenticators ?? [
      apiKeyAuthenticator(tenantry.apiKeys),
      accessTokenAuthenticator(tenantry.auth),
    ],
    ...(options.claims ? { claims: options.claims } : {}),
    ...(options.subdomainBase ? { subdomainBase: options.subdomainBase } : {}),
    admit,
    ...(options.adminToken ? { adminToken: options.adminToken } : {}),
    usage: tenantry.usage.meter,
  });
  await app.register(idempotencyPlugin, { store: idempotency });

  registerTracing(app);
  registerMetrics(app, tenantry, [
    ...(limiter ? [limiter.registry] : []),
    ...(cache ? [cacheMetrics(cache)] : []),
    dbMetrics(tenantry),
  ]);

  app.get('/health', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/health/ready', { schema: { hide: true } }, async (req, reply) => {
    const { database } = await tenantry.health();
    if (database) return { status: 'ready', checks: { database: 'up' } };
    return reply
      .code(503)
      .header('retry-after', '5')
      .type(PROBLEM_JSON)
      .send({
        ...problemOf('NOT_READY', { detail: 'PostgreSQL is unreachable', requestId: req.id }),
        checks: { database: 'down' },
      });
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(tenantRoutes, { tenantry });
  const exportJobs = new ExportJobs(tenantry, {
    onError: (error) => app.log.error({ err: error }, 'export job'),
    ...options.exports,
  });
  const stopSweeping = exportJobs.startSweeping(options.exports?.sweepIntervalMs);
  app.addHook('onClose', async () => {
    stopSweeping();
    await exportJobs.close();
  });
  await app.register(exportRoutes, { tenantry, jobs: exportJobs });
  await app.register(apiKeyRoutes, { tenantry });
  await app.register(userRoutes, { tenantry, users: tenantry.users });
  await app.register(authRoutes, { auth: tenantry.auth });
  await app.register(meRoutes);
  await app.register(itemRoutes, cache ? { cache } : {});
  await app.register(auditRoutes, { tenantry });
  // Replays (POST …/replay) go through a deliverer even when this server does not subscribe one.
  const deliverer = new WebhookDeliverer(tenantry.webhooks, { logger: tenantry.config.logger, ...options.webhooks });
  if (options.webhooks?.deliver !== false) deliverer.subscribe(tenantry.events);
  app.addHook('onClose', async () => deliverer.close());
  await app.register(usageRoutes, { tenantry });
  await app.register(webhookRoutes, {
    webhooks: tenantry.webhooks,
    deliverer,
    allowPrivateAddresses: options.webhooks?.allowPrivateAddresses ?? false,
  });
  await app.register(dbAdminRoutes, { tenantry });
  // The events feed: committed outbox events, per tenant, to this server's sockets.
  await app.register(websocket, { options: { maxPayload: 16 * 1024 } });
  const stream = new TenantEventStream({ pool: tenantry.adminPool, feed, logger: app.log });
  await stream.start();
  const heartbeatMs = options.events?.heartbeatMs ?? 30_000;
  const hub = new SocketHub(stream, { ...options.events, heartbeatMs, logger: app.log });
  app.decorate('eventSockets', hub);
  app.addHook('onClose', async () => stream.close());
  await app.register(eventRoutes, {
    hub,
    authenticators: options.authenticators ?? [
      apiKeyAuthenticator(tenantry.apiKeys),
      accessTokenAuthenticator(tenantry.auth),
    ],
    tenants,
    registry: tenantry.tenants,
    feed,
    claims: options.claims,
    subdomainBase: options.subdomainBase,
    authTimeoutMs: options.events?.authTimeoutMs,
    heartbeatMs,
  });
  await app.register(jobRoutes, { tenantry });
  if (options.console !== false) {
    await app.register(consolePlugin, {
      tenantry,
      adminToken: options.adminToken,
      toProblem,
      exports: exportJobs,
      // The operator's feed of every tenant: its own reader, sharing only the LISTEN connection.
      events: new FleetEventFeed({ pool: tenantry.adminPool, feed, logger: app.log }),
      ...(options.plans ? { plans: options.plans } : {}),
      ...(options.console?.sessions ? { sessions: options.console.sessions } : {}),
      ...(options.console?.liveViewerBuffer ? { liveViewerBuffer: options.console.liveViewerBuffer } : {}),
    });
  }
  return app;
}
