import type { TenantMigration } from '../schema/migration.ts';

/**
 * Control-plane migration 0024: `tenants.list({ status })` (and the console's status
 * filter) reads one keyset page from `(status, created_at, id)` instead of every tenant of
 * that status sorted, so its cost does not grow with the fleet. The index replaces the one on
 * `status` alone, whose lookups it serves as well.
 */
export const tenantListMigration: TenantMigration = {
  id: '0024_tenant_list_by_status',
  up: (m) =>
    m.query(`
CREATE INDEX tenants_status_created_idx ON tenantry.tenants (status, created_at, id);
DROP INDEX tenantry.tenants_status_idx;
`),
};
