import { CONTEXT_SCHEMA, CONTEXT_SETTING } from '../context/context-dialect.ts';
import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import { quoteIdent } from '../sql.ts';

/**
 * HMAC-SHA256 over `msg` with the key in `tenantry.context_key`, computed with the
 * built-in `sha256()` (no extension needed, works wherever PostgreSQL 11+ does).
 */
export const HMAC_SQL = (msg: string) =>
  `encode(sha256(k.opad || sha256(k.ipad || convert_to(${msg}, 'UTF8'))), 'hex')`;

/**
 * The context functions as control-plane migration 0005 and satellite migration s0001
 * installed them (kept as applied; migration 0006 and s0002 replace them with
 * {@link contextFunctionsSql}). Both chains run in every database that holds tenant rows.
 *
 * `enter(token)` checks a signed entry token (`v1.<purpose>.<tenant>.<pid>.<expiry>.<hmac>`),
 * reads the tenant's row *in this database* and places the verified context. It returns
 * the quoted schema of a schema-tier tenant (the caller sets `search_path` to it in the
 * same statement, see the dialect), so the route to a tenant's tables is decided by
 * PostgreSQL from the verified tenant, not by the application.
 *
 * - pid `0` is accepted only when `context_key.allow_unbound` (behind a transaction-mode
 *   pooler the client cannot know its server process); the session value is still bound
 *   to the real backend and transaction.
 * - work on a tenant whose rows are not in this database (moved away) raises
 *   `tenantMoved`; on a frozen tenant (being moved) the transaction becomes read-only.
 * - work takes a shared advisory lock on the tenant, so a move can wait for in-flight
 *   writers before it copies.
 */
export function contextFunctionsV1Sql(runtimeRole: string): string {
  const runtime = quoteIdent(runtimeRole);
  return `
CREATE FUNCTION ${CONTEXT_SCHEMA}.enter(token text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  parts text[] := string_to_array(token, '.');
  expected text;
  unbound boolean;
  tid uuid;
  tstatus text;
  ttimeout integer;
  tschema text;
  there boolean;
  tfrozen boolean;
  xact text;
BEGIN
  IF coalesce(array_length(parts, 1), 0) <> 6 OR parts[1] <> 'v1' THEN
    RAISE EXCEPTION 'tenantry: malformed tenant context token' USING ERRCODE = '${S.invalidContext}';
  END IF;
  SELECT ${HMAC_SQL(`'enter|' || array_to_string(parts[1:5], '.')`)}, k.allow_unbound INTO expected, unbound
    FROM tenantry.context_key k WHERE k.id = 1;
  IF expected IS NULL OR expected <> parts[6] THEN
    RAISE EXCEPTION 'tenantry: tenant context token rejected' USING ERRCODE = '${S.invalidContext}';
  END IF;
  IF parts[4] <> pg_backend_pid()::text AND NOT (unbound AND parts[4] = '0') THEN
    RAISE EXCEPTION 'tenantry: tenant context token belongs to another session' USING ERRCODE = '${S.invalidContext}';
  END IF;
  IF parts[5]::bigint < (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
    RAISE EXCEPTION 'tenantry: tenant context token expired' USING ERRCODE = '${S.invalidContext}';
  END IF;
  IF parts[2] = 'work' THEN
    -- Taken before the row is read: a move that holds the lock exclusively has committed
    -- its freeze by the time this read runs (each statement here takes a new snapshot).
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('tenantry:tenant:' || parts[3], 0));
  ELSIF parts[2] <> 'maintenance' THEN
    RAISE EXCEPTION 'tenantry: unknown context purpose' USING ERRCODE = '${S.invalidContext}';
  END IF;
  tid := parts[3]::uuid;
  SELECT t.status, t.statement_timeout_ms, t.schema_name, t.data_here, t.frozen
    INTO tstatus, ttimeout, tschema, there, tfrozen
    FROM tenantry.tenants t WHERE t.id = tid;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tenantry: tenant not found' USING ERRCODE = '${S.tenantNotFound}';
  END IF;
  IF parts[2] = 'work' THEN
    IF tstatus = 'suspended' THEN
      RAISE EXCEPTION 'tenantry: tenant is suspended' USING ERRCODE = '${S.tenantSuspended}';
    ELSIF tstatus <> 'active' THEN
      RAISE EXCEPTION 'tenantry: tenant is not active' USING ERRCODE = '${S.tenantNotActive}';
    END IF;
    IF NOT there THEN
      RAISE EXCEPTION 'tenantry: tenant data is not in this database (moved)' USING ERRCODE = '${S.tenantMoved}';
    END IF;
    PERFORM set_config('statement_timeout', ttimeout::text, true);
    IF tfrozen THEN
      -- Going read-only is allowed at any point; going back is not once a query ran.
      PERFORM set_config('transaction_read_only', 'on', true);
    END IF;
  END IF;
  -- The session value is bound to this backend and this transaction's start time, so
  -- it is worthless anywhere else, even to whoever reads it.
  -- It also carries the purpose and the tenant's schema here ('' outside the schema tier),
  -- so a policy can tell whether this copy of the tables is the tenant's own.
  xact := parts[3] || '.' || pg_backend_pid() || '.'
    || ((extract(epoch FROM transaction_timestamp()) * 1000000)::bigint)::text || '.' || parts[2] || '.'
    || coalesce(tschema, '');
  SELECT ${HMAC_SQL(`'ctx|' || xact`)} INTO expected FROM tenantry.context_key k WHERE k.id = 1;
  PERFORM set_config('${CONTEXT_SETTING}', xact || '.' || expected, true);
  RETURN CASE WHEN tschema IS NULL THEN NULL ELSE quote_ident(tschema) END;
END
$fn$;

-- The verified tenant, if this copy of the tables is its own: \`place\` is the schema a
-- schema-tier copy lives in, '' for the shared tables and a tenant database's tables, NULL
-- for "any". Tenantry's maintenance work (moves, purges) may use any copy. Otherwise NULL,
-- which makes the policy hide every row and refuse every write.
CREATE FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id_in(place text) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v text := current_setting('${CONTEXT_SETTING}', true);
  parts text[];
  expected text;
BEGIN
  IF v IS NULL OR v = '' THEN
    RETURN NULL;
  END IF;
  parts := string_to_array(v, '.');
  IF coalesce(array_length(parts, 1), 0) <> 6
     OR parts[2] <> pg_backend_pid()::text
     OR parts[3] <> ((extract(epoch FROM transaction_timestamp()) * 1000000)::bigint)::text THEN
    RAISE EXCEPTION 'tenantry: tenant context rejected' USING ERRCODE = '${S.invalidContext}';
  END IF;
  SELECT ${HMAC_SQL(`'ctx|' || array_to_string(parts[1:5], '.')`)} INTO expected
    FROM tenantry.context_key k WHERE k.id = 1;
  IF expected IS NULL OR expected <> parts[6] THEN
    RAISE EXCEPTION 'tenantry: tenant context rejected' USING ERRCODE = '${S.invalidContext}';
  END IF;
  IF place IS NOT NULL AND parts[4] <> 'maintenance' AND parts[5] <> place THEN
    RETURN NULL;
  END IF;
  RETURN parts[1]::uuid;
END
$fn$;

-- The verified tenant of the current transaction; NULL when none was entered.
-- Policies call it through a sub-select, so it runs once per statement (InitPlan).
CREATE OR REPLACE FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT ${CONTEXT_SCHEMA}.current_tenant_id_in(NULL) $fn$;

REVOKE ALL ON FUNCTION ${CONTEXT_SCHEMA}.enter(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id_in(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${CONTEXT_SCHEMA}.enter(text) TO ${runtime};
GRANT EXECUTE ON FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id() TO ${runtime};
GRANT EXECUTE ON FUNCTION ${CONTEXT_SCHEMA}.current_tenant_id_in(text) TO ${runtime};
`;
}
