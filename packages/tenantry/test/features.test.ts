import { describe, expect, it } from 'vitest';
import { isFeatureEnabled, requireFeature } from '../src/admit/features.ts';
import { remainingQuota, requireQuota } from '../src/admit/quotas.ts';
import { isTenantryError, type TenantRecord } from '../src/index.ts';

/** The parts of a TenantRecord the helpers read; `satisfies` keeps the shapes in step. */
const tenant = {
  features: { sso: true, exports: false, beta: 'true', api: 1, nested: { on: true } },
  limits: { maxUsers: 3, maxStorageMb: null },
} satisfies Pick<TenantRecord, 'features'> & { limits: Pick<TenantRecord['limits'], 'maxUsers' | 'maxStorageMb'> };

describe('feature flags', () => {
  it('is on only for a flag that is exactly true', () => {
    expect(isFeatureEnabled(tenant, 'sso')).toBe(true);
    for (const off of ['exports', 'beta', 'api', 'nested', 'missing', '']) {
      expect(isFeatureEnabled(tenant, off), off).toBe(false);
    }
  });

  it('does not find flags on Object.prototype', () => {
    for (const name of ['constructor', '__proto__', 'hasOwnProperty', 'toString']) {
      expect(isFeatureEnabled({ features: {} }, name), name).toBe(false);
    }
    expect(isFeatureEnabled({ features: JSON.parse('{"__proto__": true}') }, '__proto__')).toBe(true);
  });

  it('requireFeature passes an enabled feature and throws FEATURE_DISABLED (403) naming the feature otherwise', () => {
    expect(() => requireFeature(tenant, 'sso')).not.toThrow();
    let error: unknown;
    try {
      requireFeature(tenant, 'exports');
    } catch (e) {
      error = e;
    }
    expect(isTenantryError(error, 'FEATURE_DISABLED')).toBe(true);
    expect(error).toMatchObject({ status: 403, details: { feature: 'exports' } });
    expect((error as Error).message).toContain('exports');
  });

  it('treats a tenant without a features object as having none', () => {
    expect(isFeatureEnabled({ features: null as unknown as Record<string, unknown> }, 'sso')).toBe(false);
    expect(() => requireFeature({ features: {} }, 'sso')).toThrow(
      expect.objectContaining({ code: 'FEATURE_DISABLED' }),
    );
  });
});

describe('quotas', () => {
  it('reports what is left, never below 0, and null for an unlimited quota', () => {
    expect(remainingQuota(tenant, 'maxUsers', 1)).toBe(2);
    expect(remainingQuota(tenant, 'maxUsers', 5)).toBe(0);
    expect(remainingQuota(tenant, 'maxStorageMb', 10_000)).toBeNull();
  });

  it('requireQuota allows up to the limit and throws QUOTA_EXCEEDED (409) past it', () => {
    expect(() => requireQuota(tenant, 'maxUsers', 2)).not.toThrow();
    expect(() => requireQuota(tenant, 'maxUsers', 1, 2)).not.toThrow();
    expect(() => requireQuota(tenant, 'maxUsers', 3)).toThrow(
      expect.objectContaining({
        code: 'QUOTA_EXCEEDED',
        status: 409,
        details: { quota: 'maxUsers', limit: 3, used: 3 },
      }),
    );
    expect(() => requireQuota(tenant, 'maxUsers', 2, 2)).toThrow(expect.objectContaining({ code: 'QUOTA_EXCEEDED' }));
    expect(() => requireQuota(tenant, 'maxStorageMb', 1e9, 1e9)).not.toThrow();
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('refuses a count of %s with USAGE_ERROR', (used) => {
    expect(() => requireQuota(tenant, 'maxUsers', used)).toThrow(expect.objectContaining({ code: 'USAGE_ERROR' }));
    expect(() => remainingQuota(tenant, 'maxUsers', used)).toThrow(expect.objectContaining({ code: 'USAGE_ERROR' }));
  });
});
