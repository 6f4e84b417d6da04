import { randomBytes, randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { z } from 'zod';
import { integerOption } from '../config.ts';
import { inTransaction } from '../control/admin-transaction.ts';
import { parseInput } from '../control/tenant-input.ts';
import { writeAudit } from '../effects/audit.ts';
import { hmacHex, type KeyRing } from '../secrets/keys.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';
import { type AccessSession, signAccessToken, unauthorized, verifyAccessToken } from './access-token.ts';
import { PasswordHasher } from './passwords.ts';
import type { Principal } from './permissions.ts';
import { rolePermissions } from './roles.ts';

/** What `login()` and `refresh()` return. */
export interface TokenPair {
  /** A JWT (HS256) to send as `Authorization: Bearer …`. */
  readonly accessToken: string;
  /** Opaque; exchange it once with `refresh()`. Keep it out of logs and URLs. */
  readonly refreshToken: string;
  /** Lifetime of the access token in seconds (OAuth 2.0 `expires_in`). */
  readonly expiresIn: number;
}

/** Options of {@link TokenService}; all optional. */
export interface TokenServiceOptions {
  /** Access-token lifetime in seconds (default 900, at most 86 400). */
  readonly accessTtlSeconds?: number;
  /** Refresh-token lifetime in seconds, renewed by each refresh (default 30 days). */
  readonly refreshTtlSeconds?: number;
  /** Accepted clock skew when checking `exp`/`iat`, in seconds (default 0, at most 300). */
  readonly clockToleranceSeconds?: number;
  /** Verifies passwords; share the one `UserStore` uses. */
  readonly passwords?: PasswordHasher;
}

/** Input of {@link TokenService.login}. */
export const LoginInput = z
  .object({
    /** The tenant's id or slug. */
    tenant: z.string().min(1).max(100),
    email: z.string().trim().min(1).max(254),
    // Any non-empty string up to the length a password may have: a login must not tell
    // "this could never be a password" apart from "wrong password" by more than shape.
    password: z.string().min(1).max(1024),
  })
  .strict();
export type LoginInput = z.input<typeof LoginInput>;

/** 32 random bytes, base64url without padding. */
const REFRESH_TOKEN = /^[A-Za-z0-9_-]{43}$/;

function resolveOptions(options: TokenServiceOptions) {
  return Object.freeze({
    accessTtl: integerOption(options.accessTtlSeconds, 900, 1, 86_400, 'accessTtlSeconds'),
    refreshTtl: integerOption(options.refreshTtlSeconds, 30 * 86_400, 60, 366 * 86_400, 'refreshTtlSeconds'),
    clockTolerance: integerOption(options.clockToleranceSeconds, 0, 0, 300, 'clockToleranceSeconds'),
  });
}

/** The family lock: a refresh, a logout and a reuse revocation of one family never interleave. */
const FAMILY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('tenantry:refresh-family:' || $1, 0))";

/**
 * Password login, short-lived access JWTs and rotating refresh tokens for tenant users.
 *
 * - Access token: JWT, HS256 under the KeyRing's `jwt-signing` key; claims `sub` (user),
 *   `tid` (tenant), `role`, `perms` (custom roles only), `iss`/`aud` `tenantry`, `iat`,
 *   `exp` (15 min by default), `jti` (signed and checked in `access-token.ts`).
 *   {@link TokenService.verifyAccessToken} does not touch the database: the role inside
 *   the token is trusted for its short life, so a role change or removal takes effect at
 *   the next refresh, at most `accessTtlSeconds` later. Tenant status is checked by
 *   admission (suspended tenants are refused there), not here.
 * - Refresh token: 32 random bytes, stored only as HMAC-SHA256 under `refresh-token-hash`.
 *   Each is good for one refresh, which issues a new one in the same family. Presenting a
 *   used token again means two parties hold the family (RFC 9700 §4.14.2): the whole family
 *   is revoked and audited as `auth.refresh_reuse_detected`. That includes two refreshes of
 *   one token racing each other: exactly one gets a new pair, and the loser revokes it —
 *   a client must refresh single-flight.
 *
 * @example
 * ```ts
 * const auth = new TokenService(tenantry.adminPool, keys);
 * const pair = await auth.login({ tenant: 'acme', email: 'alice@acme.test', password });
 * const principal = await auth.verifyAccessToken(pair.accessToken);
 * const next = await auth.refresh(pair.refreshToken);
 * await auth.logout(next.refreshToken);
 * ```
 */
export class TokenService {
  readonly #pool: Pool;
  readonly #signingKey: Uint8Array;
  readonly #refreshKey: Buffer;
  readonly #passwords: PasswordHasher;
  readonly #options: ReturnType<typeof resolveOptions>;

  constructor(pool: Pool, keys: Pick<KeyRing, 'key'>, options: TokenServiceOptions = {}) {
    this.#pool = pool;
    this.#signingKey = new Uint8Array(keys.key('jwt-signing'));
    this.#refreshKey = keys.key('refresh-token-hash');
    this.#passwords = options.passwords ?? new PasswordHasher();
    this.#options = resolveOptions(options);
  }

  /** Lifetime of access tokens, in seconds. */
  get accessTtlSeconds(): number {
    return this.#options.accessTtl;
  }

  /**
   * Checks email and password and returns a new token pair for `tenant`. Unknown email,
   * wrong password, an invited user without a password, no membership in the tenant and
   * a tenant that is not active all give the same `UNAUTHORIZED`, after the same work
   * (one query, one argon2id verification), so the answer tells nothing about which.
   * Malformed input is `INVALID_INPUT`.
   */
  async login(input: LoginInput): Promise<TokenPair> {
    const data = parseInput(LoginInput, input);
    const tenantColumn = UUID.test(data.tenant) ? 'id' : 'slug';
    const { rows } = await this.#pool.query<{
      id: string;
      password_hash: string | null;
      tenant_id: string | null;
      status: string | null;
      role: string | null;
    }>(
      `SELECT u.id, u.password_hash, t.id AS tenant_id, t.status, m.role
         FROM tenantry.users u
         LEFT JOIN tenantry.tenants t ON t.${tenantColumn} = $2
         LEFT JOIN tenantry.memberships m ON m.user_id = u.id AND m.tenant_id = t.id
        WHERE lower(u.email) = lower($1)`,
      [data.email, data.tenant.toLowerCase()],
    );
    const row = rows[0];
    const passwordOk = await this.#passwords.verify(row?.password_hash, data.password);
    if (!passwordOk || !row?.tenant_id || !row.role || row.status !== 'active') throw unauthorized();
    const { id: userId, tenant_id: tenantId, role } = row;
    const permissions = await rolePermissions(this.#pool, tenantId, role);
    if (!permissions) throw unauthorized();
    const stale = row.password_hash as string;
    const upgraded = (await this.#passwords.needsRehash(stale)) ? await this.#passwords.hash(data.password) : undefined;
    return inTransaction(this.#pool, async (client) => {
      if (upgraded) {
        // Only if unchanged meanwhile: never overwrite a password set concurrently.
        await client.query(
          'UPDATE tenantry.users SET password_hash = $2, updated_at = now() WHERE id = $1 AND password_hash = $3',
          [userId, upgraded, stale],
        );
      }
      const familyId = randomUUID();
      const pair = await this.#issue(client, { tenantId, userId, role, permissions }, familyId, null);
      await writeAudit(client, {
        actor: `user:${userId}`,
        tenantId,
        action: 'auth.login',
        details: { userId, familyId, ...(upgraded ? { passwordRehashed: true } : {}) },
      });
      return pair;
    });
  }

  /**
   * Exchanges a refresh token for a new pair, in one transaction: the presented token is
   * locked (`FOR UPDATE`), marked used, and a child issued in its family with the role read
   * afresh. A used token (reuse) revokes the family; revoked, expired, unknown or malformed
   * tokens, a removed membership and a tenant that is not active are all `UNAUTHORIZED`.
   */
  async refresh(refreshToken: string): Promise<TokenPair> {
    const hash = this.#hashOf(refreshToken);
    const outcome = await inTransaction(this.#pool, async (client): Promise<TokenPair | 'reuse'> => {
      const found = await client.query<{ family_id: string }>(
        'SELECT family_id FROM tenantry.refresh_tokens WHERE token_hash = $1',
        [hash],
      );
      const familyId = found.rows[0]?.family_id;
      if (!familyId) throw unauthorized();
      await client.query(FAMILY_LOCK, [familyId]);
      const { rows } = await client.query<{
        id: string;
        tenant_id: string;
        user_id: string;
        used: boolean;
        revoked: boolean;
        expired: boolean;
      }>(
        `SELECT id, tenant_id, user_id, used_at IS NOT NULL AS used, revoked_at IS NOT NULL AS revoked,
                expires_at <= now() AS expired
           FROM tenantry.refresh_tokens WHERE token_hash = $1 FOR UPDATE`,
        [hash],
      );
      const token = rows[0];
      if (!token || token.revoked) throw unauthorized();
      if (token.used) {
        const revoked = await this.#revokeFamily(client, familyId);
        await writeAudit(client, {
          actor: 'system',
          tenantId: token.tenant_id,
          action: 'auth.refresh_reuse_detected',
          details: { userId: token.user_id, familyId, tokensRevoked: revoked },
        });
        return 'reuse'; // committed: the revocation must outlive this failed request
      }
      if (token.expired) throw unauthorized();
      const { rows: members } = await client.query<{ role: string; status: string }>(
        `SELECT m.role, t.status FROM tenantry.memberships m JOIN tenantry.tenants t ON t.id = m.tenant_id
          WHERE m.tenant_id = $1 AND m.user_id = $2`,
        [token.tenant_id, token.user_id],
      );
      const member = members[0];
      if (member?.status !== 'active') throw unauthorized();
      const permissions = await rolePermissions(client, token.tenant_id, member.role);
      if (!permissions) throw unauthorized();
      await client.query('UPDATE tenantry.refresh_tokens SET used_at = now() WHERE id = $1', [token.id]);
      // Routine rotation is not audited: one row per session every 15 minutes would drown
      // the log; logins, logouts and reuse are.
      return this.#issue(
        client,
        { tenantId: token.tenant_id, userId: token.user_id, role: member.role, permissions },
        familyId,
        token.id,
      );
    });
    if (outcome === 'reuse') throw unauthorized();
    return outcome;
  }

  /**
   * Ends the session the refresh token belongs to: its whole family is revoked, so the
   * current and any earlier token stop working. Idempotent, like OAuth token revocation
   * (RFC 7009): returns false, without error, for a token that is unknown or already revoked.
   */
  async logout(refreshToken: string, options: { actor?: string } = {}): Promise<boolean> {
    let hash: string;
    try {
      hash = this.#hashOf(refreshToken);
    } catch {
      return false;
    }
    return inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<{ family_id: string; tenant_id: string; user_id: string }>(
        'SELECT family_id, tenant_id, user_id FROM tenantry.refresh_tokens WHERE token_hash = $1',
        [hash],
      );
      const token = rows[0];
      if (!token) return false;
      await client.query(FAMILY_LOCK, [token.family_id]);
      const revoked = await this.#revokeFamily(client, token.family_id);
      if (revoked === 0) return false;
      await writeAudit(client, {
        actor: options.actor ?? `user:${token.user_id}`,
        tenantId: token.tenant_id,
        action: 'auth.logout',
        details: { userId: token.user_id, familyId: token.family_id },
      });
      return true;
    });
  }

  /**
   * Verifies an access token and returns its {@link Principal}. Only HS256 is accepted
   * (no `none`, no other algorithm, no key from the header); `iss`, `aud`, `typ`, `exp`,
   * `iat`, `jti`, `sub`, `tid` and `role` are required. Any failure is `UNAUTHORIZED`.
   *
   * @example
   * ```ts
   * const principal = await auth.verifyAccessToken(bearer);
   * requirePermission(principal, 'items:write');
   * ```
   */
  async verifyAccessToken(token: string): Promise<Principal> {
    return verifyAccessToken(this.#signingKey, token, this.#options.clockTolerance);
  }

  async #issue(
    client: PoolClient,
    session: AccessSession,
    familyId: string,
    parentId: string | null,
  ): Promise<TokenPair> {
    const refreshToken = randomBytes(32).toString('base64url');
    await client.query(
      `INSERT INTO tenantry.refresh_tokens (token_hash, family_id, parent_id, tenant_id, user_id, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 second')`,
      [
        hmacHex(this.#refreshKey, refreshToken),
        familyId,
        parentId,
        session.tenantId,
        session.userId,
        this.#options.refreshTtl,
      ],
    );
    const accessToken = await signAccessToken(this.#signingKey, session, this.#options.accessTtl);
    return Object.freeze({ accessToken, refreshToken, expiresIn: this.#options.accessTtl });
  }

  /** Revokes every live token of the family; how many. Call holding the family lock. */
  async #revokeFamily(client: PoolClient, familyId: string): Promise<number> {
    const { rowCount } = await client.query(
      'UPDATE tenantry.refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL',
      [familyId],
    );
    return rowCount ?? 0;
  }

  /** The stored form of a refresh token; `UNAUTHORIZED` for anything that is not one of ours in shape. */
  #hashOf(refreshToken: string): string {
    if (typeof refreshToken !== 'string' || !REFRESH_TOKEN.test(refreshToken)) throw unauthorized();
    return hmacHex(this.#refreshKey, refreshToken);
  }
}
