/**
 * `tenantry/fastify`: the Fastify plugin that walks steps 1–4 of the request path
 * (identify, authenticate, admit, context) for tenant routes.
 *
 * @packageDocumentation
 */

export type { Authenticator } from '../auth/authenticator.ts';
export { ChangeFeed } from '../control/change-feed.ts';
export { TenantCache } from '../identify/tenant-cache.ts';
export {
  type AdmissionDecision,
  type TenantClaim,
  type TenantryPluginOptions,
  type TenantryRouteConfig,
  tenantryPlugin,
} from './plugin.ts';
