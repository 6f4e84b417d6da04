/**
 * Counts requests per tenant in fixed windows and reports the busiest `n` of the last
 * complete window. Metrics may name at most `n` tenants at a time, whatever the number of
 * tenants (invariant 9: bounded label cardinality), and memory is bounded by `maxTracked`.
 */
export class TopTenants {
  readonly #n: number;
  readonly #windowMs: number;
  readonly #maxTracked: number;
  #current = new Map<string, number>();
  #previous: [string, number][] = [];
  #windowStart = Date.now();

  constructor(options: { n?: number; windowMs?: number; maxTracked?: number } = {}) {
    this.#n = options.n ?? 10;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#maxTracked = options.maxTracked ?? 50_000;
  }

  #roll(now: number): void {
    if (now - this.#windowStart < this.#windowMs) return;
    this.#previous = this.#rank(this.#current);
    this.#current = new Map();
    this.#windowStart = now;
  }

  #rank(counts: Map<string, number>): [string, number][] {
    return [...counts].sort((a, b) => b[1] - a[1]).slice(0, this.#n);
  }

  /** Counts one request of `tenantId`. */
  record(tenantId: string, now = Date.now()): void {
    this.#roll(now);
    const count = this.#current.get(tenantId);
    if (count !== undefined) this.#current.set(tenantId, count + 1);
    else if (this.#current.size < this.#maxTracked) this.#current.set(tenantId, 1);
  }

  /** The busiest tenants of the last complete window (or of the current one, before the first roll). */
  top(now = Date.now()): readonly [tenantId: string, requests: number][] {
    this.#roll(now);
    return this.#previous.length > 0 ? this.#previous : this.#rank(this.#current);
  }
}
