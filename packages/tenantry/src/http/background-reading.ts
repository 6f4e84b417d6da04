/**
 * A figure read from the database for scrapes, whose reading costs more as the fleet grows
 * (storage summed over every tenant or every tenant schema). {@link latest} never waits: it
 * answers at once with the latest complete reading (`undefined` before the first one) and,
 * when there is none yet or it is older than `maxAgeMs`, starts the next reading in the
 * background (one at a time). So a scrape costs the same at 1,000 tenants and at 100,000;
 * the figure is at most `maxAgeMs` plus one reading's time old, and is absent from the
 * first scrape of a process. A failed reading keeps the previous one; the next
 * `latest()` tries again.
 *
 * @example
 * ```ts
 * const storage = new BackgroundReading(() => tenantry.usage.storageByTier(), 60_000);
 * for (const row of storage.latest() ?? []) gauge.set({ tier: row.tier }, row.bytes);
 * ```
 */
export class BackgroundReading<T> {
  readonly #read: () => Promise<T>;
  readonly #maxAgeMs: number;
  #latest: { readonly startedAt: number; readonly value: T } | undefined;
  #pending: Promise<void> | undefined;

  constructor(read: () => Promise<T>, maxAgeMs: number) {
    this.#read = read;
    this.#maxAgeMs = maxAgeMs;
  }

  /** The latest complete reading, or `undefined` before the first; starts the next one when due. */
  latest(): T | undefined {
    const latest = this.#latest;
    if (!latest || performance.now() - latest.startedAt >= this.#maxAgeMs) this.#refresh();
    return latest?.value;
  }

  /** Settles when the reading in flight, if any, has (for tests and orderly shutdowns). */
  async settled(): Promise<void> {
    await this.#pending;
  }

  #refresh(): void {
    if (this.#pending) return;
    const startedAt = performance.now();
    this.#pending = this.#read()
      .then(
        (value) => {
          this.#latest = { startedAt, value };
        },
        () => {
          // Kept: the previous reading is served, and the next latest() tries again.
        },
      )
      .finally(() => {
        this.#pending = undefined;
      });
  }
}
