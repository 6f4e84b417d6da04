import type { TenantStatus } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import { type FeatureHolder, requireFeature } from './features.ts';

/** The admission decision of a rate limiter (see {@link TenantRateLimiter}). */
export interface AdmissionDecision {
  readonly allowed: boolean;
  /** Headers to send either way (`RateLimit-*`, and `Retry-After` when refused). */
  readonly headers: Readonly<Record<string, string>>;
}

/** What admission reads of a tenant (a `TenantRecord` fits). */
export interface AdmissionSubject extends FeatureHolder {
  readonly status: TenantStatus;
}

/** How one request asks to be admitted. */
export interface AdmissionRequest<T extends AdmissionSubject> {
  /** The tenant's rate limit; its headers go to `onHeaders` whether or not it admits. */
  readonly rateLimit?: ((tenant: T) => Promise<AdmissionDecision>) | undefined;
  /** A feature flag the tenant must have enabled. */
  readonly feature?: string | undefined;
  readonly onHeaders?: ((headers: Readonly<Record<string, string>>) => void) | undefined;
}

/**
 * Throws `TENANT_SUSPENDED` or `TENANT_NOT_ACTIVE` unless `status` is `active`: only an
 * active tenant does tenant work (maintenance excepted).
 *
 * @example
 * ```ts
 * requireActive(tenant.status);
 * ```
 */
export function requireActive(status: TenantStatus): void {
  if (status === 'active') return;
  throw new TenantryError(status === 'suspended' ? 'TENANT_SUSPENDED' : 'TENANT_NOT_ACTIVE');
}

/**
 * Step 3 of the request path: admits `tenant`'s request or throws the coded refusal, in
 * this order — status (`TENANT_SUSPENDED`, `TENANT_NOT_ACTIVE`), rate limit
 * (`RATE_LIMITED`), feature flag (`FEATURE_DISABLED`).
 *
 * @example
 * ```ts
 * await admit(tenant, { rateLimit: (t) => limiter.admit(t), feature: 'exports', onHeaders: (h) => reply.headers(h) });
 * ```
 */
export async function admit<T extends AdmissionSubject>(tenant: T, request: AdmissionRequest<T> = {}): Promise<void> {
  requireActive(tenant.status);
  if (request.rateLimit) {
    const decision = await request.rateLimit(tenant);
    request.onHeaders?.(decision.headers);
    if (!decision.allowed) throw new TenantryError('RATE_LIMITED');
  }
  if (request.feature !== undefined) requireFeature(tenant, request.feature);
}
