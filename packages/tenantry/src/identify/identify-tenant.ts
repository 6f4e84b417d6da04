import type { Principal } from '../auth/permissions.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { TenantCache } from './tenant-cache.ts';

/**
 * Step 1 of the request path: the tenant a request works for. It is the tenant of the
 * authenticated credential; a claim the request also makes (header, subdomain, path) must
 * name that same tenant, else `FORBIDDEN` — a credential never reaches another tenant by
 * naming it. The answer is checked against the registry (through the cache): an unknown
 * tenant is `TENANT_NOT_FOUND`.
 *
 * A cached tenant that is not active is read again before the request is refused (it may
 * have been resumed a moment ago); a cached "active" needs no such care, since PostgreSQL
 * re-checks the status when the tenant transaction begins.
 *
 * @example
 * ```ts
 * const tenant = await identifyTenant(principal, claimedTenant(req, ['header']), cache);
 * ```
 */
export async function identifyTenant(
  principal: Principal,
  claim: string | undefined,
  tenants: TenantCache,
): Promise<TenantRecord> {
  if (claim !== undefined) {
    const claimed = await tenants.get(claim);
    if (!claimed) throw new TenantryError('TENANT_NOT_FOUND');
    if (claimed.id !== principal.tenantId) {
      throw new TenantryError('FORBIDDEN', 'the credential is not valid for the tenant this request names');
    }
  }
  let tenant = await tenants.get(principal.tenantId);
  if (tenant && tenant.status !== 'active') {
    tenants.invalidate(tenant.id);
    tenant = await tenants.get(principal.tenantId);
  }
  if (!tenant) throw new TenantryError('TENANT_NOT_FOUND');
  return tenant;
}
