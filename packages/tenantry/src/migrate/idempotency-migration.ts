import type { TenantMigration } from '../schema/migration.ts';

/**
 * Control-plane migration 0010: stored responses of requests sent with an
 * `Idempotency-Key` (see `effects/idempotency-store.ts`). A control-plane table, not a
 * tenant table: the key is claimed before the handler's tenant transaction and must outlive
 * that transaction's rollback, it serves every tier from one place (a database-tier
 * tenant's own database included), and the runtime role gets no privilege on it. Every
 * statement names the tenant, which comes from the authenticated credential, and the
 * tenant leads the primary key, so one tenant's key is never another's.
 */
export const idempotencyMigration: TenantMigration = {
  id: '0010_idempotency_keys',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.idempotency_keys (
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  method text NOT NULL,
  route text NOT NULL,
  fingerprint bytea NOT NULL,
  -- Who holds a running claim: only it may complete or release it.
  claim uuid NOT NULL,
  state text NOT NULL CHECK (state IN ('running', 'done')),
  locked_until timestamptz,
  status smallint,
  headers jsonb,
  body text,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key, method, route)
);
CREATE INDEX idempotency_keys_expiry_idx ON tenantry.idempotency_keys (expires_at);
`),
};
