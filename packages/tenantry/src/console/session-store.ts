import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';

/** A signed-in console session, as the request handlers see it. */
export interface ConsoleSession {
  /** Who signed in: `admin-token` (the only credential the console accepts so far). */
  readonly actor: string;
  /** The token every form and htmx request must echo (`_csrf` field or `x-csrf-token` header). */
  readonly csrfToken: string;
  /** A short, stable label of the session for audit actors (never the token). */
  readonly label: string;
  readonly expiresAt: Date;
}

/** Options of {@link ConsoleSessionStore}. */
export interface ConsoleSessionOptions {
  /** Idle lifetime: a session not used for this long is refused (default 30 min). */
  idleMs?: number;
  /** Absolute lifetime from sign-in, whatever the use (default 12 h). */
  maxAgeMs?: number;
}

const hashOf = (token: string) => createHash('sha256').update(token).digest();
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/**
 * Console sessions in `tenantry.console_sessions` (control-plane migration 0019): the cookie
 * carries 32 random bytes, the table only their SHA-256, so a read of the table signs no one
 * in. A session ends when it is idle for `idleMs`, `maxAgeMs` after sign-in, or at sign-out
 * (the row is deleted: every instance refuses the cookie at once).
 *
 * @example
 * ```ts
 * const sessions = new ConsoleSessionStore(tenantry.adminPool);
 * const { token } = await sessions.create('admin-token');
 * const session = await sessions.find(token); // undefined once expired or signed out
 * ```
 */
export class ConsoleSessionStore {
  readonly #pool: Pool;
  readonly #idleMs: number;
  readonly #maxAgeMs: number;

  constructor(pool: Pool, options: ConsoleSessionOptions = {}) {
    this.#pool = pool;
    this.#idleMs = options.idleMs ?? 30 * 60_000;
    this.#maxAgeMs = options.maxAgeMs ?? 12 * 3_600_000;
  }

  /** Idle lifetime in milliseconds (the cookie's `Max-Age` follows it). */
  get idleMs(): number {
    return this.#idleMs;
  }

  /** Starts a session for `actor`; the returned token goes into the cookie and nowhere else. */
  async create(actor: string): Promise<{ token: string; session: ConsoleSession }> {
    const token = randomBytes(32).toString('base64url');
    const csrfToken = randomBytes(32).toString('base64url');
    const { rows } = await this.#pool.query<{ expires_at: Date }>(
      `INSERT INTO tenantry.console_sessions (token_hash, csrf_token, actor, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4 / 1000.0)) RETURNING expires_at`,
      [hashOf(token), csrfToken, actor, Math.min(this.#idleMs, this.#maxAgeMs)],
    );
    const expiresAt = (rows[0] as { expires_at: Date }).expires_at;
    return { token, session: { actor, csrfToken, label: labelOf(token), expiresAt } };
  }

  /**
   * The live session of `token`, its idle deadline moved on (never past the absolute one);
   * `undefined` for a token that is malformed, unknown, expired or signed out. A page view is
   * a read: the deadline is written at most once a minute per session, not on every request.
   */
  async find(token: string | undefined): Promise<ConsoleSession | undefined> {
    if (!token || !TOKEN.test(token)) return undefined;
    const hash = hashOf(token);
    const { rows } = await this.#pool.query<{ csrf_token: string; actor: string; expires_at: Date; stale: boolean }>(
      `SELECT csrf_token, actor, expires_at, last_seen_at < now() - interval '1 minute' AS stale
         FROM tenantry.console_sessions WHERE token_hash = $1 AND expires_at > now()`,
      [hash],
    );
    const row = rows[0];
    if (!row) return undefined;
    let expiresAt = row.expires_at;
    if (row.stale) {
      const touched = await this.#pool.query<{ expires_at: Date }>(
        `UPDATE tenantry.console_sessions
            SET last_seen_at = now(),
                expires_at = least(now() + make_interval(secs => $2 / 1000.0),
                                   created_at + make_interval(secs => $3 / 1000.0))
          WHERE token_hash = $1 AND expires_at > now()
          RETURNING expires_at`,
        [hash, this.#idleMs, this.#maxAgeMs],
      );
      const updated = touched.rows[0];
      if (!updated) return undefined; // expired or signed out in between
      expiresAt = updated.expires_at;
    }
    return { actor: row.actor, csrfToken: row.csrf_token, label: labelOf(token), expiresAt };
  }

  /** Ends the session of `token` (sign-out); ended sessions and expired ones are removed. */
  async destroy(token: string | undefined): Promise<void> {
    if (!token || !TOKEN.test(token)) return;
    await this.#pool.query('DELETE FROM tenantry.console_sessions WHERE token_hash = $1 OR expires_at < now()', [
      hashOf(token),
    ]);
  }

  /** Removes expired rows (sign-in does it too, so the table stays small without upkeep). */
  async purgeExpired(): Promise<number> {
    const { rowCount } = await this.#pool.query('DELETE FROM tenantry.console_sessions WHERE expires_at < now()');
    return rowCount ?? 0;
  }
}

/**
 * Whether `presented` is the session's CSRF token, in constant time.
 *
 * @example
 * ```ts
 * if (!sameToken(req.headers['x-csrf-token'], session.csrfToken)) throw new TenantryError('CONSOLE_CSRF');
 * ```
 */
export function sameToken(presented: unknown, expected: string): boolean {
  if (typeof presented !== 'string') return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Eight hex digits of the token's hash: names the session in audit actors without revealing it. */
function labelOf(token: string): string {
  return hashOf(`label:${token}`).toString('hex').slice(0, 8);
}
