/**
 * A figure read from the database for scrapes, whose reading costs more as the fleet grows
 * (storage summed over every tenant or schema). The first {@link get} waits for the first
 * reading; from then on `get()` answers at once with the latest complete reading and, when
 * that is older than `maxAgeMs`, starts the next one in the background (one at a time). So
 * a scrape never waits for a refresh, whatever the number of tenants; the figure is at most
 * `maxAgeMs` plus one reading's time old. A failed refresh keeps the previous reading and
 * is retried at the next `get()`.
 *
 * @example
 * ```ts
 * const storage = new BackgroundReading(() => tenantry.usage.storageByTier(), 60_000);
 * const rows = await storage.get();
 * ```
 */
export class BackgroundReading<T> {
  readonly #read: () => Promise<T>;
  readonly #maxAgeMs: number;
  #latest: { readonly startedAt: number; readonly value: T } | undefined;
  #pending: Promise<T> | undefined;

  constructor(read: () => Promise<T>, maxAgeMs: number) {
    this.#read = read;
    this.#maxAgeMs = maxAgeMs;
  }

  /** The latest reading (waiting only for the very first), refreshed in the background when due. */
  get(): Promise<T> {
    const latest = this.#latest;
    if (latest && performance.now() - latest.startedAt < this.#maxAgeMs) return Promise.resolve(latest.value);
    const next = this.#refresh();
    if (!latest) return next;
    next.catch(() => {}); // kept: the previous reading is served, and the next get() retries
    return Promise.resolve(latest.value);
  }

  #refresh(): Promise<T> {
    if (!this.#pending) {
      const startedAt = performance.now();
      this.#pending = this.#read()
        .then((value) => {
          this.#latest = { startedAt, value };
          return value;
        })
        .finally(() => {
          this.#pending = undefined;
        });
    }
    return this.#pending;
  }
}
