import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { auditChainMigration } from './audit-migration.ts';
import { contextFunctionsV1Sql } from './context-functions-v1.ts';
import {
  contextCommonPathMigration,
  contextFewExpressionsMigration,
  contextParametersMigration,
  contextRegistersMigration,
  contextVoucherMigration,
} from './context-registers-migration.ts';

/**
 * Control-plane migration 0005: the three isolation tiers.
 *
 * - `tenants` learns where its rows are *in this database* (`schema_name` for the schema
 *   tier, `data_here` false when they live in another database) and `frozen` (read-only
 *   while it is being moved); the context functions read these.
 * - `targets` is the per-target state of the tenant-table chain: one row for the shared
 *   tables, one per tenant schema or tenant database (and per warm schema and database
 *   template). The fleet runner plans from it without visiting any schema.
 * - placements `schemas` and `databases` are the default homes of the two new tiers.
 */
export function tiersMigration(runtimeRole: string): TenantMigration {
  return {
    id: '0005_isolation_tiers',
    up: (m) =>
      m.query(`
ALTER TABLE tenantry.context_key ADD COLUMN allow_unbound boolean NOT NULL DEFAULT false;

ALTER TABLE tenantry.tenants
  ADD COLUMN schema_name text CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  ADD COLUMN database_name text CHECK (database_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  ADD COLUMN data_here boolean NOT NULL DEFAULT true,
  ADD COLUMN frozen boolean NOT NULL DEFAULT false;

INSERT INTO tenantry.placements (name, tier) VALUES ('schemas', 'schema'), ('databases', 'database')
  ON CONFLICT (name) DO NOTHING;

CREATE TABLE tenantry.targets (
  id text PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('shared', 'schema', 'database', 'template')),
  placement_id uuid NOT NULL REFERENCES tenantry.placements (id),
  -- NULL: the placement's own database (the main database when it has no credentials).
  database_name text CHECK (database_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  schema_name text NOT NULL CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  state text NOT NULL CHECK (state IN ('provisioning', 'warm', 'active', 'retiring')),
  tenant_id uuid UNIQUE,
  applied_count integer NOT NULL DEFAULT 0,
  version text,
  last_error text,
  failed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenantry.targets IS
  'Where tenant tables live (shared tables, tenant schemas, tenant databases) and how far each is migrated';
CREATE INDEX targets_progress_idx ON tenantry.targets (applied_count, id);
-- In the claim's own order (most migrated first, then oldest), so a claim is an ordered
-- index scan that stops at the first unlocked row, however many schemas are warm.
CREATE INDEX targets_warm_idx ON tenantry.targets (placement_id, kind, applied_count DESC, created_at)
  WHERE state = 'warm';

DROP FUNCTION ${CONTEXT_SCHEMA}.enter(text);
${contextFunctionsV1Sql(runtimeRole)}
`),
  };
}

/**
 * The chain of a satellite database: one that holds tenant rows but not the control plane
 * (a tenant database, a template, or a database of tenant schemas on another placement).
 * It holds a mirror of the rows of the tenants placed in it (what `enter()` reads), the
 * context key, and the same context functions as the main database.
 */
export function satelliteMigrations(runtimeRole: string): TenantMigration[] {
  return [
    {
      id: 's0001_satellite',
      up: (m) =>
        m.query(`
CREATE TABLE tenantry.tenants (
  id uuid PRIMARY KEY,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'offboarding', 'deleted')),
  statement_timeout_ms integer NOT NULL DEFAULT 30000 CHECK (statement_timeout_ms BETWEEN 1 AND 86400000),
  schema_name text CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  data_here boolean NOT NULL DEFAULT true,
  frozen boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenantry.tenants IS 'Mirror of the control plane rows of the tenants placed in this database';

CREATE TABLE tenantry.context_key (
  id smallint PRIMARY KEY CHECK (id = 1),
  ipad bytea NOT NULL CHECK (length(ipad) = 64),
  opad bytea NOT NULL CHECK (length(opad) = 64),
  allow_unbound boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);
${contextFunctionsV1Sql(runtimeRole)}
`),
    },
    contextRegistersMigration(runtimeRole, 'satellite'),
    contextVoucherMigration(runtimeRole, 'satellite'),
    auditChainMigration(runtimeRole, 'satellite'),
    contextCommonPathMigration(runtimeRole, 'satellite'),
    contextFewExpressionsMigration(runtimeRole, 'satellite'),
    contextParametersMigration(runtimeRole, 'satellite'),
  ];
}
