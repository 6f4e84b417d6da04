/**
 * `tenantry/admit`: step 3 of the request path — tenant status, per-tenant rate limits by
 * plan (Redis or in-process), plan catalogs, quotas and feature flags.
 *
 * @packageDocumentation
 */
export {
  type AdmissionDecision,
  type AdmissionRequest,
  type AdmissionSubject,
  admit,
  requireActive,
} from './admission.ts';
export { type FeatureHolder, isFeatureEnabled, requireFeature } from './features.ts';
export { DEFAULT_PLANS, definePlans, type PlanCatalog, type PlanLimits } from './plans.ts';
export { type QuotaHolder, type QuotaLimits, type QuotaName, remainingQuota, requireQuota } from './quotas.ts';
export {
  type RateLimitDecision,
  type RateLimitRedisClient,
  type RedisErrorPolicy,
  TenantRateLimiter,
  type TenantRateLimiterOptions,
} from './rate-limit.ts';
export { rateLimitHeaders } from './rate-limit-headers.ts';
export { type UsageQuotaHolder, type UsageQuotaSource, UsageQuotas } from './usage-quotas.ts';
