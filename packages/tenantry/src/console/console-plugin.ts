import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DEFAULT_PLANS, type PlanCatalog } from '../admit/plans.ts';
import type { ExportJobs } from '../data/export-jobs.ts';
import type { FleetEventFeed } from '../effects/fleet-event-feed.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { Tenantry } from '../tenantry.ts';
import { type ConsoleAsset, loadConsoleAssets } from './assets.ts';
import { isHtmx, requireConsoleSession } from './console-auth.ts';
import { FleetRuns } from './fleet-runs.ts';
import { html } from './html.ts';
import { CONSOLE_CSP, layout } from './layout.ts';
import { MaintenanceRuns } from './maintenance-runs.ts';
import { type ConsoleDeps, sendPage } from './page.ts';
import { databaseRoutes } from './pages/database.ts';
import { exportRoutes } from './pages/exports.ts';
import { fleetRoutes } from './pages/fleet.ts';
import { LIVE_VIEWER_BUFFER, liveRoutes } from './pages/live.ts';
import { signInRoutes } from './pages/sign-in.ts';
import { tenantDetailRoutes } from './pages/tenant-detail.ts';
import { tenantListRoutes } from './pages/tenants.ts';
import { type ConsoleSession, type ConsoleSessionOptions, ConsoleSessionStore } from './session-store.ts';

/** Options of {@link consolePlugin}. */
export interface ConsoleOptions {
  tenantry: Tenantry<unknown>;
  /** The admin token (`TENANTRY_ADMIN_TOKEN`) that signs in; without one the console stays closed. */
  adminToken?: string | undefined;
  /** Session lifetimes (idle 30 min, absolute 12 h by default). */
  sessions?: ConsoleSessionOptions;
  /** The plans a new tenant can be given (the server's; default {@link DEFAULT_PLANS}). */
  plans?: PlanCatalog | undefined;
  /**
   * How an error becomes problem details (the server's own converter, so codes, statuses and
   * titles are the API's); the console renders them as a page, or as JSON to non-browsers.
   */
  toProblem: (error: unknown, requestId: string) => ConsoleProblem;
  /** The server's export jobs: the tenant page then offers an export and its download. */
  exports?: ExportJobs | undefined;
  /** The server's feed of every tenant's events: the Live page shows it, whole or for one tenant. */
  events?: FleetEventFeed | undefined;
  /** Bytes a Live viewer's socket may hold unsent before its stream is cut off (default {@link LIVE_VIEWER_BUFFER}). */
  liveViewerBuffer?: number | undefined;
}

/** The fields of RFC 9457 problem details the console shows. */
export interface ConsoleProblem {
  status: number;
  title: string;
  detail?: string;
  code: string;
}

const PROBLEM_JSON = 'application/problem+json';

declare module 'fastify' {
  interface FastifyRequest {
    /** The signed-in console session (console routes only). */
    consoleSession: ConsoleSession | undefined;
  }
  interface FastifyContextConfig {
    /** A console route that needs no session (sign-in, static assets). */
    consolePublic?: boolean;
  }
}

/**
 * The operator console (`/console`), a Fastify plugin the reference server registers:
 * server-rendered HTML with htmx for partial updates and uPlot for charts, all served from
 * this origin (no CDN, works offline). Sign-in with the admin token starts a session (an
 * `HttpOnly`, `SameSite=Strict` cookie); every change needs the session's CSRF token; the
 * Content-Security-Policy allows no inline script. Pages call the same services as the REST
 * routes, in-process. See docs/console.md.
 *
 * @example
 * ```ts
 * await app.register(consolePlugin, { tenantry, adminToken: process.env.TENANTRY_ADMIN_TOKEN });
 * ```
 */
export async function consolePlugin(app: FastifyInstance, options: ConsoleOptions): Promise<void> {
  const assets = await loadConsoleAssets();
  const deps: ConsoleDeps = {
    tenantry: options.tenantry,
    sessions: new ConsoleSessionStore(options.tenantry.adminPool, options.sessions),
    adminToken: options.adminToken,
    fleetRuns: new FleetRuns(),
    maintenanceRuns: new MaintenanceRuns(),
    plans: options.plans ?? DEFAULT_PLANS,
    exports: options.exports,
  };
  app.decorateRequest('consoleSession', undefined);

  // Forms post urlencoded; only inside the console (the API stays JSON-only).
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 64 * 1024 },
    (_req, body, done) => {
      const fields: Record<string, string> = {};
      for (const [name, value] of new URLSearchParams(body as string)) fields[name] = value;
      done(null, fields);
    },
  );

  app.addHook('onRequest', (_req, reply, done) => {
    reply.header('content-security-policy', CONSOLE_CSP);
    reply.header('referrer-policy', 'same-origin');
    done();
  });
  app.addHook('preHandler', async (req) => {
    if (req.routeOptions.config.consolePublic) return;
    req.consoleSession = await requireConsoleSession(req, deps.sessions);
  });

  app.setErrorHandler((error, req, reply) => {
    const problem = options.toProblem(error, req.id);
    if (problem.status >= 500) req.log.error({ err: error }, 'console request failed');
    if (problem.code === 'CONSOLE_SIGN_IN_REQUIRED' && req.method === 'GET') {
      if (isHtmx(req)) return reply.header('hx-redirect', '/console/sign-in').code(401).send();
      if (wantsHtml(req)) return reply.code(303).header('location', '/console/sign-in').send();
    }
    if (!wantsHtml(req) || isHtmx(req)) return reply.code(problem.status).type(PROBLEM_JSON).send(problem);
    const body = html`<h1>${problem.title}</h1>
<div class="panel"><p>${problem.detail ?? problem.title}</p>
<p class="muted">Code <code>${problem.code}</code>, request <code>${req.id}</code>.</p>
<p><a href="/console/tenants">Back to the console</a></p></div>`;
    return sendPage(reply, layout({ title: problem.title, session: req.consoleSession, body }), problem.status);
  });

  app.get('/console', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/tenants', 303));
  app.get<{ Params: { name: string } }>(
    '/console/assets/:name',
    { schema: { hide: true }, config: { consolePublic: true } },
    async (req, reply) => {
      const asset: ConsoleAsset | undefined = assets.get(req.params.name);
      if (!asset) throw new TenantryError('NOT_FOUND', 'no such console asset');
      reply.header('etag', asset.etag).header('cache-control', 'no-cache');
      if (req.headers['if-none-match'] === asset.etag) return reply.code(304).send();
      return reply.type(asset.type).send(asset.body);
    },
  );
  await signInRoutes(app, deps);
  await tenantListRoutes(app, deps);
  await tenantDetailRoutes(app, deps);
  await fleetRoutes(app, deps);
  await databaseRoutes(app, deps);
  if (deps.exports) await exportRoutes(app, deps, deps.exports);
  if (options.events) await liveRoutes(app, deps, options.events, options.liveViewerBuffer ?? LIVE_VIEWER_BUFFER);
}

function wantsHtml(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return (
    accept.includes('text/html') ||
    req.headers['content-type']?.startsWith('application/x-www-form-urlencoded') === true
  );
}
