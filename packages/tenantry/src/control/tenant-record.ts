import type { IsolationTier, TenantContext, TenantStatus } from '../context/tenant-context.ts';

/** A tenant as the control plane stores it. */
export interface TenantRecord {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: TenantStatus;
  readonly tier: IsolationTier;
  readonly placementId: string;
  /** Schema of a schema-tier tenant's tables. */
  readonly schemaName: string | null;
  /** Database of a database-tier tenant, on its placement's server. */
  readonly databaseName: string | null;
  /** True while the tenant is read-only for a move between placements. */
  readonly frozen: boolean;
  readonly plan: string;
  readonly limits: {
    readonly maxUsers: number | null;
    readonly maxStorageMb: number | null;
    readonly statementTimeoutMs: number;
  };
  readonly features: Readonly<Record<string, unknown>>;
  readonly settings: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly statusChangedAt: Date;
}

/** A row of `tenantry.tenants`, as `SELECT *` and `RETURNING *` give it. */
export interface TenantRow {
  id: string;
  slug: string;
  name: string;
  status: TenantStatus;
  tier: IsolationTier;
  placement_id: string;
  schema_name: string | null;
  database_name: string | null;
  frozen: boolean;
  plan: string;
  max_users: number | null;
  max_storage_mb: number | null;
  statement_timeout_ms: number;
  features: Record<string, unknown>;
  settings: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
  status_changed_at: Date;
}

/** The frozen {@link TenantRecord} of a row. */
export function toRecord(row: TenantRow): TenantRecord {
  return Object.freeze({
    id: row.id,
    slug: row.slug,
    name: row.name,
    status: row.status,
    tier: row.tier,
    placementId: row.placement_id,
    schemaName: row.schema_name,
    databaseName: row.database_name,
    frozen: row.frozen,
    plan: row.plan,
    limits: Object.freeze({
      maxUsers: row.max_users,
      maxStorageMb: row.max_storage_mb,
      statementTimeoutMs: row.statement_timeout_ms,
    }),
    features: Object.freeze(row.features),
    settings: Object.freeze(row.settings),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    statusChangedAt: row.status_changed_at,
  });
}

/** The {@link TenantContext} for a tenant record (what enters `withTenant`). */
export function contextOf(tenant: TenantRecord, requestId?: string): TenantContext {
  return {
    id: tenant.id,
    slug: tenant.slug,
    tier: tenant.tier,
    plan: tenant.plan,
    status: tenant.status,
    placementId: tenant.placementId,
    database: tenant.databaseName,
    requestId,
  };
}
