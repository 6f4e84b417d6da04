import { TenantryError } from '../errors/catalog.ts';

/** What the feature helpers read of a tenant: its `features` object (a `TenantRecord` fits). */
export interface FeatureHolder {
  readonly features: Readonly<Record<string, unknown>>;
}

/**
 * True only when the tenant's `features[name]` is exactly `true`. Anything else — absent,
 * `"true"`, `1`, an object — is off: a flag set by a typo or a loose JSON import must not
 * switch on a paid feature.
 *
 * @example
 * ```ts
 * if (isFeatureEnabled(tenant, 'sso')) showSsoSettings();
 * ```
 */
export function isFeatureEnabled(tenant: FeatureHolder, name: string): boolean {
  const features = tenant?.features;
  // Object.hasOwn: a flag named "constructor" or "__proto__" must not find Object.prototype.
  return typeof features === 'object' && features !== null && Object.hasOwn(features, name) && features[name] === true;
}

/**
 * Throws `FEATURE_DISABLED` (403) unless the feature is enabled for the tenant (see
 * {@link isFeatureEnabled}). The error names the feature, which the caller asked for anyway.
 *
 * @example
 * ```ts
 * requireFeature(tenant, 'audit-export');
 * return exportAuditLog(tenant);
 * ```
 */
export function requireFeature(tenant: FeatureHolder, name: string): void {
  if (!isFeatureEnabled(tenant, name)) {
    throw new TenantryError('FEATURE_DISABLED', name, { details: { feature: name } });
  }
}
