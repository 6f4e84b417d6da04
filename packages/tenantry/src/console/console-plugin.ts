import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DEFAULT_PLANS, type PlanCatalog } from '../admit/plans.ts';
import { TenantryError } from '../errors/catalog.ts';
import { PROBLEM_JSON, toProblem } from '../http/problem.ts';
import type { Tenantry } from '../tenantry.ts';
import { type ConsoleAsset, loadConsoleAssets } from './assets.ts';
import { isHtmx, requireConsoleSession } from './console-auth.ts';
import { FleetRuns } from './fleet-runs.ts';
import { type Html, html } from './html.ts';
import { CONSOLE_CSP, layout } from './layout.ts';
import { databaseRoutes } from './pages/database.ts';
import { fleetRoutes } from './pages/fleet.ts';
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
}

/** What every console page module gets. */
export interface ConsoleDeps {
  readonly tenantry: Tenantry<unknown>;
  readonly sessions: ConsoleSessionStore;
  readonly adminToken: string | undefined;
  readonly fleetRuns: FleetRuns;
  readonly plans: PlanCatalog;
}

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
 * Sends a page: HTML, the console's Content-Security-Policy, never cached (pages hold tenant
 * data and must not outlive sign-out in a back/forward cache).
 *
 * @example
 * ```ts
 * return sendPage(reply, layout({ title: 'Fleet', nav: 'fleet', session, body }));
 * ```
 */
export function sendPage(reply: FastifyReply, page: Html, status = 200): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(String(page));
}

/** The signed-in session of a console request (set by the plugin's hook before every handler). */
export function sessionOf(req: FastifyRequest): ConsoleSession {
  const session = req.consoleSession;
  if (!session) throw new TenantryError('CONSOLE_SIGN_IN_REQUIRED');
  return session;
}

/** The audit actor of a change made through the console: the session's label, never its token. */
export function consoleActor(req: FastifyRequest): { actor: string } {
  return { actor: `admin-console:${sessionOf(req).label}` };
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
    plans: options.plans ?? DEFAULT_PLANS,
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
    const problem = toProblem(error, req.id);
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
}

function wantsHtml(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return (
    accept.includes('text/html') ||
    req.headers['content-type']?.startsWith('application/x-www-form-urlencoded') === true
  );
}
