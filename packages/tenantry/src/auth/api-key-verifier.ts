import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import { type ApiKeyEnvironment, parseApiKey } from './api-key-format.ts';
import type { Permission } from './permissions.ts';

/** A key that passed {@link ApiKeyStore.verify}: who is calling and what it may do. */
export interface VerifiedKey {
  readonly keyId: string;
  readonly tenantId: string;
  readonly scopes: readonly Permission[];
  readonly environment: ApiKeyEnvironment;
}

/** Settings of {@link ApiKeyVerifier}, validated by the store. */
export interface ApiKeyVerifierOptions {
  readonly prefix: string;
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
  /** Called for every key that verifies, with the time of use (for the usage flush). */
  readonly onVerified: (verified: VerifiedKey, at: number) => void;
}

interface VerifyRow {
  id: string;
  tenant_id: string;
  hash: Buffer;
  scopes: Permission[];
  environment: ApiKeyEnvironment;
  expires_at: Date | null;
}

interface CacheEntry {
  readonly verified: VerifiedKey;
  readonly freshUntil: number;
}

/**
 * One lookup through the unique index on `display_prefix`. Revoked and expired keys are
 * filtered by PostgreSQL's clock, the same one `revoke()` writes with.
 */
const VERIFY_SQL = `SELECT id, tenant_id, hash, scopes, environment, expires_at FROM tenantry.api_keys
  WHERE display_prefix = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`;

/** What `tenantry.api_keys.hash` holds for `key`: HMAC-SHA256 under the `api-key-hash` key. */
export function apiKeyDigest(hmacKey: Buffer, key: string): Buffer {
  return createHmac('sha256', hmacKey).update(key, 'utf8').digest();
}

/**
 * Checks presented keys against `tenantry.api_keys` and remembers the answer for at most
 * `cacheTtlMs`. {@link evict} and {@link clear} forget keys that changed; the store calls
 * them on a revocation (its own, or another instance's through the change feed).
 */
export class ApiKeyVerifier {
  readonly #pool: pg.Pool;
  readonly #hmacKey: Buffer;
  readonly #options: ApiKeyVerifierOptions;
  /**
   * Salted SHA-256 of a presented key → its verification. The digest covers lookup id and
   * secret alike; the salt is random per process, so nobody can aim at an entry.
   */
  readonly #cache = new Map<string, CacheEntry>();
  /** The cache key's salt: 32 random bytes as text, never stored or sent. */
  readonly #cacheSalt = randomBytes(32).toString('base64');
  /** Key id → its digest in {@link #cache}, so a notification (which names the id) can evict. */
  readonly #cachedIds = new Map<string, string>();
  /** Bumped by every eviction: a lookup that started before one must not cache what it read. */
  #epoch = 0;

  constructor(pool: pg.Pool, hmacKey: Buffer, options: ApiKeyVerifierOptions) {
    this.#pool = pool;
    this.#hmacKey = hmacKey;
    this.#options = options;
  }

  /** See {@link ApiKeyStore.verify}. */
  async verify(presented: string): Promise<VerifiedKey | undefined> {
    if (typeof presented !== 'string') return undefined;
    // The map is keyed by a salted one-shot SHA-256 (about 0.7 µs, where the HMAC that the
    // database holds costs 4–5 µs through createHmac): nobody can aim at a key without the
    // process's salt, so the lookup leaks nothing, and a hit computes no HMAC at all. The
    // database path below compares the HMAC in constant time. Only keys that parsed and
    // verified are ever cached, so a hit needs no parsing either.
    const cacheKey = hash('sha256', this.#cacheSalt + presented, 'base64');
    const now = Date.now();
    const hit = this.#cache.get(cacheKey);
    if (hit) {
      if (hit.freshUntil > now) {
        this.#options.onVerified(hit.verified, now);
        return hit.verified;
      }
      this.#drop(hit.verified.keyId);
    }
    const parsed = parseApiKey(presented, { prefix: this.#options.prefix });
    if (!parsed) return undefined;
    const digest = apiKeyDigest(this.#hmacKey, presented);
    const epoch = this.#epoch;
    // Freshness counts from before the lookup: the row read is at least this recent, so a
    // revocation committed after it is seen within cacheTtlMs, however slow the query.
    const readFrom = Date.now();
    const { rows } = await this.#pool.query<VerifyRow>({
      name: 'tenantry.api_keys.verify',
      text: VERIFY_SQL,
      values: [parsed.displayPrefix],
    });
    const row = rows[0];
    if (!row || row.hash.length !== digest.length || !timingSafeEqual(row.hash, digest)) return undefined;
    const verified: VerifiedKey = Object.freeze({
      keyId: row.id,
      tenantId: row.tenant_id,
      scopes: Object.freeze([...row.scopes]),
      environment: row.environment,
    });
    if (this.#options.cacheTtlMs > 0 && epoch === this.#epoch) {
      const expires = row.expires_at ? row.expires_at.getTime() : Number.POSITIVE_INFINITY;
      this.#remember(cacheKey, { verified, freshUntil: Math.min(readFrom + this.#options.cacheTtlMs, expires) });
    }
    this.#options.onVerified(verified, Date.now());
    return verified;
  }

  /** Forgets a key that changed, and keeps lookups already in flight from caching it again. */
  evict(keyId: string): void {
    this.#epoch++;
    this.#drop(keyId);
  }

  /** Forgets every key: a change may have gone unseen (no listener, or a lost one). */
  clear(): void {
    this.#epoch++;
    this.#cache.clear();
    this.#cachedIds.clear();
  }

  #remember(cacheKey: string, entry: CacheEntry): void {
    this.#drop(entry.verified.keyId);
    if (this.#cache.size >= this.#options.cacheMaxEntries) {
      const oldest = this.#cache.values().next().value;
      if (oldest) this.#drop(oldest.verified.keyId);
    }
    this.#cache.set(cacheKey, entry);
    this.#cachedIds.set(entry.verified.keyId, cacheKey);
  }

  #drop(keyId: string): void {
    const cacheKey = this.#cachedIds.get(keyId);
    if (cacheKey === undefined) return;
    this.#cachedIds.delete(keyId);
    this.#cache.delete(cacheKey);
  }
}
