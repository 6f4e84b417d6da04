/**
 * `tenantry/express`: Express 5 middleware that walks steps 1–4 of the request path
 * (authenticate, identify, admit, context) with the same core as the Fastify plugin, and an
 * error handler that answers with problem details.
 *
 * @packageDocumentation
 */

import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
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

declare global {
  namespace Express {
    interface Request {
      /** The identified, active tenant, once `tenantryExpress()` admitted the request. */
      tenant?: TenantRecord | undefined;
      /** Who is calling (API key or user), once `tenantryExpress()` admitted the request. */
      principal?: Principal | undefined;
    }
  }
}

/** Options of {@link tenantryExpress}: steps 1–3 as every adapter takes them. */
export type TenantryExpressOptions = Omit<TenantRequestOptions<Request>, 'onIdentified'>;

/**
 * Express 5 middleware for tenant routes: authenticates the credential, identifies the
 * tenant (and checks an `X-Tenant-ID` / subdomain / `/t/<slug>/` claim against it), checks
 * `rules.permission`, admits the tenant (status, rate limit, `rules.feature`), sets
 * `req.tenant` and `req.principal`, and runs the rest of the request — the route's handlers
 * and everything they await — in the tenant's context, so `getTenant()` and
 * `tenantry.transaction(fn)` work anywhere in it. A refusal goes to `next(error)` as the
 * coded `TenantryError`; mount {@link tenantryErrorHandler} to answer it as problem details.
 *
 * @example
 * ```ts
 * const tenant = tenantryExpress({ tenants: new TenantCache(tenantry.tenants), authenticators: [apiKeyAuthenticator(tenantry.apiKeys)] });
 * app.get('/v1/notes', tenant({ permission: 'items:read' }), async (req, res) => {
 *   res.json(await tenantry.transaction((tx) => tx.query('SELECT * FROM notes')));
 * });
 * app.use(tenantryErrorHandler());
 * ```
 */
export function tenantryExpress(options: TenantryExpressOptions): (rules?: TenantRouteRules) => RequestHandler {
  return (rules = {}) =>
    (req: Request, res: Response, next: NextFunction) => {
      // The path claim reads the full path: `req.url` is relative to the router's mount point.
      const view: TenantRequest = {
        headers: req.headers,
        hostname: req.hostname,
        url: req.originalUrl,
        tenant: undefined,
        principal: undefined,
      };
      const requestId = requestIdOf(req.headers);
      res.setHeader('x-request-id', requestId);
      admitTenantRequest(options, rules, view, req, requestId, (headers) => void res.set(headers)).then((context) => {
        req.tenant = view.tenant;
        req.principal = view.principal;
        // Express calls the next handler synchronously inside next(): it, and every
        // continuation it awaits, runs in the tenant's context.
        withTenant(context, () => next());
      }, next);
    };
}

/**
 * Express error handler (mount it last) that answers every error as RFC 9457 problem
 * details through the same `toProblem` as the reference server: a `TenantryError` keeps its
 * code and status, a database outage is `DATABASE_UNAVAILABLE`, anything else a bare 500 —
 * no stack trace, driver message or other tenant's identifier leaves the server.
 *
 * @example
 * ```ts
 * app.use(tenantryErrorHandler({ onError: (error) => console.error(error) }));
 * ```
 */
export function tenantryErrorHandler(options: { onError?: (error: unknown) => void } = {}): ErrorRequestHandler {
  return (error: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error);
    const problem = toProblem(error, requestIdOf(req.headers, res.getHeader('x-request-id')));
    if (problem.status >= 500) options.onError?.(error);
    if ((problem.status === 429 || problem.status === 503) && !res.getHeader('retry-after')) {
      res.setHeader('retry-after', '1');
    }
    res.status(problem.status).type(PROBLEM_JSON).send(JSON.stringify(problem));
  };
}

/**
 * Express handler for requests no route answered (mount it after the routes): a
 * `NOT_FOUND` problem instead of Express's HTML page.
 *
 * @example
 * ```ts
 * app.use(tenantryNotFound());
 * app.use(tenantryErrorHandler());
 * ```
 */
export function tenantryNotFound(): RequestHandler {
  return (req: Request, res: Response) => {
    const problem = problemOf('NOT_FOUND', {
      detail: `No route for ${req.method} ${req.path}`,
      requestId: requestIdOf(req.headers, res.getHeader('x-request-id')),
    });
    res.status(404).type(PROBLEM_JSON).send(JSON.stringify(problem));
  };
}
