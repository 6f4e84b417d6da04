import { timingSafeEqual } from 'node:crypto';
import { TenantryError } from '../errors/catalog.ts';

/**
 * Checks a control-plane credential against the admin token (`TENANTRY_ADMIN_TOKEN`), in
 * constant time. Throws `UNAUTHORIZED` when either is missing or they differ; with no admin
 * token configured, the control plane is closed.
 *
 * @example
 * ```ts
 * requireAdminToken(presentedCredential(req.headers), process.env.TENANTRY_ADMIN_TOKEN);
 * ```
 */
export function requireAdminToken(presented: string | undefined, adminToken: string | undefined): void {
  if (!adminToken || !presented || !sameSecret(presented, adminToken)) {
    throw new TenantryError('UNAUTHORIZED', 'the control plane needs `Authorization: Bearer $TENANTRY_ADMIN_TOKEN`');
  }
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
