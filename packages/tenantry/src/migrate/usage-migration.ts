import type { TenantMigration } from '../schema/migration.ts';

/** Months of daily metering partitions created ahead of need, besides the current one. */
export const USAGE_MONTHS_AHEAD = 3;

const COUNTERS = `
  transactions bigint NOT NULL DEFAULT 0,
  statements bigint NOT NULL DEFAULT 0,
  db_time_ms double precision NOT NULL DEFAULT 0,
  rows_read bigint NOT NULL DEFAULT 0,
  rows_written bigint NOT NULL DEFAULT 0,
  errors bigint NOT NULL DEFAULT 0,
  requests bigint NOT NULL DEFAULT 0,
  status_2xx bigint NOT NULL DEFAULT 0,
  status_3xx bigint NOT NULL DEFAULT 0,
  status_4xx bigint NOT NULL DEFAULT 0,
  status_5xx bigint NOT NULL DEFAULT 0,
  bytes_in bigint NOT NULL DEFAULT 0,
  bytes_out bigint NOT NULL DEFAULT 0,
  api_key_requests bigint NOT NULL DEFAULT 0`;

/**
 * Control-plane migration 0014: per-tenant usage. Every instance's meter adds its figures
 * to `tenant_usage_minutes` (one row per tenant and minute: top-N over any window, kept a
 * week by default) and `tenant_usage_daily` (the metering rows billing exports, range
 * partitioned by month, partitions created ahead like the audit log's); the day's active
 * users go to `tenant_active_users`, tied to the membership so erasing a user removes them.
 * Every row goes with its tenant (`ON DELETE CASCADE`). The runtime role gets nothing.
 */
export const usageMigration: TenantMigration = {
  id: '0014_tenant_usage',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.tenant_usage_minutes (
  minute timestamptz NOT NULL,
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  ${COUNTERS},
  slowest_ms double precision NOT NULL DEFAULT 0,
  slowest_sql text,
  PRIMARY KEY (minute, tenant_id)
);
CREATE INDEX tenant_usage_minutes_tenant_idx ON tenantry.tenant_usage_minutes (tenant_id, minute);

CREATE TABLE tenantry.tenant_usage_daily (
  day date NOT NULL,
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  ${COUNTERS},
  -- Largest storage a snapshot measured that day (bytes); NULL until one ran.
  storage_bytes bigint,
  PRIMARY KEY (day, tenant_id)
) PARTITION BY RANGE (day);
CREATE INDEX tenant_usage_daily_tenant_idx ON tenantry.tenant_usage_daily (tenant_id, day);
-- A safety net for days no partition was created for (upkeep stopped): rows are never refused.
CREATE TABLE tenantry.tenant_usage_daily_default PARTITION OF tenantry.tenant_usage_daily DEFAULT;

CREATE TABLE tenantry.tenant_active_users (
  day date NOT NULL,
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, day, user_id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES tenantry.memberships (tenant_id, user_id) ON DELETE CASCADE
);

-- Creates the month of \`now()\` and the next \`months_ahead\` months' partitions that are
-- missing; returns how many it created. Serialised by an advisory lock.
CREATE FUNCTION tenantry.usage_ensure_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  first date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
  m date;
  name text;
  created integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tenantry.tenant_usage_daily'));
  FOR i IN 0 .. greatest(months_ahead, 0) LOOP
    m := (first + make_interval(months => i))::date;
    name := 'tenant_usage_daily_' || to_char(m, 'YYYY_MM');
    IF to_regclass('tenantry.' || name) IS NULL THEN
      EXECUTE format('CREATE TABLE tenantry.%I PARTITION OF tenantry.tenant_usage_daily FOR VALUES FROM (%L) TO (%L)',
                     name, m, (m + interval '1 month')::date);
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END
$fn$;
REVOKE ALL ON FUNCTION tenantry.usage_ensure_partitions(integer) FROM PUBLIC;
SELECT tenantry.usage_ensure_partitions(${USAGE_MONTHS_AHEAD});
`),
};

/**
 * Control-plane migration 0015: tenant metrics snapshots (seed 001's `TenantMetrics`):
 * per tenant and time, rows per tenant table, storage (estimated for shared tables, exact
 * for a tenant's own schema or database), members, and the day's activity.
 */
export const tenantMetricsMigration: TenantMigration = {
  id: '0015_tenant_metrics',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.tenant_metrics (
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  taken_at timestamptz NOT NULL DEFAULT now(),
  tier text NOT NULL,
  -- Table name → rows of the tenant in it.
  table_rows jsonb NOT NULL,
  storage_bytes bigint NOT NULL,
  -- True when storage_bytes is pg_total_relation_size of the tenant's own tables; false when
  -- it is its share of shared tables, estimated from its rows and the tables' average row size.
  storage_exact boolean NOT NULL,
  users integer NOT NULL,
  transactions_24h bigint NOT NULL,
  requests_24h bigint NOT NULL,
  PRIMARY KEY (tenant_id, taken_at)
);
CREATE INDEX tenant_metrics_taken_idx ON tenantry.tenant_metrics (taken_at);
`),
};
