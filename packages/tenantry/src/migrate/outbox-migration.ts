import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { quoteIdent } from '../sql.ts';

/** The channel an insert into the outbox notifies, with the tenant id as payload. */
export const OUTBOX_CHANNEL = 'tenantry_outbox';

/**
 * Control-plane migration 0011: the transactional outbox (see `effects/outbox.ts` and
 * docs/events.md). One table for every tenant whose rows are in the main database;
 * `seq` orders each tenant's events. It is taken from the tenant's row of `outbox_heads`
 * with one `INSERT … ON CONFLICT DO UPDATE`, whose row lock is held until the writer's
 * transaction ends: two writers of one tenant take positions one after the other, in the
 * order they commit, and a rolled-back writer leaves no gap (its head update rolls back
 * too). A dispatcher may therefore deliver a tenant's events strictly by `seq`.
 *
 * The runtime role gets no privilege on the tables; it appends through
 * `outbox_append(…)`, which takes the tenant from the verified context, like
 * `audit_append`. As there, the data-plane functions have no `SET search_path` clause
 * (it costs on every call): every name and operator in them is schema-qualified.
 */
export function outboxMigration(runtimeRole: string): TenantMigration {
  const runtime = quoteIdent(runtimeRole);
  const ctx = CONTEXT_SCHEMA;
  return {
    id: '0011_outbox',
    up: (m) =>
      m.query(`
CREATE TABLE tenantry.outbox_heads (
  tenant_id uuid PRIMARY KEY REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  seq bigint NOT NULL
);

CREATE TABLE tenantry.outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  seq bigint NOT NULL,
  type text NOT NULL CHECK (length(type) BETWEEN 1 AND 200),
  payload jsonb NOT NULL DEFAULT '{}',
  actor text,
  request_id text,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  -- A retried event waits until then; the tenant's later events wait behind it.
  available_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_error text,
  delivered_at timestamptz,
  UNIQUE (tenant_id, seq)
);
-- What a dispatcher looks for: the first pending event of each tenant.
CREATE INDEX outbox_pending_idx ON tenantry.outbox (tenant_id, seq) WHERE state = 'pending';
CREATE INDEX outbox_failed_idx ON tenantry.outbox (tenant_id, id) WHERE state = 'failed';
CREATE INDEX outbox_delivered_idx ON tenantry.outbox (delivered_at) WHERE state = 'delivered';

-- Positions the event in its tenant's order and wakes the dispatchers once it commits.
CREATE FUNCTION tenantry.outbox_position() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO tenantry.outbox_heads AS h (tenant_id, seq) VALUES (NEW.tenant_id, 1)
  ON CONFLICT (tenant_id) DO UPDATE SET seq = h.seq OPERATOR(pg_catalog.+) 1
  RETURNING h.seq INTO NEW.seq;
  PERFORM pg_catalog.pg_notify('${OUTBOX_CHANNEL}', NEW.tenant_id::text);
  RETURN NEW;
END
$fn$;
CREATE TRIGGER outbox_position BEFORE INSERT ON tenantry.outbox
  FOR EACH ROW EXECUTE FUNCTION tenantry.outbox_position();

-- The data plane's append: the tenant is the verified context's, never a parameter.
CREATE FUNCTION ${ctx}.outbox_append(event_type text, payload jsonb, actor text, request_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $fn$
DECLARE
  tid uuid := ${ctx}.current_tenant_id();
  new_id bigint;
BEGIN
  IF tid IS NULL THEN
    RAISE EXCEPTION 'tenantry: an event needs a verified tenant context' USING ERRCODE = '${S.invalidContext}';
  END IF;
  INSERT INTO tenantry.outbox (tenant_id, type, payload, actor, request_id)
  VALUES (tid, event_type, coalesce(payload, '{}'), actor, request_id)
  RETURNING id INTO new_id;
  RETURN new_id;
END
$fn$;
REVOKE ALL ON FUNCTION ${ctx}.outbox_append(text, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${ctx}.outbox_append(text, jsonb, text, text) TO ${runtime};
`),
  };
}

/**
 * The transaction-local setting a writer sets (`SELECT set_config(…, 'after_commit', true)`)
 * when it sends the outbox's notification itself after committing (`ChangeNotifier`): the
 * trigger then leaves it out of the transaction.
 */
export const OUTBOX_NOTIFY_SETTING = 'tenantry.outbox_notify';

/**
 * Control-plane migration 0020: the outbox trigger notifies inside the writing transaction
 * unless that transaction set {@link OUTBOX_NOTIFY_SETTING} to `after_commit`. A `NOTIFY`
 * takes a cluster-wide lock at commit, held until the commit is flushed, so transactions
 * that notify commit one at a time; tenant creation writes a `tenant.created` event and is
 * frequent, so it notifies after its commit instead, with other creates' notifications
 * (see `control/change-notifier.ts`). The data plane's appends are unchanged.
 */
export const outboxNotifyAfterCommitMigration: TenantMigration = {
  id: '0020_outbox_notify_after_commit',
  up: (m) =>
    m.query(`
CREATE OR REPLACE FUNCTION tenantry.outbox_position() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO tenantry.outbox_heads AS h (tenant_id, seq) VALUES (NEW.tenant_id, 1)
  ON CONFLICT (tenant_id) DO UPDATE SET seq = h.seq OPERATOR(pg_catalog.+) 1
  RETURNING h.seq INTO NEW.seq;
  IF pg_catalog.current_setting('${OUTBOX_NOTIFY_SETTING}', true) IS DISTINCT FROM 'after_commit' THEN
    PERFORM pg_catalog.pg_notify('${OUTBOX_CHANNEL}', NEW.tenant_id::text);
  END IF;
  RETURN NEW;
END
$fn$;
`),
};
