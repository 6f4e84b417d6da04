import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import { quoteIdent } from '../sql.ts';

/** The chain of entries without a tenant (control-plane actions such as `placement.created`). */
export const SYSTEM_CHAIN = '00000000-0000-0000-0000-000000000000';

/**
 * The audit log's reads, part of migration 0009 / s0004 (see `auditChainMigration`):
 * verification of the chains and a tenant's entries for the owner (control plane), and
 * the two `SECURITY DEFINER` functions of the context schema through which the runtime
 * role appends and reads, for the verified tenant only.
 */
export function auditAccessSql(runtimeRole: string): string {
  const runtime = quoteIdent(runtimeRole);
  const ctx = CONTEXT_SCHEMA;
  return `
-- Every chain (or one tenant's), checked: each kept entry's hash against its content, its
-- position against the one before (or the anchor), its link to the previous hash, and the
-- last entry against the head. One row per chain; 'problem' names the first bad entry.
CREATE FUNCTION tenantry.audit_verify(only_tenant uuid, all_chains boolean)
RETURNS TABLE (tenant_id uuid, entries bigint, bad_id bigint, bad_seq bigint, problem text)
LANGUAGE sql STABLE AS $fn$
WITH heads AS (
  SELECT h.chain, h.seq, h.hash, h.anchor_seq, h.anchor_hash FROM tenantry.audit_heads h
   WHERE all_chains OR h.chain = coalesce(only_tenant, '${SYSTEM_CHAIN}')
), e AS (
  SELECT l.id, l.seq, l.hash, l.prev_hash, k.chain, h.seq AS head_seq, h.hash AS head_hash,
         coalesce(h.anchor_seq, 0) AS anchor_seq, coalesce(h.anchor_hash, '\\x'::bytea) AS anchor_hash,
         tenantry.audit_hash(l.prev_hash, l.seq, l.at, l.tenant_id, l.actor, l.action, l.target,
                             l.request_id, l.details_digest) AS computed,
         CASE WHEN l.redacted THEN l.details = '{}'::jsonb
              ELSE l.details_digest = tenantry.audit_details_digest(l.details) END AS details_ok,
         lag(l.seq) OVER w AS before_seq, lag(l.hash) OVER w AS before_hash
    FROM tenantry.audit_log l
   CROSS JOIN LATERAL (SELECT coalesce(l.tenant_id, '${SYSTEM_CHAIN}'::uuid) AS chain) k
    LEFT JOIN heads h ON h.chain = k.chain
   WHERE (all_chains OR l.tenant_id IS NOT DISTINCT FROM only_tenant) AND l.seq > coalesce(h.anchor_seq, 0)
  WINDOW w AS (PARTITION BY k.chain ORDER BY l.seq, l.id)
), checked AS (
  SELECT chain, id, seq, CASE
    WHEN hash IS DISTINCT FROM computed THEN 'changed: its hash does not match its content'
    WHEN NOT details_ok THEN 'changed: its details do not match their digest'
    WHEN seq = before_seq THEN 'inserted: a second entry at position ' || seq
    WHEN seq <> coalesce(before_seq, anchor_seq) + 1
      THEN 'entry ' || (coalesce(before_seq, anchor_seq) + 1) || ' before it is missing'
    WHEN prev_hash IS DISTINCT FROM coalesce(before_hash, anchor_hash)
      THEN 'out of chain: it does not follow the entry before it'
    WHEN head_seq IS NULL OR seq > head_seq THEN 'inserted: past the head of the chain'
    WHEN seq = head_seq AND hash IS DISTINCT FROM head_hash THEN 'out of chain: it is not the head'
  END AS problem
  FROM e
), first_bad AS (
  SELECT DISTINCT ON (chain) chain, id, seq, problem FROM checked WHERE problem IS NOT NULL ORDER BY chain, seq, id
), counts AS (
  SELECT chain, count(*) AS n, max(seq) AS last_seq FROM e GROUP BY chain
)
SELECT nullif(k.chain, '${SYSTEM_CHAIN}'::uuid), coalesce(c.n, 0), f.id,
       coalesce(f.seq, CASE WHEN h.seq > coalesce(c.last_seq, h.anchor_seq) THEN coalesce(c.last_seq, h.anchor_seq) + 1 END),
       coalesce(f.problem, CASE WHEN h.seq > coalesce(c.last_seq, h.anchor_seq)
         THEN 'entries ' || (coalesce(c.last_seq, h.anchor_seq) + 1) || ' to ' || h.seq || ' (the end of the chain) are missing' END)
  FROM (SELECT chain FROM heads UNION SELECT chain FROM counts) k
  LEFT JOIN heads h USING (chain) LEFT JOIN counts c USING (chain) LEFT JOIN first_bad f USING (chain)
 ORDER BY k.chain
$fn$;

-- One tenant's entries, newest first, filtered; 'below_seq' is the position to continue below.
CREATE FUNCTION tenantry.audit_entries(tenant uuid, by_actor text, by_action text, since timestamptz,
  until timestamptz, below_seq bigint, max_rows integer) RETURNS SETOF tenantry.audit_log
LANGUAGE sql STABLE AS $fn$
  SELECT * FROM tenantry.audit_log l
   WHERE l.tenant_id = tenant
     AND (by_actor IS NULL OR l.actor = by_actor) AND (by_action IS NULL OR l.action = by_action)
     AND (since IS NULL OR l.at >= since) AND (until IS NULL OR l.at < until)
     AND (below_seq IS NULL OR l.seq < below_seq)
   ORDER BY l.seq DESC LIMIT max_rows
$fn$;

-- The data plane's append: the tenant is the verified context's, never a parameter. Like
-- the context functions, the data-plane functions (and what they run: the chain trigger,
-- audit_hash) have no SET search_path clause, which costs on every call: every name and
-- operator in them is schema-qualified instead.
CREATE FUNCTION ${ctx}.audit_append(action text, target text, details jsonb, actor text, request_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $fn$
DECLARE
  tid uuid := ${ctx}.current_tenant_id();
  new_id bigint;
BEGIN
  IF tid IS NULL THEN
    RAISE EXCEPTION 'tenantry: an audit entry needs a verified tenant context' USING ERRCODE = '${S.invalidContext}';
  END IF;
  INSERT INTO tenantry.audit_log (actor, tenant_id, action, target, request_id, details)
  VALUES (coalesce(actor, 'app'), tid, action, target, request_id, coalesce(details, '{}'))
  RETURNING id INTO new_id;
  RETURN new_id;
END
$fn$;

-- The data plane's read: the verified tenant's entries only.
CREATE FUNCTION ${ctx}.audit_entries(by_actor text, by_action text, since timestamptz, until timestamptz,
  below_seq bigint, max_rows integer)
RETURNS TABLE (id bigint, at timestamptz, actor text, action text, target text, request_id text, details jsonb,
  seq bigint, hash bytea)
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $fn$
DECLARE
  tid uuid := ${ctx}.current_tenant_id();
BEGIN
  IF tid IS NULL THEN
    RAISE EXCEPTION 'tenantry: reading the audit log needs a verified tenant context' USING ERRCODE = '${S.invalidContext}';
  END IF;
  RETURN QUERY SELECT e.id, e.at, e.actor, e.action, e.target, e.request_id, e.details, e.seq, e.hash
    FROM tenantry.audit_entries(tid, by_actor, by_action, since, until, below_seq, max_rows) e;
END
$fn$;

REVOKE ALL ON FUNCTION tenantry.audit_verify(uuid, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.audit_entries(uuid, text, text, timestamptz, timestamptz, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${ctx}.audit_append(text, text, jsonb, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${ctx}.audit_entries(text, text, timestamptz, timestamptz, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${ctx}.audit_append(text, text, jsonb, text, text) TO ${runtime};
GRANT EXECUTE ON FUNCTION ${ctx}.audit_entries(text, text, timestamptz, timestamptz, bigint, integer) TO ${runtime};
`;
}
