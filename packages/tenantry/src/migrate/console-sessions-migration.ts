import type { TenantMigration } from '../schema/migration.ts';

/**
 * Control-plane migration 0019: the operator console's sessions (see `console/session-store.ts`
 * and docs/console.md). A row exists while a signed-in browser may use the console; the
 * cookie holds a random token and only its SHA-256 is stored, with the CSRF token the forms
 * must echo. Signing out deletes the row, so every instance refuses the cookie at once.
 * Only the owner role reads it. The indexes on `tenants (created_at, id)` and `(name, id)` serve the console's
 * list of tenants by creation or name, one keyset page at a time, at any fleet size.
 */
export const consoleSessionsMigration: TenantMigration = {
  id: '0019_console_sessions',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.console_sessions (
  token_hash bytea PRIMARY KEY,
  csrf_token text NOT NULL,
  actor text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_idx ON tenantry.console_sessions (expires_at);
CREATE INDEX tenants_created_idx ON tenantry.tenants (created_at, id);
CREATE INDEX tenants_name_idx ON tenantry.tenants (name, id);
CREATE INDEX tenants_slug_prefix_idx ON tenantry.tenants (slug text_pattern_ops);
CREATE INDEX tenants_name_prefix_idx ON tenantry.tenants (lower(name) text_pattern_ops);
`),
};
