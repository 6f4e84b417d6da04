import type { PlacementRegistry } from '../control/placements.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import type { AdminConnector } from './admin-connection.ts';

/**
 * Copies a tenant's status, statement timeout and freeze to the mirror row in its own
 * database, which is what `enter()` there reads. Suspension is also enforced before any
 * round trip (from the cached record), so a failed copy is reported, not fatal.
 */
export async function syncMirror(
  tenant: TenantRecord,
  placements: PlacementRegistry,
  connect: AdminConnector,
): Promise<void> {
  if (tenant.databaseName === null) return;
  const placement = await placements.resolve(tenant.placementId);
  const conn = await connect(placement, tenant.databaseName);
  try {
    await conn.client.query(
      `UPDATE tenantry.tenants SET status = $2, statement_timeout_ms = $3, frozen = $4, updated_at = now()
        WHERE id = $1`,
      [tenant.id, tenant.status, tenant.limits.statementTimeoutMs, tenant.frozen],
    );
  } finally {
    await conn.release();
  }
}
