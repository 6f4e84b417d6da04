import { createHmac, timingSafeEqual } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import type { Logger } from '../config.ts';
import { inTransaction } from '../control/admin-transaction.ts';
import { parseInput } from '../control/tenant-input.ts';
import type { ActorOption } from '../control/tenants.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { API_KEYS_CHANNEL } from '../migrate/api-keys-migration.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';
import {
  API_KEY_ENVIRONMENTS,
  type ApiKeyEnvironment,
  DEFAULT_API_KEY_PREFIX,
  generateApiKey,
  isApiKeyPrefix,
  parseApiKey,
} from './api-key-format.ts';
import { isPermission, type Permission } from './permissions.ts';

/** An API key as `list()` shows it: never the full key, never its hash. */
export interface ApiKeyRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly environment: ApiKeyEnvironment;
  /** `<prefix>_<env>_<lookup id>`: public, enough to recognise the key in a list or a log. */
  readonly displayPrefix: string;
  readonly scopes: readonly Permission[];
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  /** Updated in batches (every `lastUsedFlushMs`), so it may lag by that much. */
  readonly lastUsedAt: Date | null;
  readonly createdAt: Date;
  readonly createdBy: string;
}

/** What `create()` returns: the key, shown this once, and its record. */
export interface CreatedApiKey {
  readonly key: string;
  readonly record: ApiKeyRecord;
}

/** A key that passed {@link ApiKeyStore.verify}: who is calling and what it may do. */
export interface VerifiedKey {
  readonly keyId: string;
  readonly tenantId: string;
  readonly scopes: readonly Permission[];
  readonly environment: ApiKeyEnvironment;
}

/** Options of {@link ApiKeyStore}. */
export interface ApiKeyStoreOptions {
  /** Prefix of new keys, and the only one `verify()` accepts: 2–8 lower-case letters. Default `tnt`. */
  prefix?: string;
  /**
   * How long a verified key may be answered from memory, in ms: 0–1000, default 1000. This
   * bounds how long a revocation can go unseen by an instance whose listener is down.
   */
  cacheTtlMs?: number;
  /** Most keys kept in the verification cache; the oldest go first. Default 10 000. */
  cacheMaxEntries?: number;
  /** How often `last_used_at` and usage audit rows are written, in ms. Default 5000. */
  lastUsedFlushMs?: number;
  /** Where a failed background flush or a lost listener is reported. */
  logger?: Logger;
}

interface ResolvedOptions {
  readonly prefix: string;
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
  readonly lastUsedFlushMs: number;
  readonly logger: Logger | undefined;
}

/** Input of `create()` (and of `POST /v1/tenants/:id/keys`). */
export const CreateApiKeyInput = z
  .object({
    name: z.string().trim().min(1).max(100),
    environment: z.enum(API_KEY_ENVIRONMENTS),
    scopes: z
      .array(z.string().refine(isPermission, 'not a permission: expected lower-case resource:action'))
      .max(100)
      .default([])
      .transform((scopes) => [...new Set(scopes)]),
    expiresAt: z
      .union([z.date(), z.iso.datetime({ offset: true })])
      .transform((value) => new Date(value))
      .refine((date) => date.getTime() > Date.now(), 'must be in the future')
      .nullable()
      .optional(),
  })
  .strict();

export type CreateApiKeyInput = z.input<typeof CreateApiKeyInput>;

interface ApiKeyRow {
  id: string;
  tenant_id: string;
  name: string;
  environment: ApiKeyEnvironment;
  display_prefix: string;
  scopes: Permission[];
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_at: Date;
  created_by: string;
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

interface Usage {
  first: number;
  last: number;
  uses: number;
}

/** Every column but `hash`: what leaves the store. */
const COLUMNS =
  'id, tenant_id, name, environment, display_prefix, scopes, expires_at, revoked_at, last_used_at, created_at, created_by';

/**
 * One lookup through the unique index on `display_prefix`. Revoked and expired keys are
 * filtered by PostgreSQL's clock, the same one `revoke()` writes with.
 */
const VERIFY_SQL = `SELECT id, tenant_id, hash, scopes, environment, expires_at FROM tenantry.api_keys
  WHERE display_prefix = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`;

/**
 * The usage flush: `last_used_at` of every key used since the last flush and one
 * `api_key.used` audit row per key, in one statement (one round trip, one transaction).
 * It does not go through `writeAudit()`, which writes one row per call; the columns are
 * the same. Keys deleted meanwhile simply match nothing.
 */
const FLUSH_SQL = `WITH used AS (
  SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::integer[]) AS u(id, first_at, last_at, uses)
), touched AS (
  UPDATE tenantry.api_keys k SET last_used_at = greatest(k.last_used_at, used.last_at)
    FROM used WHERE k.id = used.id
  RETURNING k.id, k.tenant_id
)
INSERT INTO tenantry.audit_log (actor, tenant_id, action, details)
SELECT 'api-key:' || t.id, t.tenant_id, 'api_key.used',
       jsonb_build_object('keyId', t.id, 'uses', u.uses, 'firstUsedAt', u.first_at, 'lastUsedAt', u.last_at)
  FROM touched t JOIN used u ON u.id = t.id`;

/** How long to wait before reconnecting a lost listener, in ms. */
const RECONNECT_MS = 1000;

function toRecord(row: ApiKeyRow): ApiKeyRecord {
  return Object.freeze({
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    environment: row.environment,
    displayPrefix: row.display_prefix,
    scopes: Object.freeze([...row.scopes]),
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
    createdBy: row.created_by,
  });
}

function resolveOptions(options: ApiKeyStoreOptions): ResolvedOptions {
  const prefix = options.prefix ?? DEFAULT_API_KEY_PREFIX;
  if (!isApiKeyPrefix(prefix)) {
    throw new TenantryError(
      'CONFIG_INVALID',
      `API key prefix must be 2-8 lower-case letters, got ${JSON.stringify(prefix)}`,
    );
  }
  const int = (value: number | undefined, fallback: number, min: number, max: number, what: string) => {
    const v = value ?? fallback;
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new TenantryError('CONFIG_INVALID', `${what} must be an integer from ${min} to ${max}`);
    }
    return v;
  };
  return Object.freeze({
    prefix,
    // Above 1 s a revocation could outlive the guarantee when notifications are lost.
    cacheTtlMs: int(options.cacheTtlMs, 1000, 0, 1000, 'cacheTtlMs'),
    cacheMaxEntries: int(options.cacheMaxEntries, 10_000, 1, 10_000_000, 'cacheMaxEntries'),
    lastUsedFlushMs: int(options.lastUsedFlushMs, 5000, 1, 3_600_000, 'lastUsedFlushMs'),
    logger: options.logger,
  });
}

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
 * LISTENs on `tenantry_api_keys` and evicts a key as soon as its revocation commits.
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
  readonly #options: ResolvedOptions;
  /** HMAC digest of a presented key → its verification. The digest covers lookup id and secret alike. */
  readonly #cache = new Map<string, CacheEntry>();
  /** Key id → its digest in {@link #cache}, so a notification (which names the id) can evict. */
  readonly #cachedIds = new Map<string, string>();
  /** Bumped by every eviction: a lookup that started before one must not cache what it read. */
  #epoch = 0;
  #usage = new Map<string, Usage>();
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #listener: pg.Client | undefined;
  #listening: Promise<void> | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
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
    this.#options = resolveOptions(options);
  }

  #digest(key: string): Buffer {
    return createHmac('sha256', this.#hmacKey).update(key, 'utf8').digest();
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
            this.#digest(key),
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
      return toRecord(rows[0] as ApiKeyRow);
    });
    // This instance need not wait for its own notification.
    this.#evict(keyId);
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
  async verify(presented: string): Promise<VerifiedKey | undefined> {
    const parsed = parseApiKey(presented, { prefix: this.#options.prefix });
    if (!parsed) return undefined;
    const digest = this.#digest(presented);
    // The map is keyed by the digest, which nobody can aim at without the HMAC key, so the
    // lookup leaks nothing; the database path below compares in constant time.
    const cacheKey = digest.toString('base64');
    const now = Date.now();
    const hit = this.#cache.get(cacheKey);
    if (hit) {
      if (hit.freshUntil > now) {
        this.#recordUse(hit.verified, now);
        return hit.verified;
      }
      this.#drop(hit.verified.keyId);
    }
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
    this.#recordUse(verified, Date.now());
    return verified;
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

  /** Forgets a key that changed, and keeps lookups already in flight from caching it again. */
  #evict(keyId: string): void {
    this.#epoch++;
    this.#drop(keyId);
  }

  #clearCache(): void {
    this.#epoch++;
    this.#cache.clear();
    this.#cachedIds.clear();
  }

  #recordUse(verified: VerifiedKey, at: number): void {
    // After close() nothing would ever write it.
    if (this.#closed) return;
    const usage = this.#usage.get(verified.keyId);
    if (usage) {
      usage.uses++;
      if (at > usage.last) usage.last = at;
    } else {
      this.#usage.set(verified.keyId, { first: at, last: at, uses: 1 });
    }
    this.#armFlush();
  }

  /** The flush timer runs only while there is usage to write, so an idle store costs nothing. */
  #armFlush(): void {
    if (this.#flushTimer || this.#closed) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.flush().catch((error: unknown) =>
        this.#options.logger?.warn({ err: (error as Error).message }, 'API key usage flush failed; will retry'),
      );
    }, this.#options.lastUsedFlushMs);
    this.#flushTimer.unref();
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
    const run = this.#flushing.then(() => this.#flushOnce());
    this.#flushing = run.catch(() => {});
    return run;
  }

  async #flushOnce(): Promise<void> {
    if (this.#usage.size === 0) return;
    const batch = this.#usage;
    this.#usage = new Map();
    // Sorted ids: two instances flushing the same keys lock their rows in the same order.
    const ids = [...batch.keys()].sort();
    const get = (id: string) => batch.get(id) as Usage;
    try {
      await this.#pool.query(FLUSH_SQL, [
        ids,
        ids.map((id) => new Date(get(id).first)),
        ids.map((id) => new Date(get(id).last)),
        ids.map((id) => get(id).uses),
      ]);
    } catch (error) {
      for (const [id, usage] of batch) {
        const later = this.#usage.get(id);
        this.#usage.set(
          id,
          later
            ? {
                first: Math.min(usage.first, later.first),
                last: Math.max(usage.last, later.last),
                uses: usage.uses + later.uses,
              }
            : usage,
        );
      }
      this.#armFlush();
      throw error;
    }
  }

  /**
   * Starts listening for key changes on a dedicated connection (not one of the pool's),
   * so revocations evict cached keys at once. Reconnects by itself when the connection
   * drops, and empties the cache meanwhile (a notification may have been missed). Rejects
   * when the first connection fails. Idempotent.
   *
   * @example
   * ```ts
   * await keys.start();
   * ```
   */
  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new TenantryError('CONFIG_INVALID', 'this ApiKeyStore is closed'));
    this.#listening ??= this.#listen().catch((error: unknown) => {
      this.#listening = undefined;
      throw error;
    });
    return this.#listening;
  }

  async #listen(): Promise<void> {
    const client = new pg.Client(this.#pool.options);
    client.on('notification', (message) => {
      if (message.channel === API_KEYS_CHANNEL && message.payload) this.#evict(message.payload);
    });
    // Without an 'error' listener a dropped connection would crash the process.
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${API_KEYS_CHANNEL}`);
    } catch (error) {
      client.end().catch(() => {});
      throw error;
    }
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#listener = client;
    // Whatever was cached before LISTEN took effect may have missed a revocation.
    this.#clearCache();
  }

  #lost(client: pg.Client, error?: Error): void {
    if (this.#listener !== client) return;
    this.#listener = undefined;
    this.#clearCache();
    if (this.#closed) return;
    this.#options.logger?.warn({ err: error?.message }, 'API key listener lost; reconnecting');
    client.end().catch(() => {});
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnectTimer) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#listen().catch(() => this.#scheduleReconnect());
    }, RECONNECT_MS);
    this.#reconnectTimer.unref();
  }

  /**
   * Stops the listener and the flush timer, then writes the pending usage. The pool is the
   * caller's and stays open. A failed final flush is reported to the logger, not thrown.
   *
   * @example
   * ```ts
   * await keys.close(); // before tenantry.close()
   * ```
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#flushTimer);
    this.#reconnectTimer = undefined;
    this.#flushTimer = undefined;
    await this.#listening?.catch(() => {});
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    this.#clearCache();
    await this.flush().catch((error: unknown) =>
      this.#options.logger?.error({ err: (error as Error).message }, 'API key usage lost: the final flush failed'),
    );
  }
}
