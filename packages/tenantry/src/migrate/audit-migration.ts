import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { auditAccessSql, SYSTEM_CHAIN } from './audit-access-sql.ts';

/** How many months of partitions exist ahead of the current one (setup, serve start, maintenance). */
export const AUDIT_MONTHS_AHEAD = 3;

/**
 * The audit log as an append-only, hash-chained, monthly partitioned table (see
 * docs/events.md). Used by the control-plane chain (which converts the plain table of
 * migration 0001, keeping its rows, chained in their original order) and by the satellite
 * chain (a tenant database gets its own log, so a data-plane entry commits with the change
 * it records wherever the tenant's rows live).
 *
 * - `tenantry.audit_log` is `PARTITION BY RANGE (at)`, one partition per UTC month, named
 *   `audit_log_YYYY_MM`; `audit_ensure_partitions()` creates the current month and the next
 *   ones, `audit_drop_partitions()` applies retention.
 * - A `BEFORE INSERT` trigger chains every row, however it is inserted: it advances the
 *   tenant's head in `audit_heads` with one `INSERT … ON CONFLICT DO UPDATE` (the row lock
 *   serialises writers of one tenant until they commit, so the chain cannot fork) and sets
 *   `seq`, `prev_hash` and `hash = sha256(prev_hash || content)`. Values a caller passes for
 *   these columns are overwritten.
 * - `UPDATE` and `DELETE` (row triggers, cloned to every partition) and `TRUNCATE`
 *   (statement triggers on the table and on each partition) are refused, also for the owner.
 * - The runtime role gets no privilege on any of it: it appends and reads only through two
 *   `SECURITY DEFINER` functions in the context schema that take the tenant from the
 *   verified context, never from a parameter (those, verification and the owner's read are
 *   in `audit-access-sql.ts`).
 */
export function auditChainMigration(runtimeRole: string, chain: 'control' | 'satellite'): TenantMigration {
  return {
    id: chain === 'control' ? '0009_audit_chain' : 's0004_audit_chain',
    up: (m) => m.query(auditChainSql(runtimeRole)),
  };
}

function auditChainSql(runtimeRole: string): string {
  return `
DO $do$ BEGIN
  IF to_regclass('tenantry.audit_log') IS NOT NULL THEN
    ALTER TABLE tenantry.audit_log RENAME TO audit_log_v1;
  END IF;
END $do$;

CREATE SEQUENCE tenantry.audit_entry_id;

CREATE TABLE tenantry.audit_log (
  id bigint NOT NULL DEFAULT nextval('tenantry.audit_entry_id'),
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor text NOT NULL,
  tenant_id uuid,
  action text NOT NULL,
  target text,
  request_id text,
  details jsonb NOT NULL DEFAULT '{}',
  -- sha256 of the details as written: the chain covers this, so an erasure can empty the
  -- details (redacted) and every hash still verifies.
  details_digest bytea NOT NULL,
  redacted boolean NOT NULL DEFAULT false,
  seq bigint NOT NULL,
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL,
  CONSTRAINT audit_log_chained_pkey PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE tenantry.audit_entry_id OWNED BY tenantry.audit_log.id;
COMMENT ON COLUMN tenantry.audit_log.details IS 'the entry''s metadata';
CREATE INDEX audit_log_chain_idx ON tenantry.audit_log (tenant_id, seq);
CREATE INDEX audit_log_tenant_at_idx ON tenantry.audit_log (tenant_id, at);
CREATE INDEX audit_log_details_idx ON tenantry.audit_log USING gin (details jsonb_path_ops);

-- One row per chain: the last entry's position and hash, and what retention dropped
-- before the first entry still kept (the anchor the remaining chain starts from).
CREATE TABLE tenantry.audit_heads (
  chain uuid PRIMARY KEY,
  seq bigint NOT NULL,
  prev bytea NOT NULL,
  hash bytea NOT NULL,
  anchor_seq bigint NOT NULL DEFAULT 0,
  anchor_hash bytea
);

-- The content an entry's hash covers, as canonical jsonb text (the time in microseconds,
-- so the session's TimeZone cannot change it), after the previous entry's hash.
CREATE FUNCTION tenantry.audit_hash(prev bytea, seq bigint, at timestamptz, tenant_id uuid, actor text,
  action text, target text, request_id text, details_digest bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
  SELECT pg_catalog.sha256(prev OPERATOR(pg_catalog.||) pg_catalog.convert_to(pg_catalog.jsonb_build_array(seq,
    (EXTRACT(epoch FROM at) OPERATOR(pg_catalog.*) 1000000)::bigint, tenant_id, actor, action, target,
    request_id, pg_catalog.encode(details_digest, 'hex'))::text, 'UTF8'))
$fn$;

-- The digest of an entry's details (what the chain covers in their place).
CREATE FUNCTION tenantry.audit_details_digest(details jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT pg_catalog.sha256(pg_catalog.convert_to(details::text, 'UTF8'))
$fn$;

CREATE FUNCTION tenantry.audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  head record;
BEGIN
  NEW.details_digest := tenantry.audit_details_digest(NEW.details);
  NEW.redacted := false;
  INSERT INTO tenantry.audit_heads AS h (chain, seq, prev, hash)
  VALUES (coalesce(NEW.tenant_id, '${SYSTEM_CHAIN}'), 1, '\\x'::bytea,
          tenantry.audit_hash('\\x'::bytea, 1, NEW.at, NEW.tenant_id, NEW.actor, NEW.action, NEW.target,
                              NEW.request_id, NEW.details_digest))
  ON CONFLICT (chain) DO UPDATE
    SET seq = h.seq OPERATOR(pg_catalog.+) 1, prev = h.hash,
        hash = tenantry.audit_hash(h.hash, h.seq OPERATOR(pg_catalog.+) 1, NEW.at, NEW.tenant_id, NEW.actor, NEW.action, NEW.target,
                                   NEW.request_id, NEW.details_digest)
  RETURNING h.seq, h.prev, h.hash INTO head;
  NEW.seq := head.seq;
  NEW.prev_hash := head.prev;
  NEW.hash := head.hash;
  RETURN NEW;
END
$fn$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON tenantry.audit_log
  FOR EACH ROW EXECUTE FUNCTION tenantry.audit_chain();

CREATE FUNCTION tenantry.audit_refuse() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  -- The one change allowed: an erasure (tenantry.audit_redact) empties an entry's details
  -- and marks it redacted; everything the chain covers stays as it was.
  IF TG_OP = 'UPDATE' AND pg_catalog.current_setting('tenantry.audit_redacting', true) = OLD.tenant_id::text
     AND NEW.redacted AND NEW.details = '{}'::jsonb
     AND (NEW.id, NEW.at, NEW.actor, NEW.tenant_id, NEW.action, NEW.target, NEW.request_id, NEW.details_digest,
          NEW.seq, NEW.prev_hash, NEW.hash)
         IS NOT DISTINCT FROM
         (OLD.id, OLD.at, OLD.actor, OLD.tenant_id, OLD.action, OLD.target, OLD.request_id, OLD.details_digest,
          OLD.seq, OLD.prev_hash, OLD.hash) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'tenantry: the audit log is append-only (% refused)', TG_OP USING ERRCODE = '${S.auditAppendOnly}';
END
$fn$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON tenantry.audit_log
  FOR EACH ROW EXECUTE FUNCTION tenantry.audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON tenantry.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION tenantry.audit_refuse();

-- The partition of the UTC month holding 'month'; statement triggers are not cloned to
-- partitions, so each gets its own TRUNCATE guard.
CREATE FUNCTION tenantry.audit_create_partition(month timestamptz) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  lower timestamp := date_trunc('month', month AT TIME ZONE 'UTC');
  name text := 'audit_log_' || to_char(lower, 'YYYY_MM');
BEGIN
  IF to_regclass('tenantry.' || name) IS NOT NULL THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE TABLE tenantry.%I PARTITION OF tenantry.audit_log FOR VALUES FROM (%L) TO (%L)',
    name, lower AT TIME ZONE 'UTC', (lower + interval '1 month') AT TIME ZONE 'UTC');
  EXECUTE format('CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON tenantry.%I
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry.audit_refuse()', name);
  RETURN true;
END
$fn$;

-- The current month's partition and the next 'months_ahead'; returns how many it created.
-- Serialised by an advisory lock, so concurrent servers do not race on the same name.
CREATE FUNCTION tenantry.audit_ensure_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  created integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tenantry.audit_partitions'));
  FOR i IN 0..months_ahead LOOP
    IF tenantry.audit_create_partition(now() + make_interval(months => i)) THEN
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END
$fn$;

-- Retention: every partition whose month ended before 'cutoff' is dropped, or detached
-- (kept as a plain table 'audit_archive_YYYY_MM' to dump). Each chain's anchor first moves
-- to the last entry removed, so verification starts from there.
CREATE FUNCTION tenantry.audit_drop_partitions(cutoff timestamptz, keep boolean) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  part record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tenantry.audit_partitions'));
  FOR part IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'tenantry.audit_log'::regclass AND c.relname ~ '^audit_log_[0-9]{4}_[0-9]{2}$'
       AND (to_date(substr(c.relname, 11), 'YYYY_MM')::timestamp AT TIME ZONE 'UTC')
           + interval '1 month' <= cutoff
     ORDER BY c.relname
  LOOP
    EXECUTE format($q$
      INSERT INTO tenantry.audit_heads AS h (chain, seq, prev, hash, anchor_seq, anchor_hash)
      SELECT DISTINCT ON (chain) chain, seq, prev_hash, hash, seq, hash
        FROM (SELECT coalesce(tenant_id, %L::uuid) AS chain, seq, prev_hash, hash FROM tenantry.%I) p
       ORDER BY chain, seq DESC
      ON CONFLICT (chain) DO UPDATE SET anchor_seq = EXCLUDED.anchor_seq, anchor_hash = EXCLUDED.anchor_hash
       WHERE EXCLUDED.anchor_seq > h.anchor_seq$q$, '${SYSTEM_CHAIN}', part.relname);
    EXECUTE format('ALTER TABLE tenantry.audit_log DETACH PARTITION tenantry.%I', part.relname);
    IF keep THEN
      EXECUTE format('ALTER TABLE tenantry.%I RENAME TO %I', part.relname,
        replace(part.relname, 'audit_log_', 'audit_archive_'));
    ELSE
      EXECUTE format('DROP TABLE tenantry.%I', part.relname);
    END IF;
    RETURN NEXT part.relname;
  END LOOP;
END
$fn$;

REVOKE ALL ON FUNCTION tenantry.audit_hash(bytea, bigint, timestamptz, uuid, text, text, text, text, bytea) FROM PUBLIC;

-- Erasure of a tenant: its entries keep who did what and when, their details are emptied.
-- Returns how many entries it redacted.
CREATE FUNCTION tenantry.audit_redact(tenant uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  n bigint;
BEGIN
  PERFORM set_config('tenantry.audit_redacting', tenant::text, true);
  UPDATE tenantry.audit_log SET details = '{}'::jsonb, redacted = true
   WHERE tenant_id = tenant AND NOT redacted AND details <> '{}'::jsonb;
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM set_config('tenantry.audit_redacting', '', true);
  RETURN n;
END
$fn$;
REVOKE ALL ON FUNCTION tenantry.audit_redact(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.audit_chain() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.audit_refuse() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.audit_create_partition(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.audit_ensure_partitions(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.audit_drop_partitions(timestamptz, boolean) FROM PUBLIC;
${auditAccessSql(runtimeRole)}
-- A safety net: if upkeep stopped for months (or never runs, as in a satellite database,
-- whose partitions come from this migration only), entries land here instead of failing
-- the change they record. Retention leaves it alone; a month whose rows are here cannot get
-- its own partition (ensure reports it) until an operator moves them.
CREATE TABLE tenantry.audit_log_default PARTITION OF tenantry.audit_log DEFAULT;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON tenantry.audit_log_default
  FOR EACH STATEMENT EXECUTE FUNCTION tenantry.audit_refuse();

-- This month and the next ones, partitions for the rows kept from the plain table, then
-- those rows, chained in the order they were written.
SELECT tenantry.audit_ensure_partitions(${AUDIT_MONTHS_AHEAD});
DO $do$
DECLARE
  first_at timestamptz;
BEGIN
  IF to_regclass('tenantry.audit_log_v1') IS NULL THEN
    RETURN;
  END IF;
  EXECUTE 'SELECT min(at) FROM tenantry.audit_log_v1' INTO first_at;
  PERFORM tenantry.audit_create_partition(m)
     FROM generate_series(date_trunc('month', first_at), now(), interval '1 month') AS m;
  EXECUTE 'SELECT setval(''tenantry.audit_entry_id'', greatest(max(id), 1)) FROM tenantry.audit_log_v1';
  EXECUTE 'INSERT INTO tenantry.audit_log (id, at, actor, tenant_id, action, details)
    SELECT id, at, actor, tenant_id, action, details FROM tenantry.audit_log_v1 ORDER BY id';
  DROP TABLE tenantry.audit_log_v1;
END
$do$;
`;
}
