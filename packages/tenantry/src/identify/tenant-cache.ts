import { CHANNELS, type ChangeFeed } from '../control/change-feed.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import type { TenantRegistry } from '../control/tenant-registry.ts';

interface Entry {
  readonly tenant: TenantRecord | undefined;
  readonly expires: number;
}

/**
 * Tenant lookups for the request path, cached briefly. Entries expire after `ttlMs`
 * (default 5 s) and are dropped at once when any instance changes the tenant (the
 * registry notifies on commit). Unknown references are cached too (for 1 s), so a flood
 * of requests naming a missing tenant does not become a flood of queries.
 */
export class TenantCache {
  readonly #registry: TenantRegistry;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #entries = new Map<string, Entry>();

  constructor(registry: TenantRegistry, options: { ttlMs?: number; max?: number; feed?: ChangeFeed } = {}) {
    this.#registry = registry;
    this.#ttlMs = options.ttlMs ?? 5000;
    this.#max = options.max ?? 10_000;
    options.feed?.on(CHANNELS.tenants, (id) => (id ? this.invalidate(id) : this.#entries.clear()));
  }

  /** The tenant with this id or slug (case-insensitive), or `undefined`. */
  async get(ref: string): Promise<TenantRecord | undefined> {
    const key = ref.toLowerCase();
    const hit = this.#entries.get(key);
    if (hit && hit.expires > Date.now()) return hit.tenant;
    const tenant = await this.#registry.find(ref);
    if (this.#entries.size >= this.#max) this.#entries.clear(); // crude, bounded; a miss costs one query
    const expires = Date.now() + (tenant ? this.#ttlMs : Math.min(this.#ttlMs, 1000));
    this.#entries.set(key, { tenant, expires });
    if (tenant) {
      this.#entries.set(tenant.id, { tenant, expires });
      this.#entries.set(tenant.slug, { tenant, expires });
    }
    return tenant;
  }

  /**
   * Drops every entry of the tenant `id` (by id and by slug), and every cached miss: the
   * change may be the tenant's creation, and a miss for its slug would otherwise be served
   * until it expires.
   */
  invalidate(id: string): void {
    const entry = this.#entries.get(id);
    this.#entries.delete(id);
    if (entry?.tenant) this.#entries.delete(entry.tenant.slug);
    for (const [key, value] of this.#entries) {
      if (value.tenant === undefined || value.tenant.id === id) this.#entries.delete(key);
    }
  }
}
