import type { TenantMigration } from '../schema/migration.ts';

/**
 * Control-plane migration 0012: tenants' webhook endpoints and the history of their
 * deliveries (see `effects/webhook-endpoints.ts` and docs/events.md). The signing secret
 * must be readable to sign, so it cannot be hashed: it is sealed (AES-256-GCM, a key
 * derived from `TENANTRY_SECRET`, bound to the endpoint id). The runtime role gets no
 * privilege: only the owner role, through the control plane, reads these tables.
 */
export const webhooksMigration: TenantMigration = {
  id: '0012_webhooks',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.webhook_endpoints (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
  event_types text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 50),
  description text CHECK (length(description) <= 200),
  secret bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_idx ON tenantry.webhook_endpoints (tenant_id, created_at);

CREATE TABLE tenantry.webhook_deliveries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  endpoint_id uuid NOT NULL REFERENCES tenantry.webhook_endpoints (id) ON DELETE CASCADE,
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  event_id bigint NOT NULL,
  event_type text NOT NULL,
  attempt integer NOT NULL CHECK (attempt >= 1),
  status integer,
  ok boolean NOT NULL,
  error text,
  duration_ms integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_deliveries_endpoint_idx ON tenantry.webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_tenant_idx ON tenantry.webhook_deliveries (tenant_id);
`),
};
