import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { TenantryError } from '../errors/catalog.ts';

/** Which request a key stands for: per tenant, key, method and route. */
export interface IdempotencyScope {
  readonly tenantId: string;
  readonly key: string;
  readonly method: string;
  readonly route: string;
}

/** A stored response, replayed to every retry with the same key and request. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string | null;
}

/** What {@link IdempotencyStore.claim} decided. */
export type IdempotencyClaim =
  | { readonly kind: 'claimed'; readonly claim: string }
  | { readonly kind: 'replay'; readonly response: StoredResponse };

interface KeyRow {
  fingerprint: Buffer;
  state: 'running' | 'done';
  status: number | null;
  headers: Record<string, string> | null;
  body: string | null;
}

/**
 * Responses of requests sent with an `Idempotency-Key`, in the control plane
 * (`tenantry.idempotency_keys`, admin pool). A request first claims its key: the first
 * one runs and its response is stored for `ttlMs` (24 h); a retry with the same request
 * gets that response again, with another request `IDEMPOTENCY_KEY_REUSED` (422), and
 * while the first is still running `IDEMPOTENCY_KEY_IN_USE` (409). A claim whose holder
 * died is taken over after `leaseMs`.
 *
 * @example
 * ```ts
 * const store = new IdempotencyStore(tenantry.adminPool);
 * const outcome = await store.claim({ tenantId, key, method: 'POST', route: '/v1/items' }, fingerprint);
 * if (outcome.kind === 'claimed') await store.complete(scope, outcome.claim, { status: 201, headers: {}, body });
 * ```
 */
export class IdempotencyStore {
  readonly #pool: Pool;
  readonly #ttlMs: number;
  readonly #leaseMs: number;

  constructor(pool: Pool, options: { ttlMs?: number; leaseMs?: number } = {}) {
    this.#pool = pool;
    this.#ttlMs = options.ttlMs ?? 24 * 3_600_000;
    this.#leaseMs = options.leaseMs ?? 60_000;
  }

  /** Claims `scope` for a request with `fingerprint`, or says what to answer instead. */
  async claim(scope: IdempotencyScope, fingerprint: Buffer): Promise<IdempotencyClaim> {
    const claim = randomUUID();
    const key = [scope.tenantId, scope.key, scope.method, scope.route];
    // New key, an expired one, or a running claim whose holder is gone (same request only).
    const { rowCount } = await this.#pool.query(
      `INSERT INTO tenantry.idempotency_keys AS k
         (tenant_id, key, method, route, fingerprint, claim, state, locked_until, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'running',
               now() + make_interval(secs => $7 / 1000.0), now() + make_interval(secs => $8 / 1000.0))
       ON CONFLICT (tenant_id, key, method, route) DO UPDATE
         SET fingerprint = EXCLUDED.fingerprint, claim = EXCLUDED.claim, state = 'running',
             locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at, created_at = now(),
             status = NULL, headers = NULL, body = NULL
         WHERE k.expires_at <= now()
            OR (k.state = 'running' AND k.locked_until <= now() AND k.fingerprint = EXCLUDED.fingerprint)`,
      [...key, fingerprint, claim, this.#leaseMs, this.#ttlMs],
    );
    if (rowCount === 1) return { kind: 'claimed', claim };
    const { rows } = await this.#pool.query<KeyRow>(
      `SELECT fingerprint, state, status, headers, body FROM tenantry.idempotency_keys
        WHERE tenant_id = $1 AND key = $2 AND method = $3 AND route = $4`,
      key,
    );
    const row = rows[0];
    if (row && !row.fingerprint.equals(fingerprint)) throw new TenantryError('IDEMPOTENCY_KEY_REUSED');
    if (row?.state !== 'done' || row.status === null) throw new TenantryError('IDEMPOTENCY_KEY_IN_USE');
    return { kind: 'replay', response: { status: row.status, headers: row.headers ?? {}, body: row.body } };
  }

  /** Stores the response of a claimed request (only while the claim is still this one's). */
  async complete(scope: IdempotencyScope, claim: string, response: StoredResponse): Promise<void> {
    await this.#pool.query(
      `UPDATE tenantry.idempotency_keys SET state = 'done', locked_until = NULL, status = $6, headers = $7, body = $8
        WHERE tenant_id = $1 AND key = $2 AND method = $3 AND route = $4 AND claim = $5`,
      [
        scope.tenantId,
        scope.key,
        scope.method,
        scope.route,
        claim,
        response.status,
        JSON.stringify(response.headers),
        response.body,
      ],
    );
  }

  /** Gives a claimed key up (the request failed on the server's side): a retry runs afresh. */
  async release(scope: IdempotencyScope, claim: string): Promise<void> {
    await this.#pool.query(
      `DELETE FROM tenantry.idempotency_keys
        WHERE tenant_id = $1 AND key = $2 AND method = $3 AND route = $4 AND claim = $5`,
      [scope.tenantId, scope.key, scope.method, scope.route, claim],
    );
  }

  /** Deletes expired keys, at most `batch` at a time; returns how many. */
  async purgeExpired(batch = 10_000): Promise<number> {
    const { rowCount } = await this.#pool.query(
      `DELETE FROM tenantry.idempotency_keys WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM tenantry.idempotency_keys WHERE expires_at <= now() LIMIT $1))`,
      [batch],
    );
    return rowCount ?? 0;
  }
}
