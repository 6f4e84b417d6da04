import type { TenantMigration } from '../schema/migration.ts';

/**
 * Export jobs of the control plane (`POST /v1/tenants/{id}/exports`): each job's state,
 * which any instance can report, and its finished archive in chunks of at most 1 MiB, which
 * any instance can stream back. Both carry `tenant_id` and cascade from the tenant, so an
 * erasure removes a tenant's archives with it and its verification counts them.
 *
 * `export_jobs_one_running` makes "one running export per tenant" a constraint: a second
 * start, on any instance, collides with the first.
 *
 * @example
 * ```ts
 * const chain = [...controlPlaneMigrations(runtimeRole)]; // ends with exportJobsMigration
 * ```
 */
export const exportJobsMigration: TenantMigration = {
  id: '0008_export_jobs',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.export_jobs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
  actor text NOT NULL,
  tables_done integer NOT NULL DEFAULT 0,
  tables_total integer,
  rows_done bigint NOT NULL DEFAULT 0,
  rows_total bigint,
  chunks integer,
  bytes bigint,
  sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  error_code text,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Moved on by the instance running the job; a running job whose heartbeat stops
  -- (the instance died) is marked failed by the next sweep, which frees the tenant.
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  expires_at timestamptz,
  UNIQUE (id, tenant_id)
);
CREATE UNIQUE INDEX export_jobs_one_running ON tenantry.export_jobs (tenant_id) WHERE status = 'running';
CREATE INDEX export_jobs_expires_idx ON tenantry.export_jobs (expires_at);

CREATE TABLE tenantry.export_chunks (
  job_id uuid NOT NULL,
  tenant_id uuid NOT NULL,
  seq integer NOT NULL CHECK (seq >= 0),
  data bytea NOT NULL,
  PRIMARY KEY (job_id, seq),
  FOREIGN KEY (job_id, tenant_id) REFERENCES tenantry.export_jobs (id, tenant_id) ON DELETE CASCADE
);
CREATE INDEX export_chunks_tenant_idx ON tenantry.export_chunks (tenant_id);

REVOKE ALL ON tenantry.export_jobs, tenantry.export_chunks FROM PUBLIC;
`),
};
