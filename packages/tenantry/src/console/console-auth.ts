import type { FastifyReply, FastifyRequest } from 'fastify';
import { TenantryError } from '../errors/catalog.ts';
import { type ConsoleSession, type ConsoleSessionStore, sameToken } from './session-store.ts';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'tenantry_console';

/**
 * The session cookie: `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
 * page sends it), `Path=/console` (the API never sees it), `Secure` when the request came over
 * TLS (directly or through a proxy Fastify trusts).
 *
 * @example
 * ```ts
 * reply.header('set-cookie', sessionCookie(req, token, 1800));
 * ```
 */
export function sessionCookie(req: FastifyRequest, value: string, maxAgeSeconds: number): string {
  const secure = req.protocol === 'https' ? '; Secure' : '';
  return `${SESSION_COOKIE}=${value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure}`;
}

/** The session token the request's cookie carries, if any. */
export function presentedSession(req: FastifyRequest): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === SESSION_COOKIE) return rest.join('=');
  }
  return undefined;
}

/**
 * Refuses a state-changing request that another site could have made: an `Origin` other
 * than this server's, or `Sec-Fetch-Site: cross-site`. Browsers send one or both on every
 * `POST`; a client that sends neither (a script) still needs the session and the CSRF token.
 */
export function requireSameOrigin(req: FastifyRequest): void {
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') throw new TenantryError('CONSOLE_CSRF', 'cross-site request');
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `${req.protocol}://${req.host}`) {
    throw new TenantryError('CONSOLE_CSRF', 'the Origin is not this server');
  }
}

/**
 * The session of a console request, checked: a live session (else `CONSOLE_SIGN_IN_REQUIRED`)
 * and, for anything but `GET`/`HEAD`, the same origin and the session's CSRF token in the
 * `_csrf` form field or the `X-CSRF-Token` header (else `CONSOLE_CSRF`). Bearer tokens, API
 * keys and tenant user tokens are not looked at: only the cookie opens the console.
 *
 * @example
 * ```ts
 * const session = await requireConsoleSession(req, sessions);
 * ```
 */
export async function requireConsoleSession(
  req: FastifyRequest,
  sessions: ConsoleSessionStore,
): Promise<ConsoleSession> {
  const session = await sessions.find(presentedSession(req));
  if (!session) throw new TenantryError('CONSOLE_SIGN_IN_REQUIRED');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    requireSameOrigin(req);
    const body = req.body as Record<string, unknown> | undefined;
    const presented = req.headers['x-csrf-token'] ?? body?._csrf;
    if (!sameToken(presented, session.csrfToken)) {
      throw new TenantryError('CONSOLE_CSRF', 'the CSRF token is missing or not this session’s');
    }
  }
  return session;
}

/** Whether the request is htmx's (it swaps a fragment, so redirects go through `HX-Redirect`). */
export function isHtmx(req: FastifyRequest): boolean {
  return req.headers['hx-request'] === 'true';
}

/**
 * Sends the browser to `location` after a form post: `303 See Other` (the next request is a
 * `GET`), or `HX-Redirect` for htmx.
 */
export function redirect(req: FastifyRequest, reply: FastifyReply, location: string): FastifyReply {
  if (isHtmx(req)) return reply.header('hx-redirect', location).code(204).send();
  return reply.code(303).header('location', location).send();
}
