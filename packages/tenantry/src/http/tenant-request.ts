import { type AdmissionDecision, admit } from '../admit/admission.ts';
import { type Authenticator, authenticate } from '../auth/authenticator.ts';
import { type Permission, type Principal, requirePermission } from '../auth/permissions.ts';
import type { TenantContext } from '../context/tenant-context.ts';
import { contextOf, type TenantRecord } from '../control/tenant-record.ts';
import { presentedCredential } from '../identify/credential.ts';
import { identifyTenant } from '../identify/identify-tenant.ts';
import type { TenantCache } from '../identify/tenant-cache.ts';
import { type ClaimSource, claimedTenant, type TenantClaim } from '../identify/tenant-claim.ts';

/**
 * What steps 1–3 read of a request and write back once it is admitted: its headers, host and
 * path (a Fastify request fits as is; the other adapters pass a small view of theirs).
 */
export interface TenantRequest extends ClaimSource {
  /** The identified, active tenant, set only once the request is admitted. */
  tenant: TenantRecord | undefined;
  /** Who is calling, set only once the request is admitted. */
  principal: Principal | undefined;
}

/** How every HTTP adapter walks steps 1–3; `R` is what the adapter hands its `admit`. */
export interface TenantRequestOptions<R> {
  /** Tenant lookups (cached, invalidated across instances). */
  tenants: TenantCache;
  /** Credential checks, in the order of the identification chain. */
  authenticators: readonly Authenticator[];
  /** Where a request may also name its tenant; a mismatch with the credential is 403. Default `['header']`. */
  claims?: readonly TenantClaim[];
  /** Base domain for the `subdomain` claim, e.g. `example.com` (then `acme.example.com` names `acme`). */
  subdomainBase?: string;
  /** Per-tenant rate limit (step 3); its headers are sent whether or not it admits. */
  admit?: (tenant: TenantRecord, request: R) => Promise<AdmissionDecision>;
  /** Runs once the tenant is known, before admission (the Fastify plugin tags its logger there). */
  onIdentified?: (tenant: TenantRecord, request: R) => void;
}

/** What one route asks of its callers beyond a valid credential. */
export interface TenantRouteRules {
  /** Permission the caller must hold. */
  permission?: Permission | undefined;
  /** Feature flag the tenant must have enabled. */
  feature?: string | undefined;
}

/**
 * Steps 1–3 of the request path for one tenant request, the one core every HTTP adapter
 * (Fastify, Express, Hono, NestJS) is a thin shell around: authenticates the credential
 * (`auth/`), identifies the tenant and checks any claim against it (`identify/`), checks
 * the route's permission, then admits the tenant (`admit/`: status, rate limit, feature).
 * On success `request.tenant` and `request.principal` are set and the request's tenant
 * context is returned, for the adapter to run the handler in (`withTenant`). On refusal it
 * rejects with the coded {@link TenantryError} (`UNAUTHORIZED`, `FORBIDDEN`,
 * `TENANT_SUSPENDED`, `RATE_LIMITED`…) that the adapter turns into problem details.
 *
 * `request` is what the core reads and writes; `adapterRequest` is the framework's own
 * request, handed to `options.admit` and `options.onIdentified`; `onHeaders` gets the rate
 * limit's headers, admitted or not.
 *
 * @example
 * ```ts
 * const view = { headers: req.headers, hostname: req.hostname, url: req.originalUrl, tenant: undefined, principal: undefined };
 * const context = await admitTenantRequest(options, { permission: 'items:read' }, view, req, requestId, (h) => res.set(h));
 * withTenant(context, next);
 * ```
 */
export async function admitTenantRequest<R>(
  options: TenantRequestOptions<R>,
  route: TenantRouteRules,
  request: TenantRequest,
  adapterRequest: R,
  requestId: string | undefined,
  onHeaders: (headers: Readonly<Record<string, string>>) => void,
): Promise<TenantContext> {
  const principal = await authenticate(presentedCredential(request.headers), options.authenticators);
  const claim = claimedTenant(request, options.claims ?? ['header'], options.subdomainBase);
  const tenant = await identifyTenant(principal, claim, options.tenants);
  if (route.permission) requirePermission(principal, route.permission);
  options.onIdentified?.(tenant, adapterRequest);
  const rateLimit = options.admit;
  await admit(tenant, {
    rateLimit: rateLimit && ((t: TenantRecord) => rateLimit(t, adapterRequest)),
    feature: route.feature,
    onHeaders,
  });
  // Only an admitted request carries its tenant and principal.
  request.tenant = tenant;
  request.principal = principal;
  return { ...contextOf(tenant, requestId), actor: `${principal.kind}:${principal.subject}` };
}
