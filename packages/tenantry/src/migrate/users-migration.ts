import type { TenantMigration } from '../schema/migration.ts';

/**
 * Users, tenant memberships, custom roles and refresh tokens, in the control-plane schema
 * `tenantry` (control chain, after `0002_verified_context`). The tables are created by the
 * owner role and the runtime role is granted nothing: invariant 5, tenant code can never
 * read a password hash or a refresh-token hash, even through an SQL injection.
 *
 * The built-in role names are written out here rather than read from `BUILTIN_ROLES`: an
 * applied migration is history and must not change when the code does.
 *
 * @example
 * ```ts
 * await applyMigrations(client, {
 *   chain: 'control', target: 'main', schema: 'tenantry', ownerRole, runtimeRole,
 *   dialect: postgresDialect, migrations: [...controlPlaneMigrations(runtimeRole), usersMigration],
 * });
 * ```
 */
export const usersMigration: TenantMigration = {
  id: '0004_users',
  up: (m) =>
    m.query(`
-- Users are global: one person, one email, one password, any number of tenants.
CREATE TABLE tenantry.users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254 AND position('@' IN email) > 1),
  -- A PHC string; Tenantry writes and verifies argon2id only (an imported hash of
  -- another scheme never verifies). NULL for an invited user, who cannot log in yet.
  password_hash text CHECK (password_hash LIKE '$%$%'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Case-insensitive uniqueness without citext (no extension to install).
CREATE UNIQUE INDEX users_email_lower_key ON tenantry.users (lower(email));

-- Custom roles of one tenant; built-in roles are not stored and cannot be shadowed.
CREATE TABLE tenantry.roles (
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$' AND name NOT IN ('owner', 'admin', 'member', 'viewer')),
  permissions text[] NOT NULL CHECK (cardinality(permissions) <= 64 AND array_position(permissions, NULL) IS NULL),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, name)
);

CREATE TABLE tenantry.memberships (
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES tenantry.users (id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role ~ '^[a-z][a-z0-9_-]{0,39}$'),
  -- NULL for a built-in role, so the foreign key below only checks custom roles
  -- (MATCH SIMPLE skips rows with a NULL column): a membership can never name a role
  -- its tenant does not have, and a custom role in use cannot be dropped.
  custom_role text GENERATED ALWAYS AS (
    CASE WHEN role IN ('owner', 'admin', 'member', 'viewer') THEN NULL ELSE role END
  ) STORED,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id),
  FOREIGN KEY (tenant_id, custom_role) REFERENCES tenantry.roles (tenant_id, name)
);
CREATE INDEX memberships_user_idx ON tenantry.memberships (user_id);

-- Rotating refresh tokens, stored only as HMAC-SHA256 under the 'refresh-token-hash' key.
-- A login starts a family; each refresh marks its token used and issues a child in the
-- same family. Presenting a used token again revokes the family.
CREATE TABLE tenantry.refresh_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  family_id uuid NOT NULL,
  -- SET NULL: pruning an expired ancestor must not delete a live descendant.
  parent_id uuid REFERENCES tenantry.refresh_tokens (id) ON DELETE SET NULL,
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  revoked_at timestamptz,
  -- Removing a membership (or the tenant, or the user) ends its sessions.
  FOREIGN KEY (tenant_id, user_id) REFERENCES tenantry.memberships (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_family_idx ON tenantry.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_member_idx ON tenantry.refresh_tokens (tenant_id, user_id);
CREATE INDEX refresh_tokens_parent_idx ON tenantry.refresh_tokens (parent_id);
CREATE INDEX refresh_tokens_expires_idx ON tenantry.refresh_tokens (expires_at);

-- Default privileges already give PUBLIC nothing on tables; said explicitly so that a
-- reviewer (and 'tenantry doctor') need not know it.
REVOKE ALL ON tenantry.users, tenantry.roles, tenantry.memberships, tenantry.refresh_tokens FROM PUBLIC;
`),
};
