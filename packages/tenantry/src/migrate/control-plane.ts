import { CONTEXT_SCHEMA, CONTEXT_SETTING } from '../context/context-dialect.ts';
import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { quoteIdent } from '../sql.ts';
import { apiKeysMigration } from './api-keys-migration.ts';
import { auditChainMigration } from './audit-migration.ts';
import { consoleSessionsMigration } from './console-sessions-migration.ts';
import { HMAC_SQL } from './context-functions-v1.ts';
import {
  contextCommonPathMigration,
  contextFewExpressionsMigration,
  contextParametersMigration,
  contextRegistersMigration,
  contextVoucherMigration,
} from './context-registers-migration.ts';
import { exportJobsMigration } from './export-jobs-migration.ts';
import { idempotencyMigration } from './idempotency-migration.ts';
import { jobsMigration } from './jobs-migration.ts';
import { outboxMigration, outboxNotifyAfterCommitMigration } from './outbox-migration.ts';
import { tenantListMigration } from './tenant-list-migration.ts';
import { tierStorageMigration } from './tier-storage-migration.ts';
import { tiersMigration } from './tiers-migration.ts';
import { tenantMetricsMigration, usageMigration } from './usage-migration.ts';
import { usageWindowsMigration } from './usage-windows-migration.ts';
import { usersMigration } from './users-migration.ts';
import { webhookDeadLettersMigration } from './webhook-dead-letters-migration.ts';
import { webhooksMigration } from './webhooks-migration.ts';

/**
 * The control plane's own chain (schema `tenantry`). Runs as the owner role. The
 * runtime role is granted nothing here except EXECUTE on the two context functions.
 */
export function controlPlaneMigrations(runtimeRole: string): TenantMigration[] {
  return [
    ...coreMigrations(runtimeRole),
    apiKeysMigration,
    usersMigration,
    tiersMigration(runtimeRole),
    contextRegistersMigration(runtimeRole, 'control'),
    contextVoucherMigration(runtimeRole, 'control'),
    exportJobsMigration,
    auditChainMigration(runtimeRole, 'control'),
    idempotencyMigration,
    outboxMigration(runtimeRole),
    webhooksMigration,
    jobsMigration(runtimeRole),
    usageMigration,
    tenantMetricsMigration,
    webhookDeadLettersMigration,
    contextCommonPathMigration(runtimeRole, 'control'),
    consoleSessionsMigration,
    outboxNotifyAfterCommitMigration,
    contextFewExpressionsMigration(runtimeRole, 'control'),
    tenantListMigration,
    tierStorageMigration,
    usageWindowsMigration,
    contextParametersMigration(runtimeRole, 'control'),
  ];
}

function coreMigrations(runtimeRole: string): TenantMigration[] {
  const runtime = quoteIdent(runtimeRole);
  return [
    {
      id: '0001_control_plane',
      up: (m) =>
        m.query(`
CREATE TABLE tenantry.placements (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  tier text NOT NULL CHECK (tier IN ('pool', 'schema', 'database')),
  schema_name text,
  credentials bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN tenantry.placements.credentials IS
  'AES-256-GCM sealed connection settings (key derived from TENANTRY_SECRET); NULL means the main database';

INSERT INTO tenantry.placements (name, tier) VALUES ('shared', 'pool');

CREATE TABLE tenantry.tenants (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'offboarding', 'deleted')),
  tier text NOT NULL DEFAULT 'pool' CHECK (tier IN ('pool', 'schema', 'database')),
  placement_id uuid NOT NULL REFERENCES tenantry.placements (id),
  plan text NOT NULL DEFAULT 'free' CHECK (length(plan) BETWEEN 1 AND 100),
  max_users integer CHECK (max_users > 0),
  max_storage_mb integer CHECK (max_storage_mb > 0),
  statement_timeout_ms integer NOT NULL DEFAULT 30000 CHECK (statement_timeout_ms BETWEEN 1 AND 86400000),
  features jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(features) = 'object'),
  settings jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  status_changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_status_idx ON tenantry.tenants (status);

CREATE TABLE tenantry.audit_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor text NOT NULL,
  tenant_id uuid,
  action text NOT NULL,
  details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant_idx ON tenantry.audit_log (tenant_id, at);

-- The context HMAC key, as the two HMAC pads. Only the owner (and so the SECURITY
-- DEFINER functions below) can read it.
CREATE TABLE tenantry.context_key (
  id smallint PRIMARY KEY CHECK (id = 1),
  ipad bytea NOT NULL CHECK (length(ipad) = 64),
  opad bytea NOT NULL CHECK (length(opad) = 64),
  updated_at timestamptz NOT NULL DEFAULT now()
);
`),
    },
    {
      id: '0002_verified_context',
      up: (m) =>
        m.query(`
-- Checks a signed entry token and places the verified context in this transaction.
-- Token: v1.<purpose>.<tenant uuid>.<backend pid>.<expiry ms>.<hmac>
CREATE FUNCTION ${CONTEXT_SCHEMA}.enter(token text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  parts text[] := string_to_array(token, '.');
  expected text;
  tid uuid;
  tstatus text;
  ttimeout integer;
  xact text;
BEGIN
  IF coalesce(array_length(parts, 1), 0) <> 6 OR parts[1] <> 'v1' THEN
    RAISE EXCEPTION 'tenantry: malformed tenant context token' USING ERRCODE = '${S.invalidContext}';
  END IF;
  SELECT ${HMAC_SQL(`'enter|' || array_to_string(parts[1:5], '.')`)} INTO expected
    FROM tenantry.context_key k WHERE k.id = 1;
  IF expected IS NULL OR expected <> parts[6] THEN
    RAISE EXCEPTION 'tenantry: tenant context token rejected' USING ERRCODE = '${S.invalidContext}';
  END IF;
  IF parts[4] <> pg_backend_pid()::text THEN
    RAISE EXCEPTION 'tenantry: tenant context token belongs to another session' USING ERRCODE = '${S.invalidContext}';
  END IF;
  IF parts[5]::bigint < (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
    RAISE EXCEPTION 'tenantry: tenant context token expired' USING ERRCODE = '${S.invalidContext}';
  END IF;
  tid := parts[3]::uuid;
  SELECT t.status, t.statement_timeout_ms INTO tstatus, ttimeout FROM tenantry.tenants t WHERE t.id = tid;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tenantry: tenant not found' USING ERRCODE = '${S.tenantNotFound}';
  END IF;
  IF parts[2] = 'work' THEN
    IF tstatus = 'suspended' THEN
      RAISE EXCEPTION 'tenantry: tenant is suspended' USING ERRCODE = '${S.tenantSuspended}';
    ELSIF tstatus <> 'active' THEN
      RAISE EXCEPTION 'tenantry: tenant is not active' USING ERRCODE = '${S.tenantNotActive}';
    END IF;
    PERFORM set_config('statement_timeout', ttimeout::text, true);
  ELSIF parts[2] <> 'maintenance' THEN
    RAISE EXCEPTION 'tenantry: unknown context purpose' USING ERRCODE = '${S.invalidContext}';
  END IF;
  -- The session value is bound to this backend and this transaction's start time, so
  -- it is worthless anywhere else, even to whoever reads it.
  xact := ((extract(epoch FROM transaction_timestamp()) * 1000000)::bigint)::text;
  SELECT ${HMAC_SQL(`'ctx|' || parts[3] || '.' || parts[4] || '.' || xact`)} INTO expected
    FROM tenantry.context_key k WHERE k.id = 1;
  PERFORM set_config('${CONTEXT_SETTING}', parts[3] || '.' || parts[4] || '.' || xact || '.' || expected, true);
  RETURN tid;
END
$fn$;

-- The verified tenant of the current transaction; NULL when none was entered.
-- Policies call it through a sub-select, so it runs once per statement (InitPlan).
CREATE FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id() RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v text := current_setting('${CONTEXT_SETTING}', true);
  parts text[];
  expected text;
BEGIN
  IF v IS NULL OR v = '' THEN
    RETURN NULL;
  END IF;
  parts := string_to_array(v, '.');
  IF coalesce(array_length(parts, 1), 0) <> 4
     OR parts[2] <> pg_backend_pid()::text
     OR parts[3] <> ((extract(epoch FROM transaction_timestamp()) * 1000000)::bigint)::text THEN
    RAISE EXCEPTION 'tenantry: tenant context rejected' USING ERRCODE = '${S.invalidContext}';
  END IF;
  SELECT ${HMAC_SQL(`'ctx|' || parts[1] || '.' || parts[2] || '.' || parts[3]`)} INTO expected
    FROM tenantry.context_key k WHERE k.id = 1;
  IF expected IS NULL OR expected <> parts[4] THEN
    RAISE EXCEPTION 'tenantry: tenant context rejected' USING ERRCODE = '${S.invalidContext}';
  END IF;
  RETURN parts[1]::uuid;
END
$fn$;

REVOKE ALL ON FUNCTION ${CONTEXT_SCHEMA}.enter(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${CONTEXT_SCHEMA}.enter(text) TO ${runtime};
GRANT EXECUTE ON FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id() TO ${runtime};
`),
    },
  ];
}
