import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { QueryResultRow } from 'pg';
import type { Authenticator } from '../auth/authenticator.ts';
import type { Permission, Principal } from '../auth/permissions.ts';
import type { TenantContext } from '../context/tenant-context.ts';
import { contextOf, type TenantRecord } from '../control/tenants.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { TenantCache } from '../identify/tenant-cache.ts';
import type { Tenantry } from '../tenantry.ts';
import type { QueryResult, TenantTransaction } from '../transaction/tenant-transaction.ts';

/** Where a request may name its tenant, besides its credential. */
export type TenantClaim = 'header' | 'subdomain' | 'path';

/** The admission decision of a rate limiter (see `tenantry/admit`). */
export interface AdmissionDecision {
  readonly allowed: boolean;
  readonly headers: Readonly<Record<string, string>>;
}

/** Options of the Tenantry Fastify plugin. */
export interface TenantryPluginOptions {
  tenantry: Tenantry<never> | Tenantry<unknown>;
  /** Tenant lookups (cached, invalidated across instances). */
  tenants: TenantCache;
  /** Credential checks, in the order of the identification chain. */
  authenticators: readonly Authenticator[];
  /** Where a request may also name its tenant; a mismatch with the credential is 403. Default `['header']`. */
  claims?: readonly TenantClaim[];
  /** Base domain for the `subdomain` claim, e.g. `example.com` (then `acme.example.com` names `acme`). */
  subdomainBase?: string;
  /** Per-tenant admission (rate limit); called after authentication. */
  admit?: (tenant: TenantRecord, request: FastifyRequest) => Promise<AdmissionDecision>;
  /** Control-plane bearer token (`TENANTRY_ADMIN_TOKEN`); admin routes answer 401 without it. */
  adminToken?: string;
}

/** Per-route switches, in `config.tenantry`. */
export interface TenantryRouteConfig {
  /** A tenant data-plane route: identify, authenticate, admit. */
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
     * Runs one statement as a whole transaction of the request's tenant, in one round trip
     * (see `Tenantry.query`).
     */
    tenantQuery<R extends QueryResultRow = Record<string, unknown>>(
      text: string,
      values?: readonly unknown[],
    ): Promise<QueryResult<R>>;
  }
  interface FastifyContextConfig {
    tenantry?: TenantryRouteConfig;
  }
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m) return m[1];
  }
  const key = request.headers['x-api-key'];
  return typeof key === 'string' && key.length > 0 ? key : undefined;
}

function claimedTenant(request: FastifyRequest, claims: readonly TenantClaim[], base?: string): string | undefined {
  for (const claim of claims) {
    if (claim === 'header') {
      const v = request.headers['x-tenant-id'];
      if (typeof v === 'string' && v.length > 0) return v;
    } else if (claim === 'subdomain' && base) {
      const host = (request.hostname ?? '').toLowerCase().split(':')[0] ?? '';
      if (host.endsWith(`.${base}`)) return host.slice(0, -base.length - 1);
    } else if (claim === 'path') {
      const m = /^\/t\/([a-z0-9-]{1,63})(?:\/|$)/.exec(request.url);
      if (m) return m[1];
    }
  }
  return undefined;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

async function identify(options: TenantryPluginOptions, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const config = request.routeOptions.config.tenantry ?? {};
  const credential = bearer(request);
  if (!credential)
    throw new TenantryError('UNAUTHORIZED', 'send an API key or access token as `Authorization: Bearer …`');
  let principal: Principal | undefined;
  for (const authenticator of options.authenticators) {
    if (!authenticator.accepts(credential)) continue;
    principal = await authenticator.authenticate(credential);
    break;
  }
  if (!principal) throw new TenantryError('UNAUTHORIZED');
  const claim = claimedTenant(request, options.claims ?? ['header'], options.subdomainBase);
  if (claim !== undefined) {
    const claimed = await options.tenants.get(claim);
    if (!claimed) throw new TenantryError('TENANT_NOT_FOUND');
    if (claimed.id !== principal.tenantId) {
      throw new TenantryError('FORBIDDEN', 'the credential is not valid for the tenant this request names');
    }
  }
  let tenant = await options.tenants.get(principal.tenantId);
  if (tenant && tenant.status !== 'active') {
    // A cached refusal may be stale (resumed a moment ago, the notification still on its
    // way): refusals are rare, so confirm them with a fresh read. A cached "active" needs
    // no such care: PostgreSQL re-checks the status when the tenant transaction begins.
    options.tenants.invalidate(tenant.id);
    tenant = await options.tenants.get(principal.tenantId);
  }
  if (!tenant) throw new TenantryError('TENANT_NOT_FOUND');
  if (tenant.status === 'suspended') throw new TenantryError('TENANT_SUSPENDED');
  if (tenant.status !== 'active') throw new TenantryError('TENANT_NOT_ACTIVE');
  request.tenant = tenant;
  request.principal = principal;
  request.log = request.log.child({ tenantId: tenant.id });
  if (options.admit) {
    const decision = await options.admit(tenant, request);
    void reply.headers(decision.headers);
    if (!decision.allowed) throw new TenantryError('RATE_LIMITED');
  }
  if (config.permission && !principal.permissions.has(config.permission)) {
    throw new TenantryError('FORBIDDEN', `missing permission ${config.permission}`);
  }
  if (config.feature && tenant.features[config.feature] !== true) {
    throw new TenantryError('FEATURE_DISABLED', config.feature);
  }
}

/**
 * The Tenantry Fastify plugin (`tenantry/fastify`): steps 1–4 of the request path for
 * every route whose `config.tenantry.tenant` is set — identify the tenant from the
 * credential (and check any `X-Tenant-ID` / subdomain / path claim against it),
 * authenticate, admit (status, rate limit, permission, feature) — then
 * `request.tenantTransaction(fn)` runs step 5 in that tenant's context. Routes with
 * `config.tenantry.admin` require the admin token instead.
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
    app.decorateRequest('tenantTransaction', function tenantTransaction<
      T,
      DB,
    >(this: FastifyRequest, fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T> {
      if (!this.tenant) return Promise.reject(new TenantryError('NO_TENANT_CONTEXT'));
      const context: TenantContext = contextOf(this.tenant, this.id);
      return (options.tenantry as unknown as Tenantry<DB>).withTenant(context, fn);
    });
    app.decorateRequest('tenantQuery', function tenantQuery<
      R extends QueryResultRow,
    >(this: FastifyRequest, text: string, values?: readonly unknown[]): Promise<QueryResult<R>> {
      if (!this.tenant) return Promise.reject(new TenantryError('NO_TENANT_CONTEXT'));
      return (options.tenantry as Tenantry).query<R>(contextOf(this.tenant, this.id), text, values);
    });
    app.addHook('preHandler', async (request, reply) => {
      const config = request.routeOptions.config.tenantry;
      if (!config) return;
      if (config.admin) {
        const token = bearer(request);
        if (!options.adminToken || !token || !sameSecret(token, options.adminToken)) {
          throw new TenantryError(
            'UNAUTHORIZED',
            'the control plane needs `Authorization: Bearer $TENANTRY_ADMIN_TOKEN`',
          );
        }
        return;
      }
      if (config.tenant) await identify(options, request, reply);
    });
  },
  { name: 'tenantry', fastify: '5.x' },
);
