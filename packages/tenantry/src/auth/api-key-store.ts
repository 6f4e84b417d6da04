import type pg from 'pg';
import { inTransaction } from '../control/admin-transaction.ts';
import { ChangeFeed } from '../control/change-feed.ts';
import { parseInput } from '../control/tenant-input.ts';
import type { ActorOption } from '../control/tenant-registry.ts';
import { writeAudit } from '../effects/audit.ts';
import { writeEvent } from '../effects/outbox.ts';
import { TenantryError } from '../errors/catalog.ts';
import { API_KEYS_CHANNEL } from '../migrate/api-keys-migration.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';
import { generateApiKey } from './api-key-format.ts';
import { type ApiKeyStoreOptions, type ResolvedApiKeyOptions, resolveApiKeyOptions } from './api-key-options.ts';
import {
  type ApiKeyRecord,
  type ApiKeyRow,
  API_KEY_COLUMNS as COLUMNS,
  CreateApiKeyInput,
  type CreatedApiKey,
  toApiKeyRecord as toRecord,
} from './api-key-record.ts';
import { ApiKeyUsage } from './api-key-usage.ts';
import { ApiKeyVerifier, apiKeyDigest, type VerifiedKey } from './api-key-verifier.ts';

/**
 * API keys of tenants, on the control plane: create (the key is shown once), list,
 * revoke, and verify on every request.
 *
 * **Hashing.** A key is stored only as HMAC-SHA256 under the `api-key-hash` key derived
 * from `TENANTRY_SECRET`, compared in constant time. Not bcrypt or argon2: those slow
 * hashes exist to stretch low-entropy passwords against guessing. A key's secret part has
 * ~190 bits of entropy, so guessing is hopeless at any hash speed, and a slow hash would
 * only add latency (and a CPU-exhaustion lever) to every request. `bench/api-keys.ts`
 * measured 3,305 uncached verifications/s (indexed lookup + HMAC, p50 0.14 ms, 1 client)
 * against 5.5 bcrypt cost-10 verifications/s (bcryptjs, p50 110 ms, no lookup), ~600×,
 * on a shared 2-CPU machine (BENCHMARKS.md). The HMAC's key adds what a bare SHA-256
 * would lack: a stolen table alone cannot even confirm a key.
 *
 * **Revocation.** A verified key is cached for at most `cacheTtlMs` (≤ 1 s), so a
 * revocation reaches every instance within a second; with {@link start} the store also
 * LISTENs on `tenantry_api_keys` (through a {@link ChangeFeed}) and evicts a key as soon
 * as its revocation commits.
 *
 * **Usage.** `last_used_at` and an `api_key.used` audit row (with a use count) are written
 * per key once per `lastUsedFlushMs`, in one statement, not once per request.
 *
 * @example
 * ```ts
 * const keys = new ApiKeyStore(tenantry.adminPool, keyRing.key('api-key-hash'), { prefix: 'frt' });
 * await keys.start();
 * const { key } = await keys.create(acme.id, { name: 'CI', environment: 'live', scopes: ['items:read'] });
 * const caller = await keys.verify(key); // { keyId, tenantId: acme.id, scopes: ['items:read'], environment: 'live' }
 * await keys.close();
 * ```
 */
export class ApiKeyStore {
  readonly #pool: pg.Pool;
  readonly #hmacKey: Buffer;
  readonly #options: ResolvedApiKeyOptions;
  readonly #verifier: ApiKeyVerifier;
  readonly #usage: ApiKeyUsage;
  /** The feed {@link start} opens when given none. */
  #ownFeed: ChangeFeed | undefined;
  /** Feeds revocations arrive from (own or callers'), each with its unsubscribe. */
  readonly #feeds = new Map<ChangeFeed, () => void>();
  #closed = false;

  /**
   * @param pool - the admin (owner) pool: the runtime role cannot read `tenantry.api_keys`.
   * @param hmacKey - `keyRing.key('api-key-hash')`, at least 32 bytes.
   */
  constructor(pool: pg.Pool, hmacKey: Buffer, options: ApiKeyStoreOptions = {}) {
    if (!Buffer.isBuffer(hmacKey) || hmacKey.length < 32) {
      throw new TenantryError(
        'CONFIG_INVALID',
        "the API key HMAC key must be a Buffer of at least 32 bytes (keyRing.key('api-key-hash'))",
      );
    }
    this.#pool = pool;
    this.#hmacKey = hmacKey;
    this.#options = resolveApiKeyOptions(options);
    this.#usage = new ApiKeyUsage(pool, { flushMs: this.#options.lastUsedFlushMs, logger: this.#options.logger });
    this.#verifier = new ApiKeyVerifier(pool, hmacKey, {
      prefix: this.#options.prefix,
      cacheTtlMs: this.#options.cacheTtlMs,
      cacheMaxEntries: this.#options.cacheMaxEntries,
      onVerified: (verified, at) => this.#usage.record(verified.keyId, at),
    });
  }

  /**
   * Creates a key for a tenant (active or suspended) and audits it in the same
   * transaction. The returned `key` is the only time the full key exists outside the
   * caller: it is not stored, logged or audited.
   *
   * @example
   * ```ts
   * const { key, record } = await keys.create(tenantId, { name: 'Deploy bot', environment: 'live',
   *   scopes: ['items:read', 'items:write'], expiresAt: '2030-01-01T00:00:00Z' }, { actor: 'admin@acme.test' });
   * ```
   */
  async create(tenantId: string, input: CreateApiKeyInput, options: ActorOption = {}): Promise<CreatedApiKey> {
    const data = parseInput(CreateApiKeyInput, input);
    if (typeof tenantId !== 'string' || !UUID.test(tenantId)) throw new TenantryError('TENANT_NOT_FOUND');
    const actor = options.actor ?? 'system';
    return inTransaction(this.#pool, async (client) => {
      // KEY SHARE: a concurrent purge of the tenant waits for this key, or this key for the purge.
      const tenant = await client.query<{ status: string }>(
        'SELECT status FROM tenantry.tenants WHERE id = $1 FOR KEY SHARE',
        [tenantId],
      );
      const status = tenant.rows[0]?.status;
      if (status === undefined) throw new TenantryError('TENANT_NOT_FOUND');
      if (status !== 'active' && status !== 'suspended') throw new TenantryError('TENANT_NOT_ACTIVE');
      // A lookup id collision (71 random bits) is all but impossible; still, never fail on one.
      for (let attempt = 0; attempt < 3; attempt++) {
        const { key, parsed } = generateApiKey({ prefix: this.#options.prefix, environment: data.environment });
        const { rows } = await client.query<ApiKeyRow>(
          `INSERT INTO tenantry.api_keys (tenant_id, name, environment, display_prefix, hash, scopes, expires_at, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (display_prefix) DO NOTHING
           RETURNING ${COLUMNS}`,
          [
            tenantId,
            data.name,
            data.environment,
            parsed.displayPrefix,
            apiKeyDigest(this.#hmacKey, key),
            data.scopes,
            data.expiresAt ?? null,
            actor,
          ],
        );
        const row = rows[0];
        if (!row) continue;
        await writeAudit(client, {
          actor,
          tenantId,
          action: 'api_key.created',
          details: {
            keyId: row.id,
            name: row.name,
            environment: row.environment,
            displayPrefix: row.display_prefix,
            scopes: row.scopes,
            expiresAt: row.expires_at,
          },
        });
        await writeEvent(client, {
          tenantId,
          type: 'api_key.created',
          actor,
          payload: { tenantId, keyId: row.id, name: row.name, environment: row.environment, scopes: row.scopes },
        });
        return Object.freeze({ key, record: toRecord(row) });
      }
      throw new TenantryError('INTERNAL', 'could not allocate a unique API key id');
    });
  }

  /**
   * The tenant's keys, revoked and expired ones included, oldest first. An unknown or
   * malformed tenant id has no keys.
   *
   * @example
   * ```ts
   * for (const k of await keys.list(tenantId)) console.log(k.displayPrefix, k.name, k.revokedAt);
   * ```
   */
  async list(tenantId: string): Promise<ApiKeyRecord[]> {
    if (typeof tenantId !== 'string' || !UUID.test(tenantId)) return [];
    const { rows } = await this.#pool.query<ApiKeyRow>(
      `SELECT ${COLUMNS} FROM tenantry.api_keys WHERE tenant_id = $1 ORDER BY created_at, id`,
      [tenantId],
    );
    return rows.map(toRecord);
  }

  /**
   * One key of the tenant; `NOT_FOUND` when it does not exist or belongs to another tenant.
   *
   * @example
   * ```ts
   * const record = await keys.get(tenantId, keyId);
   * ```
   */
  async get(tenantId: string, keyId: string): Promise<ApiKeyRecord> {
    if (!UUID.test(String(tenantId)) || !UUID.test(String(keyId))) throw new TenantryError('NOT_FOUND');
    const { rows } = await this.#pool.query<ApiKeyRow>(
      `SELECT ${COLUMNS} FROM tenantry.api_keys WHERE id = $1 AND tenant_id = $2`,
      [keyId, tenantId],
    );
    if (!rows[0]) throw new TenantryError('NOT_FOUND');
    return toRecord(rows[0]);
  }

  /**
   * Revokes a key of the tenant, audited in the same transaction; the table's trigger
   * NOTIFYs `tenantry_api_keys` from that transaction too, so listening stores evict it on
   * commit. A key of another tenant is `NOT_FOUND` and nothing changes (not even whether
   * it exists shows). Revoking a revoked key returns it unchanged.
   *
   * @example
   * ```ts
   * await keys.revoke(tenantId, keyId, { actor: 'admin@acme.test' });
   * ```
   */
  async revoke(tenantId: string, keyId: string, options: ActorOption = {}): Promise<ApiKeyRecord> {
    if (!UUID.test(String(tenantId)) || !UUID.test(String(keyId))) throw new TenantryError('NOT_FOUND');
    const record = await inTransaction(this.#pool, async (client) => {
      const current = await client.query<ApiKeyRow>(
        `SELECT ${COLUMNS} FROM tenantry.api_keys WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
        [keyId, tenantId],
      );
      const row = current.rows[0];
      if (!row) throw new TenantryError('NOT_FOUND');
      if (row.revoked_at) return toRecord(row);
      const { rows } = await client.query<ApiKeyRow>(
        `UPDATE tenantry.api_keys SET revoked_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
        [keyId],
      );
      await writeAudit(client, {
        actor: options.actor ?? 'system',
        tenantId,
        action: 'api_key.revoked',
        details: { keyId, name: row.name, displayPrefix: row.display_prefix },
      });
      await writeEvent(client, {
        tenantId,
        type: 'api_key.revoked',
        actor: options.actor ?? 'system',
        payload: { tenantId, keyId, name: row.name },
      });
      return toRecord(rows[0] as ApiKeyRow);
    });
    // This instance need not wait for its own notification.
    this.#verifier.evict(keyId);
    return record;
  }

  /**
   * Verifies a presented key: who is calling and with which scopes, or `undefined` for a
   * malformed, unknown, revoked or expired key. Malformed keys and wrong checksums are
   * rejected before any database work; a key in the cache costs one HMAC; otherwise one
   * indexed lookup. Throws only when the database is unreachable (a 503, not a 401).
   * The tenant's status is not checked here: admission (the next step of a request)
   * refuses suspended and offboarding tenants.
   *
   * @example
   * ```ts
   * const caller = await keys.verify(request.headers['x-api-key'] as string);
   * if (!caller) throw new TenantryError('UNAUTHORIZED');
   * ```
   */
  verify(presented: string): Promise<VerifiedKey | undefined> {
    return this.#verifier.verify(presented);
  }

  /**
   * Writes the usage gathered since the last flush: `last_used_at` per key and one
   * `api_key.used` audit row per key with its use count, in one statement. Runs on its own
   * every `lastUsedFlushMs` and on {@link close}; on failure the usage is kept for the next
   * attempt.
   *
   * @example
   * ```ts
   * await keys.flush(); // e.g. before reading last_used_at in a test
   * ```
   */
  flush(): Promise<void> {
    return this.#usage.flush();
  }

  /**
   * Starts listening for key changes, so revocations evict cached keys at once: on `feed`
   * when given (a server's shared {@link ChangeFeed}, which its owner closes; one store may
   * listen on several), else on a dedicated connection of its own (not one of the pool's). The feed reconnects
   * by itself when the connection drops and the cache is emptied meanwhile (a notification
   * may have been missed). Rejects when the first connection fails. Idempotent.
   *
   * @example
   * ```ts
   * await keys.start(); // or, sharing a server's feed: await keys.start(feed);
   * ```
   */
  start(feed?: ChangeFeed): Promise<void> {
    if (this.#closed) return Promise.reject(new TenantryError('CONFIG_INVALID', 'this ApiKeyStore is closed'));
    if (!feed && !this.#ownFeed) {
      const logger = this.#options.logger;
      this.#ownFeed = new ChangeFeed(this.#pool.options, logger ? { logger } : {});
    }
    const source = feed ?? (this.#ownFeed as ChangeFeed);
    if (!this.#feeds.has(source)) {
      const evict = (keyId: string | undefined) => (keyId ? this.#verifier.evict(keyId) : this.#verifier.clear());
      this.#feeds.set(source, source.on(API_KEYS_CHANNEL, evict));
    }
    return source.start();
  }

  /**
   * Stops listening (closing the store's own feed, never a caller's) and the flush timer,
   * then writes the pending usage. The pool is the caller's and stays open. A failed final
   * flush is reported to the logger, not thrown.
   *
   * @example
   * ```ts
   * await keys.close(); // before tenantry.close()
   * ```
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#usage.stop();
    for (const unsubscribe of this.#feeds.values()) unsubscribe();
    this.#feeds.clear();
    await this.#ownFeed?.close();
    this.#verifier.clear();
    await this.#usage
      .flush()
      .catch((error: unknown) =>
        this.#options.logger?.error({ err: (error as Error).message }, 'API key usage lost: the final flush failed'),
      );
  }
}
