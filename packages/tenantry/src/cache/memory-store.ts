import { TenantryError } from '../errors/catalog.ts';
import type { EntryRef } from './cache-keys.ts';
import { type CacheStore, type Lease, type Lookup, type TenantUsage, utf8Bytes } from './cache-store.ts';

/** Bounds of the in-process cache. */
export interface MemoryStoreOptions {
  /** Most entries held, all tenants together (default 10,000); the least recently used go first. */
  readonly maxEntries?: number | undefined;
  /** Most bytes held (names and JSON payloads), all tenants together (default 64 MiB). */
  readonly maxBytes?: number | undefined;
}

interface Entry {
  readonly tenantId: string;
  readonly tags: readonly string[];
  readonly snapshot: string;
  readonly payload: string;
  readonly bytes: number;
  readonly expires: number;
}

interface Lock {
  readonly snapshot: string;
  readonly token: string;
  readonly expires: number;
}

/** What one tenant holds: the keys of its entries and their bytes. */
interface Book {
  bytes: number;
  readonly keys: Set<string>;
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TenantryError('CONFIG_INVALID', `${name} must be a positive integer`);
  }
  return value;
}

/**
 * The in-process backend: a least-recently-used map bounded in entries and bytes, with the
 * same semantics as the Redis backend (versions, leases), so the cache behaves the same on
 * both. A version is a number never reused; "bumping" one is forgetting it, so that the
 * next lookup mints a new one and every entry and lease made under the old one is a miss.
 * Accounting per tenant is exact: the bytes of its live entries.
 *
 * @example
 * ```ts
 * const cache = new TenantScopedCache({ store: new MemoryStore({ maxEntries: 1000, maxBytes: 8 << 20 }) });
 * ```
 */
export class MemoryStore implements CacheStore {
  readonly kind = 'memory';
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  /** Insertion order is recency order: a hit moves its entry to the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #locks = new Map<string, Lock>();
  readonly #versions = new Map<string, string>();
  readonly #books = new Map<string, Book>();
  #bytes = 0;
  #nextVersion = 0;

  constructor(options: MemoryStoreOptions = {}) {
    this.#maxEntries = positive('maxEntries', options.maxEntries ?? 10_000);
    this.#maxBytes = positive('maxBytes', options.maxBytes ?? 64 * 1024 * 1024);
  }

  async lookup(ref: EntryRef, acquire: boolean, token: string, lockTtlMs: number): Promise<Lookup> {
    const now = Date.now();
    const key = keyOf(ref);
    const snapshot = this.#snapshot(ref);
    const entry = this.#entries.get(key);
    if (entry) {
      if (entry.expires > now && entry.snapshot === snapshot) {
        this.#entries.delete(key);
        this.#entries.set(key, entry);
        return { kind: 'hit', payload: entry.payload };
      }
      this.#remove(key);
    }
    const lock = this.#locks.get(key);
    if (lock && lock.expires > now && lock.snapshot === snapshot) return { kind: 'busy', holder: lock.token };
    if (!acquire) return { kind: 'miss' };
    this.#locks.set(key, { snapshot, token, expires: now + lockTtlMs });
    return { kind: 'lease', lease: { token, snapshot } };
  }

  async store(ref: EntryRef, lease: Lease, payload: string, ttlMs: number): Promise<boolean> {
    const key = keyOf(ref);
    const lock = this.#locks.get(key);
    if (!lock || lock.token !== lease.token || lock.expires <= Date.now()) return false;
    this.#locks.delete(key);
    if (this.#snapshot(ref) !== lease.snapshot) return false;
    this.#put(ref, key, lease.snapshot, payload, ttlMs);
    return true;
  }

  async release(ref: EntryRef, lease: Lease): Promise<void> {
    const key = keyOf(ref);
    if (this.#locks.get(key)?.token === lease.token) this.#locks.delete(key);
  }

  async set(ref: EntryRef, payload: string, ttlMs: number): Promise<void> {
    const key = keyOf(ref);
    this.#locks.delete(key);
    this.#put(ref, key, this.#snapshot(ref), payload, ttlMs);
  }

  async delete(ref: EntryRef): Promise<void> {
    const key = keyOf(ref);
    this.#locks.delete(key);
    this.#remove(key);
  }

  async invalidateTag(tenantId: string, tag: string): Promise<void> {
    this.#versions.delete(`${tenantId}\0#t:${tag}`);
    for (const key of this.#books.get(tenantId)?.keys ?? []) {
      if (this.#entries.get(key)?.tags.includes(tag)) this.#remove(key);
    }
  }

  async flush(tenantId: string): Promise<void> {
    this.#versions.delete(`${tenantId}\0#v`);
    for (const key of [...(this.#books.get(tenantId)?.keys ?? [])]) this.#remove(key);
  }

  async purge(tenantId: string): Promise<void> {
    await this.flush(tenantId);
    const prefix = `${tenantId}\0`;
    for (const map of [this.#locks, this.#versions]) {
      for (const key of [...map.keys()]) if (key.startsWith(prefix)) map.delete(key);
    }
  }

  async count(tenantId: string): Promise<number> {
    const prefix = `${tenantId}\0`;
    let n = this.#books.get(tenantId)?.keys.size ?? 0;
    for (const map of [this.#locks, this.#versions]) for (const key of map.keys()) if (key.startsWith(prefix)) n++;
    return n;
  }

  async usage(tenantId: string): Promise<TenantUsage> {
    const book = this.#books.get(tenantId);
    return { bytes: book?.bytes ?? 0, entries: book?.keys.size ?? 0, measure: 'exact' };
  }

  /** Entries and bytes held, all tenants together. */
  size(): { entries: number; bytes: number } {
    return { entries: this.#entries.size, bytes: this.#bytes };
  }

  #snapshot(ref: EntryRef): string {
    let snapshot = this.#version(`${ref.tenantId}\0#v`);
    for (const tag of ref.tags) snapshot += `,${this.#version(`${ref.tenantId}\0#t:${tag}`)}`;
    return snapshot;
  }

  #version(key: string): string {
    let version = this.#versions.get(key);
    if (version === undefined) {
      // Versions of tenants that hold nothing are cheap to forget (it only turns leases
      // made under them into refused stores); do so before the map outgrows the entries.
      if (this.#versions.size >= 4 * this.#maxEntries + 1024) this.#forgetIdleVersions();
      version = String(++this.#nextVersion);
      this.#versions.set(key, version);
    }
    return version;
  }

  #forgetIdleVersions(): void {
    for (const key of this.#versions.keys()) {
      if (!this.#books.has(key.slice(0, key.indexOf('\0')))) this.#versions.delete(key);
    }
  }

  #put(ref: EntryRef, key: string, snapshot: string, payload: string, ttlMs: number): void {
    this.#remove(key);
    const bytes = utf8Bytes(ref.name) + utf8Bytes(payload);
    if (bytes > this.#maxBytes) return; // would evict everything and still not fit
    this.#entries.set(key, {
      tenantId: ref.tenantId,
      tags: ref.tags,
      snapshot,
      payload,
      bytes,
      expires: Date.now() + ttlMs,
    });
    this.#bytes += bytes;
    let book = this.#books.get(ref.tenantId);
    if (!book) {
      book = { bytes: 0, keys: new Set() };
      this.#books.set(ref.tenantId, book);
    }
    book.bytes += bytes;
    book.keys.add(key);
    while (this.#entries.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      const oldest = this.#entries.keys().next().value as string;
      this.#remove(oldest);
    }
  }

  #remove(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
    const book = this.#books.get(entry.tenantId);
    if (!book) return;
    book.bytes -= entry.bytes;
    book.keys.delete(key);
    if (book.keys.size === 0) this.#books.delete(entry.tenantId);
  }
}

function keyOf(ref: EntryRef): string {
  return `${ref.tenantId}\0${ref.name}`;
}
