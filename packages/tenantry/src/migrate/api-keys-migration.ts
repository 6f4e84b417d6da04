import type { TenantMigration } from '../schema/migration.ts';

/** The channel a store LISTENs on; the payload is the id of the key that changed. */
export const API_KEYS_CHANNEL = 'tenantry_api_keys';

/**
 * Control-plane migration `0003_api_keys`: the `tenantry.api_keys` table. It runs as the
 * owner role (like the rest of the control-plane chain), so the owner owns the table, and
 * it grants nothing: the runtime role has no privilege on it and not even `USAGE` on the
 * `tenantry` schema (DESIGN.md, invariant 5).
 *
 * A trigger sends `NOTIFY tenantry_api_keys, '<key id>'` whenever a key is revoked, its
 * expiry, scopes or hash change, or it is deleted, including by the cascade of a tenant
 * purge or by an operator's hand-written SQL. The notification is sent from inside the
 * changing transaction and delivered on commit, so every listening store evicts the key
 * right after the change is visible. `last_used_at` is deliberately not a trigger column:
 * the batched usage flush must not evict every cache it touches.
 *
 * @example
 * ```ts
 * // migrate/control-plane.ts
 * return [{ id: '0001_control_plane', … }, { id: '0002_verified_context', … }, apiKeysMigration];
 * ```
 */
export const apiKeysMigration: TenantMigration = {
  id: '0003_api_keys',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.api_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  environment text NOT NULL CHECK (environment IN ('live', 'test', 'dev')),
  display_prefix text NOT NULL UNIQUE
    CHECK (display_prefix ~ '^[a-z]{2,8}_(live|test|dev)_[0-9A-Za-z]{12}$'),
  hash bytea NOT NULL CHECK (length(hash) = 32),
  scopes text[] NOT NULL DEFAULT '{}' CHECK (array_position(scopes, NULL) IS NULL),
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text NOT NULL,
  CHECK (split_part(display_prefix, '_', 2) = environment)
);
CREATE INDEX api_keys_tenant_idx ON tenantry.api_keys (tenant_id, created_at);
REVOKE ALL ON TABLE tenantry.api_keys FROM PUBLIC;

COMMENT ON TABLE tenantry.api_keys IS
  'API keys. The full key is never stored: only display_prefix (<prefix>_<env>_<lookup id>, public) and hash';
COMMENT ON COLUMN tenantry.api_keys.hash IS
  'HMAC-SHA256 of the full key under the key derived from TENANTRY_SECRET for purpose api-key-hash';

CREATE FUNCTION tenantry.api_keys_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  PERFORM pg_notify('${API_KEYS_CHANNEL}', OLD.id::text);
  RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION tenantry.api_keys_notify() FROM PUBLIC;

CREATE TRIGGER api_keys_notify
  AFTER UPDATE OF revoked_at, expires_at, scopes, hash, display_prefix, tenant_id OR DELETE
  ON tenantry.api_keys
  FOR EACH ROW EXECUTE FUNCTION tenantry.api_keys_notify();
`),
};
