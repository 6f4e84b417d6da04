import { TenantryError } from '../errors/catalog.ts';
import { DEFAULT_PLANS, type PlanCatalog, resolvePlan } from './plans.ts';

/** Bytes per megabyte, for `maxStorageMb`. */
const MB = 1024 * 1024;

/** Where {@link UsageQuotas} reads usage (`tenantry.usage` fits). */
export interface UsageQuotaSource {
  /** Requests of the tenant this calendar month (UTC), as written by every instance. */
  monthRequests(tenantId: string): Promise<number>;
  /** Storage of the tenant by its latest snapshot (bytes), `null` before the first. */
  latestStorage(tenantId: string): Promise<number | null>;
  /**
   * This process's requests of the tenant: all counted, and those already written. The
   * difference is what the table does not hold yet.
   */
  localRequests(tenantId: string): { readonly counted: number; readonly written: number };
}

/** What the quota check reads of a tenant (a `TenantRecord` fits). */
export interface UsageQuotaHolder {
  readonly id: string;
  readonly plan: string;
  readonly limits: { readonly maxStorageMb: number | null };
}

interface Cached {
  readonly until: number;
  readonly month: number;
  readonly requests: number;
  /** `localRequests().written` when `requests` was read: what the table already held of ours. */
  readonly writtenAtRead: number;
  readonly storage: number | null;
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

/**
 * Enforces the quotas read from usage (step 3, with the rate limit): a plan's
 * `requestsPerMonth` against the month's metering rows plus what this process counted and
 * has not written yet (`REQUEST_QUOTA_EXCEEDED`, 429, `Retry-After` until the 1st), and a
 * tenant's `maxStorageMb` against its latest snapshot (`STORAGE_QUOTA_EXCEEDED`, 403, for
 * writes only: reads and deletes still pass). The table's figures are cached per tenant for
 * `ttlMs` (default 10 s); between reads, this process's own requests are still counted, so
 * one instance stops at the quota exactly and several overshoot by at most what the others
 * did within `ttlMs` plus one flush. A tenant with neither quota costs nothing.
 *
 * @example
 * ```ts
 * const quotas = new UsageQuotas(tenantry.usage, { plans });
 * await quotas.check(tenant, 'POST'); // throws a coded error when over
 * ```
 */
export class UsageQuotas {
  readonly #source: UsageQuotaSource;
  readonly #plans: PlanCatalog;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, Cached>();

  constructor(source: UsageQuotaSource, options: { plans?: PlanCatalog; ttlMs?: number } = {}) {
    this.#source = source;
    this.#plans = options.plans ?? DEFAULT_PLANS;
    this.#ttlMs = options.ttlMs ?? 10_000;
  }

  /** Throws the coded refusal when `tenant` is over a quota for a request of `method`. */
  async check(tenant: UsageQuotaHolder, method: string): Promise<void> {
    const monthly = resolvePlan(this.#plans, tenant.plan).limits.requestsPerMonth;
    const maxStorageMb = tenant.limits.maxStorageMb;
    const storageApplies = maxStorageMb !== null && !READS.has(method);
    if (monthly === undefined && !storageApplies) return;
    const now = new Date();
    const month = now.getUTCFullYear() * 12 + now.getUTCMonth();
    let cached = this.#cache.get(tenant.id);
    if (!cached || cached.until < now.getTime() || cached.month !== month) {
      const written = this.#source.localRequests(tenant.id).written;
      const [requests, storage] = await Promise.all([
        monthly === undefined ? 0 : this.#source.monthRequests(tenant.id),
        maxStorageMb === null ? null : this.#source.latestStorage(tenant.id),
      ]);
      cached = { until: now.getTime() + this.#ttlMs, month, requests, writtenAtRead: written, storage };
      if (this.#cache.size > 100_000) this.#cache.clear();
      this.#cache.set(tenant.id, cached);
    }
    if (monthly !== undefined) {
      const used = cached.requests + this.#source.localRequests(tenant.id).counted - cached.writtenAtRead;
      if (used >= monthly) {
        const next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
        throw new TenantryError('REQUEST_QUOTA_EXCEEDED', undefined, {
          details: {
            quota: 'requestsPerMonth',
            limit: monthly,
            used,
            retryAfterSeconds: Math.ceil((next - now.getTime()) / 1000),
          },
        });
      }
    }
    if (storageApplies && cached.storage !== null && cached.storage >= (maxStorageMb as number) * MB) {
      throw new TenantryError('STORAGE_QUOTA_EXCEEDED', undefined, {
        details: { quota: 'maxStorageMb', limit: maxStorageMb, usedBytes: cached.storage },
      });
    }
  }

  /** Forgets cached figures (of one tenant, or all). */
  forget(tenantId?: string): void {
    if (tenantId === undefined) this.#cache.clear();
    else this.#cache.delete(tenantId);
  }
}
