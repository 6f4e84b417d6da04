import type { FastifyReply, FastifyRequest } from 'fastify';
import type { PlanCatalog } from '../admit/plans.ts';
import type { ExportJobs } from '../data/export-jobs.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { Tenantry } from '../tenantry.ts';
import type { FleetRuns } from './fleet-runs.ts';
import type { Html } from './html.ts';
import type { MaintenanceRuns } from './maintenance-runs.ts';
import type { ConsoleSession, ConsoleSessionStore } from './session-store.ts';

/** What every console page module gets. */
export interface ConsoleDeps {
  readonly tenantry: Tenantry<unknown>;
  readonly sessions: ConsoleSessionStore;
  readonly adminToken: string | undefined;
  readonly fleetRuns: FleetRuns;
  /** The `ANALYZE` / `VACUUM` runs started from the database page. */
  readonly maintenanceRuns: MaintenanceRuns;
  readonly plans: PlanCatalog;
  /** The server's export jobs (the tenant page's export panel); absent: no panel. */
  readonly exports: ExportJobs | undefined;
}

/**
 * Sends a page: HTML, never cached (pages hold tenant
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
