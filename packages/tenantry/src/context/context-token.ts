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
