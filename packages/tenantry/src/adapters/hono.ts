/**
 * `tenantry/hono`: Hono 4 middleware that walks steps 1–4 of the request path
 * (authenticate, identify, admit, context) with the same core as the Fastify plugin, and
 * `onError` / `notFound` handlers that answer with problem details.
 *
 * @packageDocumentation
 */

import type { Context, ErrorHandler, MiddlewareHandler, NotFoundHandler } from 'hono';
import type { Principal } from '../auth/permissions.ts';
import { withTenant } from '../context/tenant-context.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { PROBLEM_JSON, problemOf, toProblem } from '../http/problem.ts';
import { requestIdOf } from '../http/request-id.ts';
import {
  admitTenantRequest,
  type TenantRequest,
  type TenantRequestOptions,
  type TenantRouteRules,
} from '../http/tenant-request.ts';

export { accessTokenAuthenticator, apiKeyAuthenticator } from '../auth/authenticators.ts';
export { ChangeFeed } from '../control/change-feed.ts';
export type { TenantRequestOptions, TenantRouteRules } from '../http/tenant-request.ts';
export { TenantCache } from '../identify/tenant-cache.ts';

/** The variables the middleware sets on an admitted request: `c.get('tenant')`, `c.get('principal')`. */
export interface TenantryVariables {
  tenant: TenantRecord;
  principal: Principal;
  requestId: string;
}

/** The Hono environment of tenant routes (`new Hono<TenantryEnv>()`). */
export interface TenantryEnv {
  Variables: TenantryVariables;
}

/** Options of {@link tenantryHono}: steps 1–3 as every adapter takes them. */
export type TenantryHonoOptions = Omit<TenantRequestOptions<Context>, 'onIdentified'>;

/** The headers identification reads, copied from the Fetch `Headers` of the request. */
const READ_HEADERS = ['authorization', 'x-api-key', 'x-tenant-id', 'x-request-id'] as const;

function requestIdOfContext(c: Context): string {
  const known = (c as Context<TenantryEnv>).get('requestId');
  return requestIdOf({ 'x-request-id': c.req.header('x-request-id') }, known);
}

/**
 * Hono middleware for tenant routes: authenticates the credential, identifies the tenant
 * (and checks an `X-Tenant-ID` / subdomain / `/t/<slug>/` claim against it), checks
 * `rules.permission`, admits the tenant (status, rate limit, `rules.feature`), sets
 * `c.get('tenant')` and `c.get('principal')`, and awaits the rest of the chain inside the
 * tenant's context, so `getTenant()` and `tenantry.transaction(fn)` work in the handler and
 * after any await. A refusal throws the coded `TenantryError`; `app.onError(tenantryOnError())`
 * answers it as problem details.
 *
 * @example
 * ```ts
 * const tenant = tenantryHono({ tenants: new TenantCache(tenantry.tenants), authenticators: [apiKeyAuthenticator(tenantry.apiKeys)] });
 * const app = new Hono<TenantryEnv>();
 * app.get('/v1/notes', tenant({ permission: 'items:read' }), async (c) =>
 *   c.json(await tenantry.transaction((tx) => tx.query('SELECT * FROM notes'))));
 * app.onError(tenantryOnError());
 * ```
 */
export function tenantryHono(
  options: TenantryHonoOptions,
): (rules?: TenantRouteRules) => MiddlewareHandler<TenantryEnv> {
  return (rules = {}) =>
    async (c, next) => {
      const headers: Record<string, string | undefined> = {};
      for (const name of READ_HEADERS) headers[name] = c.req.header(name);
      const url = new URL(c.req.url);
      const view: TenantRequest = {
        headers,
        hostname: url.hostname,
        url: `${url.pathname}${url.search}`,
        tenant: undefined,
        principal: undefined,
      };
      const requestId = requestIdOf(headers);
      c.set('requestId', requestId);
      c.header('x-request-id', requestId);
      const context = await admitTenantRequest(options, rules, view, c, requestId, (sent) => {
        for (const [name, value] of Object.entries(sent)) c.header(name, value);
      });
      c.set('tenant', view.tenant as TenantRecord);
      c.set('principal', view.principal as Principal);
      await withTenant(context, () => next());
    };
}

/**
 * Hono error handler (`app.onError(tenantryOnError())`) that answers every error as RFC 9457
 * problem details through the same `toProblem` as the reference server: a `TenantryError`
 * keeps its code and status, Hono's `HTTPException` its 4xx status, a database outage is
 * `DATABASE_UNAVAILABLE`, anything else a bare 500 — no stack trace or driver message leaves.
 *
 * @example
 * ```ts
 * app.onError(tenantryOnError({ onError: (error) => console.error(error) }));
 * ```
 */
export function tenantryOnError(options: { onError?: (error: unknown) => void } = {}): ErrorHandler {
  return (error, c) => {
    // Hono's HTTPException carries `status`; the shared converter reads a framework's `statusCode`.
    const status = (error as { status?: unknown; getResponse?: unknown }).status;
    const converted =
      typeof status === 'number' && typeof (error as { getResponse?: unknown }).getResponse === 'function'
        ? { statusCode: status, message: error.message }
        : error;
    const problem = toProblem(converted, requestIdOfContext(c));
    if (problem.status >= 500) options.onError?.(error);
    // A refused rate limit already sent its own `Retry-After`.
    if (problem.status === 503) c.header('retry-after', '1');
    c.header('x-request-id', problem.requestId);
    return c.body(JSON.stringify(problem), problem.status as 400, { 'content-type': PROBLEM_JSON });
  };
}

/**
 * Hono not-found handler (`app.notFound(tenantryNotFound())`): a `NOT_FOUND` problem.
 *
 * @example
 * ```ts
 * app.notFound(tenantryNotFound());
 * ```
 */
export function tenantryNotFound(): NotFoundHandler {
  return (c) => {
    const problem = problemOf('NOT_FOUND', {
      detail: `No route for ${c.req.method} ${c.req.path}`,
      requestId: requestIdOfContext(c),
    });
    return c.body(JSON.stringify(problem), 404, { 'content-type': PROBLEM_JSON });
  };
}
