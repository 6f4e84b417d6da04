import type { TenantMigration } from '../schema/migration.ts';

/**
 * Control-plane migration 0017: webhook dead letters (see `effects/webhook-deliverer.ts`
 * and docs/events.md). A row exists while an event could not be delivered to an endpoint
 * after every attempt; it keeps the exact body that was signed and sent, so that a replay
 * sends the same event even after the outbox row was purged. A successful replay removes
 * it. Like the rest of the webhook tables, only the owner role reads it.
 */
export const webhookDeadLettersMigration: TenantMigration = {
  id: '0017_webhook_dead_letters',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.webhook_dead_letters (
  endpoint_id uuid NOT NULL REFERENCES tenantry.webhook_endpoints (id) ON DELETE CASCADE,
  event_id bigint NOT NULL,
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  event_type text NOT NULL,
  body text NOT NULL,
  attempts integer NOT NULL CHECK (attempts >= 1),
  last_error text,
  dead_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_dead_letters_tenant_idx ON tenantry.webhook_dead_letters (tenant_id, endpoint_id, dead_at);
`),
};
