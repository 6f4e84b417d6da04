import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { QueryResultRow } from 'pg';
import { requireAdminToken } from '../auth/admin-token.ts';
import type { Permission, Principal } from '../auth/permissions.ts';
import { type TenantContext, withTenant } from '../context/tenant-context.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { TenantryError } from '../errors/catalog.ts';
import { presentedCredential } from '../identify/credential.ts';
import type { RequestUsage } from '../ops/usage-meter.ts';
import type { CompiledStatement, QueryResult, TenantTransaction } from '../transaction/tenant-transaction.ts';
import { admitTenantRequest, type TenantRequestOptions } from './tenant-request.ts';

/** What the plugin needs of `Tenantry` (step 5): tenant transactions for a given context. */
export interface TenantWork {
  transaction<T>(tenant: TenantContext, fn: (tx: TenantTransaction<unknown>) => Promise<T>): Promise<T>;
  query<R extends QueryResultRow>(
    tenant: TenantContext,
    statement: string | CompiledStatement,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>>;
}

/** Options of the Tenantry Fastify plugin (steps 1–3 are {@link TenantRequestOptions}, shared by every adapter). */
export interface TenantryPluginOptions extends Omit<TenantRequestOptions<FastifyRequest>, 'onIdentified'> {
  /** The `Tenantry` instance that runs the tenant transactions. */
  tenantry: TenantWork;
  /** Control-plane bearer token (`TENANTRY_ADMIN_TOKEN`); admin routes answer 401 without it. */
  adminToken?: string;
  /**
   * Per-tenant request usage (`tenantry.usage.meter`): every admitted data-plane request is
   * counted when its response is sent — status class, bytes, API key or user.
   */
  usage?: { recordRequest(tenant: TenantRecord, request: RequestUsage): void } | null;
}

/** Per-route switches, in `config.tenantry`. */
export interface TenantryRouteConfig {
  /** A tenant data-plane route: identify, authenticate, admit, then run in the tenant's context. */
  tenant?: boolean;
  /** Permission the caller must hold. */
  permission?: Permission;
  /** Feature flag the tenant must have enabled. */
  feature?: string;
  /** A control-plane route: requires the admin token. */
  admin?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The identified, active tenant of a data-plane request. */
    tenant: TenantRecord | undefined;
    /** Who is calling (API key or user) on a data-plane request. */
    principal: Principal | undefined;
    /** Runs `fn` in a tenant transaction for this request's tenant; throws on non-tenant routes. */
    tenantTransaction<T, DB = unknown>(fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T>;
    /**
     * Runs one statement (SQL text with values, or a Kysely query compiled in the request,
     * which runs in the tenant's context) as a whole transaction of the request's tenant, in
     * one round trip (see `Tenantry.query`).
     */
    tenantQuery<R extends QueryResultRow = Record<string, unknown>>(
      statement: string | CompiledStatement,
      values?: readonly unknown[],
    ): Promise<QueryResult<R>>;
  }
  interface FastifyContextConfig {
    tenantry?: TenantryRouteConfig;
  }
}

/** The tenant context of a request, built once when it is admitted. */
const CONTEXT = Symbol('tenantry.context');
type ContextHolder = { [CONTEXT]?: TenantContext };

function contextOfRequest(request: FastifyRequest): TenantContext {
  const context = (request as FastifyRequest & ContextHolder)[CONTEXT];
  if (!context) throw new TenantryError('NO_TENANT_CONTEXT');
  return context;
}

/**
 * The Tenantry Fastify plugin (`tenantry/fastify`), a thin adapter over the request path:
 * for every route whose `config.tenantry.tenant` is set it authenticates the credential
 * (`auth/`), identifies the tenant and checks any `X-Tenant-ID` / subdomain / path claim
 * against it (`identify/`), checks the route's permission, admits the tenant (`admit/`:
 * status, rate limit, feature) and runs the handler inside the tenant's context
 * (`context/`), so `getTenant()` works anywhere in it and `request.tenantTransaction(fn)`
 * runs step 5. Routes with `config.tenantry.admin` require the admin token instead.
 *
 * @example
 * ```ts
 * await app.register(tenantryPlugin, { tenantry, tenants: new TenantCache(tenantry.tenants), authenticators });
 * app.get('/v1/things', { config: { tenantry: { tenant: true, permission: 'items:read' } } },
 *   (req) => req.tenantTransaction((tx) => tx.query('SELECT * FROM things')));
 * ```
 */
export const tenantryPlugin = fp(
  async (app: FastifyInstance, options: TenantryPluginOptions) => {
    app.decorateRequest('tenant', undefined);
    app.decorateRequest('principal', undefined);
    // Declared with the request's other fields: set on every tenant request, it then changes
    // no request object's shape.
    app.decorateRequest(CONTEXT, undefined);
    app.decorateRequest('tenantTransaction', function tenantTransaction<
      T,
      DB,
    >(this: FastifyRequest, fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T> {
      try {
        return options.tenantry.transaction(
          contextOfRequest(this),
          fn as unknown as (tx: TenantTransaction<unknown>) => Promise<T>,
        );
      } catch (error) {
        return Promise.reject(error);
      }
    });
    app.decorateRequest('tenantQuery', function tenantQuery<
      R extends QueryResultRow,
    >(this: FastifyRequest, statement: string | CompiledStatement, values?: readonly unknown[]): Promise<
      QueryResult<R>
    > {
      try {
        return options.tenantry.query<R>(contextOfRequest(this), statement, values);
      } catch (error) {
        return Promise.reject(error);
      }
    });
    const usage = options.usage;
    if (usage) {
      app.addHook('onResponse', (request, reply, done) => {
        const tenant = request.tenant;
        if (tenant) {
          const principal = request.principal;
          usage.recordRequest(tenant, {
            status: reply.statusCode,
            bytesIn: Number(request.headers['content-length'] ?? 0) || 0,
            bytesOut: Number(reply.getHeader('content-length') ?? 0) || 0,
            apiKey: principal?.kind === 'api-key',
            user: principal?.kind === 'user' ? principal.subject : undefined,
          });
        }
        done();
      });
    }
    // Built once: the core tags the request's logger with the tenant before admission.
    const pathOptions: TenantRequestOptions<FastifyRequest> = {
      ...options,
      onIdentified: (tenant, request) => {
        request.log = request.log.child({ tenantId: tenant.id });
      },
    };
    // Callback style on purpose: `done()` called inside `withTenant` runs the rest of the
    // request (the handler, and every async continuation of it) in the tenant's context.
    app.addHook('preHandler', (request, reply, done) => {
      const route = request.routeOptions.config.tenantry;
      if (!route) return done();
      if (route.admin) {
        try {
          requireAdminToken(presentedCredential(request.headers), options.adminToken);
        } catch (error) {
          return done(error as Error);
        }
        return done();
      }
      if (!route.tenant) return done();
      admitTenantRequest(
        pathOptions,
        route,
        request,
        request,
        request.id,
        (headers) => void reply.headers(headers),
      ).then(
        (context) => {
          (request as FastifyRequest & ContextHolder)[CONTEXT] = context;
          withTenant(context, () => done());
        },
        (error: Error) => done(error),
      );
    });
  },
  { name: 'tenantry', fastify: '5.x' },
);
