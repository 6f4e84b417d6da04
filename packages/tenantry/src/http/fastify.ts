/**
 * `tenantry/fastify`: the Fastify plugin that walks steps 1–4 of the request path
 * (authenticate, identify, admit, context) for tenant routes and runs their handlers in the
 * tenant's context, with the identification parts it is built from.
 *
 * @packageDocumentation
 */

export type { AdmissionDecision } from '../admit/admission.ts';
export type { Authenticator } from '../auth/authenticator.ts';
export { ChangeFeed } from '../control/change-feed.ts';
export { IdempotencyStore } from '../effects/idempotency-store.ts';
export { type CredentialHeaders, presentedCredential } from '../identify/credential.ts';
export { identifyTenant } from '../identify/identify-tenant.ts';
export { TenantCache } from '../identify/tenant-cache.ts';
export type { TenantClaim } from '../identify/tenant-claim.ts';
export { type ClaimSource, claimedTenant } from '../identify/tenant-claim.ts';
export { type IdempotencyPluginOptions, idempotencyPlugin } from './idempotency.ts';
export {
  type TenantryPluginOptions,
  type TenantryRouteConfig,
  type TenantWork,
  tenantryPlugin,
} from './plugin.ts';
