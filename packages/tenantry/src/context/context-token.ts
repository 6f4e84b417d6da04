import { randomBytes } from 'node:crypto';
import { hmacHex } from '../secrets/keys.ts';

/**
 * Why a tenant transaction is opened. `work` is refused for tenants that are not active;
 * `maintenance` (hard delete, export) is Tenantry's own and allowed in any status.
 */
export type ContextPurpose = 'work' | 'maintenance';

/**
 * Mints the entry token that `tenantry_context.enter()` checks before it places a tenant
 * context in a session: `v1.<purpose>.<tenant>.<backend pid>.<expiry ms>.<hmac>`.
 *
 * The HMAC key is derived from `TENANTRY_SECRET`; PostgreSQL holds the same key in a
 * table the runtime role cannot read. Binding the backend pid means a token seen on one
 * connection is worthless on any other; the short expiry bounds reuse on the same one.
 * The token travels as a bind parameter, so it never shows in `pg_stat_activity.query`.
 */
export function mintContextToken(
  key: Buffer,
  purpose: ContextPurpose,
  tenantId: string,
  backendPid: number,
  expiresAtMs: number,
): string {
  const body = `v1.${purpose}.${tenantId}.${backendPid}.${Math.floor(expiresAtMs)}`;
  return `${body}.${hmacHex(key, `enter|${body}`)}`;
}

/**
 * The session form of the entry token, `s1.<purpose>.<tenant>.<secret>`: `secret` is the
 * one-time value the previous `enter()` on the same backend stored (see
 * {@link newContextSecret}). It needs no signature: only the process that chose it knows it,
 * PostgreSQL keeps it where the runtime role cannot read it, and it works once.
 */
export function secretContextToken(purpose: ContextPurpose, tenantId: string, secret: string): string {
  return `s1.${purpose}.${tenantId}.${secret}`;
}

/** Random bytes drawn in blocks: one `randomBytes()` call per 512 secrets, not per transaction. */
const pool = { bytes: Buffer.alloc(0), offset: 0 };

/** A fresh one-time session secret: 64 random bits, as the decimal text of an int8. */
export function newContextSecret(): string {
  if (pool.offset + 8 > pool.bytes.length) {
    pool.bytes = randomBytes(4096);
    pool.offset = 0;
  }
  const secret = pool.bytes.readBigInt64BE(pool.offset);
  pool.offset += 8;
  return secret.toString();
}
