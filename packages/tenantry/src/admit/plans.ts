import { TenantryError } from '../errors/catalog.ts';

/** The window of a plan's main rate limit: limits are stated per minute. */
export const RATE_LIMIT_WINDOW_SECONDS = 60;

/**
 * The window of a plan's burst allowance. Ten times the main window, so a burst is an
 * occasional spike a tenant may spend, not a second per-minute rate.
 */
export const BURST_WINDOW_SECONDS = 600;

/** The plan whose limits apply to a tenant whose plan the catalog does not know. */
export const FALLBACK_PLAN = 'free';

/** The request limits of one plan. */
export interface PlanLimits {
  /** Requests a tenant may make per minute (fixed one-minute windows), shared by every instance. */
  readonly requestsPerMinute: number;
  /**
   * Extra requests a tenant may make once the minute's budget is spent, refilled every
   * {@link BURST_WINDOW_SECONDS}. Absent or 0: no burst allowance.
   */
  readonly burst?: number | undefined;
  /**
   * Requests a tenant may make per calendar month (UTC), counted from the daily metering
   * rows of every instance (see `UsageQuotas`). Absent: no monthly quota.
   */
  readonly requestsPerMonth?: number | undefined;
}

/**
 * Plan name → limits. It always holds {@link FALLBACK_PLAN} (`free`): a tenant whose plan is
 * not in the catalog (a typo, a plan retired from the configuration) gets the `free` limits,
 * never unlimited ones.
 */
export type PlanCatalog = Readonly<Record<string, PlanLimits>>;

/**
 * Tenantry's default plans. Override or extend them with {@link definePlans}.
 *
 * | plan | requests/minute | burst (per 10 minutes) |
 * | --- | --- | --- |
 * | `free` | 60 | none |
 * | `pro` | 600 | 300 |
 * | `enterprise` | 6000 | 3000 |
 */
export const DEFAULT_PLANS: PlanCatalog = Object.freeze({
  free: Object.freeze({ requestsPerMinute: 60 }),
  pro: Object.freeze({ requestsPerMinute: 600, burst: 300 }),
  enterprise: Object.freeze({ requestsPerMinute: 6000, burst: 3000 }),
});

/**
 * Plan names become Redis key segments and quoted strings in the `RateLimit` header fields;
 * a narrow alphabet keeps both unambiguous (no `:`, `{`, `}` or quotes).
 */
const PLAN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

function positiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/**
 * Validates a catalog and returns it frozen. Throws `CONFIG_INVALID` for a malformed plan
 * name or limit, or when the catalog has no `free` plan to fall back on.
 */
export function validatePlans(plans: Readonly<Record<string, PlanLimits>>): PlanCatalog {
  if (typeof plans !== 'object' || plans === null) {
    throw new TenantryError('CONFIG_INVALID', 'plans must be an object of plan name → limits');
  }
  const resolved: Record<string, PlanLimits> = {};
  for (const [name, limits] of Object.entries(plans)) {
    if (!PLAN_NAME.test(name)) {
      throw new TenantryError('CONFIG_INVALID', `plan name ${JSON.stringify(name)} must match ${PLAN_NAME}`);
    }
    if (!positiveInteger(limits?.requestsPerMinute)) {
      throw new TenantryError('CONFIG_INVALID', `plans.${name}.requestsPerMinute must be a positive integer`);
    }
    const burst = limits.burst ?? 0;
    if (burst !== 0 && !positiveInteger(burst)) {
      throw new TenantryError('CONFIG_INVALID', `plans.${name}.burst must be a non-negative integer`);
    }
    const monthly = limits.requestsPerMonth;
    if (monthly !== undefined && !positiveInteger(monthly)) {
      throw new TenantryError('CONFIG_INVALID', `plans.${name}.requestsPerMonth must be a positive integer`);
    }
    resolved[name] = Object.freeze({
      requestsPerMinute: limits.requestsPerMinute,
      ...(burst > 0 ? { burst } : {}),
      ...(monthly !== undefined ? { requestsPerMonth: monthly } : {}),
    });
  }
  if (!Object.hasOwn(resolved, FALLBACK_PLAN)) {
    throw new TenantryError('CONFIG_INVALID', `plans must define '${FALLBACK_PLAN}': unknown plans fall back on it`);
  }
  return Object.freeze(resolved);
}

/**
 * The {@link DEFAULT_PLANS} with `overrides` laid over them, validated and frozen. A plan in
 * `overrides` replaces the default of the same name whole.
 *
 * @example
 * ```ts
 * const plans = definePlans({ pro: { requestsPerMinute: 1200, burst: 600 }, startup: { requestsPerMinute: 300 } });
 * new TenantRateLimiter({ plans, redis });
 * ```
 */
export function definePlans(overrides: Readonly<Record<string, PlanLimits>> = {}): PlanCatalog {
  return validatePlans({ ...DEFAULT_PLANS, ...overrides });
}

/** A plan as the catalog resolved it: `name` is the plan whose limits apply. */
export interface ResolvedPlan {
  readonly name: string;
  readonly limits: PlanLimits;
}

/**
 * The limits that apply to `plan`: its own, or those of {@link FALLBACK_PLAN} when the
 * catalog does not know it (then `name` is `'free'`).
 *
 * @example
 * ```ts
 * resolvePlan(DEFAULT_PLANS, 'pro');     // { name: 'pro', limits: { requestsPerMinute: 600, burst: 300 } }
 * resolvePlan(DEFAULT_PLANS, 'legacy');  // { name: 'free', limits: { requestsPerMinute: 60 } }
 * ```
 */
export function resolvePlan(catalog: PlanCatalog, plan: string): ResolvedPlan {
  // Object.hasOwn, not `in`: a plan named "constructor" or "__proto__" must not find Object.prototype.
  if (typeof plan === 'string' && Object.hasOwn(catalog, plan)) {
    return { name: plan, limits: catalog[plan] as PlanLimits };
  }
  const fallback = catalog[FALLBACK_PLAN];
  if (!fallback) throw new TenantryError('CONFIG_INVALID', `plans must define '${FALLBACK_PLAN}'`);
  return { name: FALLBACK_PLAN, limits: fallback };
}
