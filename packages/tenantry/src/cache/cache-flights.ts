import { TenantryError } from '../errors/catalog.ts';
import type { EntryRef } from './cache-keys.ts';
import type { CacheCounters } from './cache-stats.ts';
import type { CacheStore, Lease } from './cache-store.ts';

/** A computation of this process, which calls of the same entry join instead of waiting. */
export interface Flight {
  /** The lease it stores under; empty when it computes without one (backend down). */
  readonly token: string;
  readonly ref: EntryRef;
  /** The JSON of its result, `undefined` for nothing to cache. */
  readonly payload: Promise<string | undefined>;
}

/** JSON of a value to cache; `undefined` for `undefined`; `USAGE_ERROR` when JSON cannot hold it. */
export function serialise(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  try {
    return JSON.stringify(value);
  } catch (error) {
    throw new TenantryError('USAGE_ERROR', 'a cached value must be JSON-serialisable', { cause: error });
  }
}

/** The value of a payload; every caller gets its own copy, so none can change another's. */
export function parse<T>(payload: string | undefined): T {
  return (payload === undefined ? undefined : JSON.parse(payload)) as T;
}

/**
 * The in-process half of stampede protection: the computations running in this process,
 * by entry. A call whose lookup finds the lease held by one of them awaits it instead of
 * polling; an invalidation in this process forgets the flights it covers, so no call that
 * starts after the invalidation joins a computation that may have read the old data.
 */
export class CacheFlights {
  readonly #store: CacheStore;
  readonly #counters: CacheCounters;
  readonly #onError: (error: unknown) => void;
  readonly #flights = new Map<string, Flight>();

  constructor(store: CacheStore, counters: CacheCounters, onError: (error: unknown) => void) {
    this.#store = store;
    this.#counters = counters;
    this.#onError = onError;
  }

  get(key: string): Flight | undefined {
    return this.#flights.get(key);
  }

  /**
   * Runs `compute` as this process's flight of the entry. With a lease, its result is
   * stored (unless the lease was lost meanwhile) before the flight settles; without one,
   * it is served only. A failure gives the lease up, so others need not wait for its TTL.
   */
  run<T>(
    ref: EntryRef,
    key: string,
    lease: Lease | undefined,
    compute: () => Promise<T> | T,
    ttlMs: number,
  ): Promise<string | undefined> {
    const flight: Flight = { token: lease?.token ?? '', ref, payload: this.#compute(ref, lease, compute, ttlMs) };
    this.#flights.set(key, flight);
    const done = () => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    };
    flight.payload.then(done, done);
    return flight.payload;
  }

  /** Forgets the flights of entries `covered` says an invalidation reaches. */
  forget(covered: (ref: EntryRef) => boolean): void {
    for (const [key, flight] of this.#flights) if (covered(flight.ref)) this.#flights.delete(key);
  }

  clear(): void {
    this.#flights.clear();
  }

  async #compute<T>(
    ref: EntryRef,
    lease: Lease | undefined,
    compute: () => Promise<T> | T,
    ttlMs: number,
  ): Promise<string | undefined> {
    this.#counters.computations++;
    let payload: string | undefined;
    try {
      payload = serialise(await compute());
    } catch (error) {
      if (lease) await this.#store.release(ref, lease).catch(this.#onError);
      throw error;
    }
    if (!lease) {
      this.#counters.uncached++;
    } else if (payload === undefined) {
      await this.#store.release(ref, lease).catch(this.#onError);
    } else {
      const stored = await this.#store.store(ref, lease, payload, ttlMs).catch((error) => {
        this.#onError(error);
        return false;
      });
      if (!stored) this.#counters.uncached++;
    }
    return payload;
  }
}
