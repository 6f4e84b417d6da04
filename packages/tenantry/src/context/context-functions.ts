import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import { quoteIdent } from '../sql.ts';
import { CONTEXT_SCHEMA, CONTEXT_SETTING } from './context-dialect.ts';

/**
 * HMAC-SHA256 over `msg` with the key in `tenantry.context_key` (aliased `k`), computed
 * with the built-in `sha256()` (no extension needed), every name schema-qualified.
 */
const hmacSql = (msg: string) =>
  `pg_catalog.encode(pg_catalog.sha256(k.opad OPERATOR(pg_catalog.||) pg_catalog.sha256(k.ipad OPERATOR(pg_catalog.||) pg_catalog.convert_to(${msg}, 'UTF8'))), 'hex')`;

/**
 * The registers: temporary sequences that `enter()` (running as the owner) creates once per
 * session. A temporary relation is private to its session, and only its owner may `setval()`
 * it, so each is a per-backend value that injected SQL can read (where granted) but never
 * write. `setval()` on a temporary sequence writes no WAL, assigns no transaction id and is
 * not undone by a rollback: free to do in every transaction, and never left half-done.
 *
 * - `v`: the voucher, `hashtextextended(<tenant id>, <transaction start in µs>)`: it
 *   vouches for the tenant id in `tenantry.ctx`, and only in the transaction that entered.
 *   The hash is not cryptographic and needs not be: the runtime role cannot write the
 *   register, and the value it must match is fixed (a real tenant's id, in its one canonical
 *   text form, which the check requires), so a forgery would need two tenants' ids to
 *   collide in 64 bits for the same transaction start;
 * - `p`: the copy of the tables the tenant may use (`hashtextextended(schema, 0)`, the
 *   shared tables and a tenant database's being schema `''`), or 0 for maintenance work;
 * - `s`: the session's one-time secret; never readable by the runtime role.
 */
export const REGISTER = {
  voucher: 'pg_temp.tenantry_ctx_v',
  place: 'pg_temp.tenantry_ctx_p',
  secret: 'pg_temp.tenantry_ctx_s',
} as const;

/** Registers of the previous version (x, h, l), dropped when a session meets the new functions. */
const OLD_REGISTERS = ['pg_temp.tenantry_ctx_x', 'pg_temp.tenantry_ctx_h', 'pg_temp.tenantry_ctx_l'];

/**
 * The start of the current transaction as a hash seed: a context is only ever valid in it.
 * `CURRENT_TIMESTAMP` is not a function call (no lookup, no permission check) and the epoch
 * does not depend on the session's time zone; two functions in all, where the µs as an
 * `int8` took four.
 */
export const XACT = `pg_catalog.hashfloat8extended(pg_catalog.date_part('epoch', CURRENT_TIMESTAMP), 0)`;
/**
 * The voucher of tenant id text `id` in this transaction (the same expression on both
 * sides): the id's hash seeded with the transaction's start, which needs no string
 * building (every function an expression names is looked up and permission-checked each
 * time PL/pgSQL prepares it, once per transaction).
 */
const voucher = (id: string) => `pg_catalog.hashtextextended(${id}, ${XACT})`;
/** A fresh 60-bit secret from the server's strong random source (`random()` can be seeded by anyone). */
const RANDOM_SECRET = `('x' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.replace(pg_catalog.gen_random_uuid()::pg_catalog.text, '-', ''), 16))::bit(64)::pg_catalog.int8`;
/** A register's value in the policy check: NULL when the session has none (never entered). */
const read = (register: string) => `pg_catalog.pg_sequence_last_value(pg_catalog.to_regclass('${register}'))`;

/**
 * The database's tenant state version: a sequence that every committed change of a tenant
 * row's status, placement, freeze or statement timeout advances (see
 * {@link tenantStateVersionSql}). `enter()` compares it with the caller's copy.
 */
export const STATE_VERSION = 'tenantry.tenant_state_version';
/** The tenant state lock (an advisory lock of two int4 keys, apart from every int8 key). */
const STATE_LOCK = '1953391988, 1937006964';
/** Raised and caught inside `enter()` to end the block that holds the state lock shared. */
const RELEASE = 'TN0RL';

/** Schema-qualified operators: no function here depends on `search_path`. */
const eq = 'OPERATOR(pg_catalog.=)';
const ne = 'OPERATOR(pg_catalog.<>)';
const cat = 'OPERATOR(pg_catalog.||)';

/**
 * The transaction's context for tenant work, from the tenant's id text, statement timeout
 * and schema (SQL expressions): the path, then the registers and settings in one expression.
 * `search_path` is set only when the session's differs: the runtime role's default is the
 * shared tables' (setup), so a pool-tier transaction usually leaves it alone, while a value
 * that injected SQL set for the session is replaced for this transaction.
 */
function placeWork(tenant: string, timeout: string, place: string): string {
  return `  path := coalesce(pg_catalog.quote_ident(${place}), pg_catalog.quote_ident(shared)) ${cat} ', pg_temp';
  done := pg_catalog.concat(
    pg_catalog.setval('${REGISTER.voucher}'::pg_catalog.regclass, ${voucher(tenant)}),
    pg_catalog.setval('${REGISTER.place}'::pg_catalog.regclass, pg_catalog.hashtextextended(coalesce(${place}, ''), 0)),
    pg_catalog.set_config('${CONTEXT_SETTING}', ${tenant}, true),
    pg_catalog.set_config('statement_timeout', ${timeout}::pg_catalog.text, true),
    CASE WHEN pg_catalog.current_setting('search_path') ${ne} path THEN pg_catalog.set_config('search_path', path, true) END);`;
}

/**
 * After the tenant's row was read into `tenant`, `status`, `here`, `frozen`, `timeout` and
 * `place`: the refusals, the context ({@link placeWork}), read-only for a frozen tenant
 * (plus `onFrozen`), and `RETURN answer`.
 */
function workFromRow(answer: string, onFrozen = ''): string {
  const c = CONTEXT_SCHEMA;
  return `  IF tenant IS NULL THEN
    PERFORM ${c}.refuse('${S.tenantNotFound}', 'tenant not found');
  END IF;
  IF status ${ne} 'active' OR NOT here THEN
    PERFORM ${c}.refuse_work(status, here);
  END IF;
${placeWork('tenant', 'timeout', 'place')}
  IF frozen THEN
    -- Going read-only is allowed at any point; going back is not once a query ran.
    done := pg_catalog.set_config('transaction_read_only', 'on', true);${onFrozen}
  END IF;
  RETURN ${answer};
END
$fn$;`;
}

/** The columns of the tenant's row that `enter()` reads, into its variables of the same use. */
const READ_ROW = `SELECT t.id::pg_catalog.text, t.status, t.data_here, t.frozen, t.statement_timeout_ms, t.schema_name
      INTO tenant, status, here, frozen, timeout, place
      FROM tenantry.tenants t WHERE t.id ${eq}`;

/**
 * The common call's second half in `enter(token, next_secret, shared)`: the tenant row read
 * after the move lock (in a statement of its own, so with a new snapshot), then
 * {@link workFromRow}. `tenantUuid` is the SQL expression of the tenant's uuid.
 */
function commonPathTail(tenantUuid: string): string {
  return `  -- After the move lock, in a statement of its own (a new snapshot), as in enter().
  ${READ_ROW} ${tenantUuid};
${workFromRow('path')}`;
}

/**
 * The tenant state version of a database that holds tenant rows (control-plane migration
 * 0027, satellite s0014): the sequence, and the triggers that advance it when a change of a
 * tenant row's status, rows' whereabouts, freeze, statement timeout or schema — or its
 * removal — commits. They run at commit (deferred), holding the tenant state lock
 * exclusively until the commit is done, so that `enter()`, which reads a row and the version
 * under the same lock held shared, never pairs a row with a version that an uncommitted
 * change already advanced. A bulk update advances it once per row, under one lock.
 */
export function tenantStateVersionSql(): string {
  return `
CREATE SEQUENCE IF NOT EXISTS ${STATE_VERSION};
REVOKE ALL ON SEQUENCE ${STATE_VERSION} FROM PUBLIC;
-- Called once, so that its last value reads as a number from the start, never NULL.
SELECT nextval('${STATE_VERSION}');

CREATE OR REPLACE FUNCTION tenantry.tenant_state_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  PERFORM pg_advisory_xact_lock(${STATE_LOCK});
  PERFORM nextval('${STATE_VERSION}');
  RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION tenantry.tenant_state_changed() FROM PUBLIC;

DROP TRIGGER IF EXISTS tenant_state_changed ON tenantry.tenants;
CREATE CONSTRAINT TRIGGER tenant_state_changed
  AFTER UPDATE OF status, data_here, frozen, statement_timeout_ms, schema_name ON tenantry.tenants
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.data_here IS DISTINCT FROM NEW.data_here
        OR OLD.frozen IS DISTINCT FROM NEW.frozen OR OLD.statement_timeout_ms IS DISTINCT FROM NEW.statement_timeout_ms
        OR OLD.schema_name IS DISTINCT FROM NEW.schema_name)
  EXECUTE FUNCTION tenantry.tenant_state_changed();
DROP TRIGGER IF EXISTS tenant_state_removed ON tenantry.tenants;
CREATE CONSTRAINT TRIGGER tenant_state_removed
  AFTER DELETE ON tenantry.tenants
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  EXECUTE FUNCTION tenantry.tenant_state_changed();
`;
}

/**
 * The context functions, in their current version (control-plane migration 0006, satellite
 * migration s0002), installed in every database that holds tenant rows, so the context is
 * checked by the same code wherever a tenant's rows live. See docs/security-model.md.
 *
 * `enter(token, next_secret)` authenticates the caller, reads the tenant's row *in this
 * database* and writes the verified context into the session's registers (and, for
 * information, the tenant id into the `tenantry.ctx` setting). Two token forms:
 * - `v1.<purpose>.<tenant>.<pid>.<expiry ms>.<hmac>`: HMAC-signed with the context key (first
 *   use of a session, behind a transaction-mode pooler, or after any refusal);
 * - `s1.<purpose>.<tenant>.<secret>`: the session's one-time secret, which the previous
 *   `enter()` on this backend stored from the caller's `next_secret`. Comparing it costs no
 *   cryptography and no table read, and each value works once: a token seen in a log is
 *   already spent. A wrong secret destroys the session's secret, so guessing gets one try.
 *
 * It returns the quoted schema of a schema-tier tenant. `enter(token, next_secret, shared,
 * tenant_id, secret, known_version, known_timeout, known_place)`, what the dialect's
 * statement calls, does the same and sets the transaction's `search_path` (that schema, else
 * `shared`, then `pg_temp`), with a path of its own for the common call (a session secret,
 * tenant work), whose tenant and secret come as a uuid and an int8 beside a NULL token, and
 * which uses the caller's copy of the tenant's row while the tenant state version is the one
 * it was read at ({@link tenantStateVersionSql}); `enter(token, next_secret, shared)` is the
 * form of the previous version. Work on a tenant whose rows are not in this database
 * raises `tenantMoved`; on a frozen tenant (being moved) the transaction becomes read-only;
 * work takes a shared advisory lock on the tenant first, so a move can wait for writers.
 *
 * `current_tenant_id_in(place)` is what every policy calls (once per statement, through a
 * sub-select): a few expressions comparing the registers with the current transaction, with
 * no table read, no hash and no `SECURITY DEFINER` switch.
 *
 * Neither function depends on `search_path` (every name and operator is schema-qualified),
 * so `enter()` needs no `SET` clause, whose per-call cost was measured at a tenth of a
 * point lookup's (BENCHMARKS.md).
 */
export function contextFunctionsSql(runtimeRole: string): string {
  const runtime = quoteIdent(runtimeRole);
  const c = CONTEXT_SCHEMA;
  return `
DROP FUNCTION IF EXISTS ${c}.enter(text);

-- Raises one of Tenantry's SQLSTATEs; called only on the refusing branch of a CASE.
CREATE OR REPLACE FUNCTION ${c}.refuse(code text, message text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$ BEGIN RAISE EXCEPTION 'tenantry: %', message USING ERRCODE = code; END $fn$;

-- Why tenant work is refused for a tenant row that is not active here: suspended (TN002),
-- otherwise inactive (TN003), or its data in another database (TN005).
CREATE OR REPLACE FUNCTION ${c}.refuse_work(status text, here boolean) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  IF status = 'suspended' THEN
    PERFORM ${c}.refuse('${S.tenantSuspended}', 'tenant is suspended');
  ELSIF status <> 'active' THEN
    PERFORM ${c}.refuse('${S.tenantNotActive}', 'tenant is not active');
  END IF;
  PERFORM ${c}.refuse('${S.tenantMoved}', 'tenant data is not in this database (moved)');
  RETURN NULL;
END
$fn$;

-- Once per session: the registers (see REGISTER in the source), owned by the owner.
CREATE OR REPLACE FUNCTION ${c}.make_registers() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  DROP SEQUENCE IF EXISTS ${[...OLD_REGISTERS, REGISTER.voucher, REGISTER.place, REGISTER.secret].join(', ')};
  CREATE TEMPORARY SEQUENCE tenantry_ctx_v MINVALUE -9223372036854775808;
  CREATE TEMPORARY SEQUENCE tenantry_ctx_p MINVALUE -9223372036854775808;
  CREATE TEMPORARY SEQUENCE tenantry_ctx_s MINVALUE -9223372036854775808;
  PERFORM setval('${REGISTER.secret}', ${RANDOM_SECRET});
  GRANT SELECT ON SEQUENCE ${REGISTER.voucher}, ${REGISTER.place} TO ${runtime};
END
$fn$;

CREATE OR REPLACE FUNCTION ${c}.enter(token text, next_secret bigint) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $fn$
-- Written for the cost of its common path (a session secret, a working tenant): PL/pgSQL
-- prepares each expression it runs once per transaction, looking up and permission-checking
-- every function the expression names, so the refusing branches sit in IF blocks of their
-- own (never prepared unless taken) and the tenant row is read by one plain index lookup.
DECLARE
  a text[] := pg_catalog.string_to_array(token, '.');
  tenant text;
  status text;
  here boolean;
  frozen boolean;
  timeout int4;
  place text;
  n int8;
  done text;
BEGIN
  -- The voucher is the newest register: a session whose registers predate it gets new ones.
  IF pg_catalog.to_regclass('${REGISTER.voucher}') IS NULL THEN
    PERFORM ${c}.make_registers();
  END IF;
  IF a[1] ${eq} 's1' THEN
    IF pg_catalog.cardinality(a) ${ne} 4
       OR pg_catalog.pg_sequence_last_value('${REGISTER.secret}'::pg_catalog.regclass) IS DISTINCT FROM a[4]::pg_catalog.int8 THEN
      n := pg_catalog.setval('${REGISTER.secret}'::pg_catalog.regclass, ${RANDOM_SECRET});
      PERFORM ${c}.refuse('${S.invalidContext}', 'tenant context secret rejected');
    END IF;
  ELSE
    SELECT CASE
        WHEN pg_catalog.cardinality(a) ${ne} 6 OR a[1] ${ne} 'v1'
          THEN ${c}.refuse('${S.invalidContext}', 'malformed tenant context token')
        WHEN k.id IS NULL OR ${hmacSql(`'enter|' ${cat} pg_catalog.array_to_string(a[1:5], '.')`)} ${ne} a[6]
          THEN ${c}.refuse('${S.invalidContext}', 'tenant context token rejected')
        WHEN a[4] ${ne} pg_catalog.pg_backend_pid()::pg_catalog.text AND NOT (k.allow_unbound AND a[4] ${eq} '0')
          THEN ${c}.refuse('${S.invalidContext}', 'tenant context token belongs to another session')
        WHEN a[5]::pg_catalog.int8 OPERATOR(pg_catalog.<)
             (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8
          THEN ${c}.refuse('${S.invalidContext}', 'tenant context token expired')
      END
      INTO done
      FROM (SELECT) AS one
      LEFT JOIN tenantry.context_key k ON k.id ${eq} 1;
  END IF;
  -- Authenticated: the presented secret is spent now, before any later check can refuse
  -- (a refused enter() must not leave it usable), and the caller's next one takes its place.
  IF next_secret IS NULL THEN
    n := pg_catalog.setval('${REGISTER.secret}'::pg_catalog.regclass, ${RANDOM_SECRET});
  ELSE
    n := pg_catalog.setval('${REGISTER.secret}'::pg_catalog.regclass, next_secret);
  END IF;
  IF a[2] ${eq} 'work' THEN
    -- Taken before the row is read (the next statement, with a new snapshot): a move that
    -- holds the lock exclusively has committed its freeze by the time the row is read.
    done := pg_catalog.pg_advisory_xact_lock_shared(
      pg_catalog.hashtextextended('tenantry:tenant:' ${cat} a[3], 0))::pg_catalog.text;
  ELSIF a[2] ${ne} 'maintenance' THEN
    PERFORM ${c}.refuse('${S.invalidContext}', 'unknown context purpose');
  END IF;
  SELECT t.id::pg_catalog.text, t.status, t.data_here, t.frozen, t.statement_timeout_ms, t.schema_name
    INTO tenant, status, here, frozen, timeout, place
    FROM tenantry.tenants t WHERE t.id ${eq} a[3]::pg_catalog.uuid;
  IF tenant IS NULL THEN
    PERFORM ${c}.refuse('${S.tenantNotFound}', 'tenant not found');
  END IF;
  IF a[2] ${eq} 'maintenance' THEN
    done := pg_catalog.concat(
      pg_catalog.setval('${REGISTER.voucher}'::pg_catalog.regclass, ${voucher('tenant')}),
      pg_catalog.setval('${REGISTER.place}'::pg_catalog.regclass, 0),
      pg_catalog.set_config('${CONTEXT_SETTING}', tenant, true));
    RETURN pg_catalog.quote_ident(place);
  END IF;
  IF status ${ne} 'active' OR NOT here THEN
    PERFORM ${c}.refuse_work(status, here);
  END IF;
  done := pg_catalog.concat(
    pg_catalog.setval('${REGISTER.voucher}'::pg_catalog.regclass, ${voucher('tenant')}),
    pg_catalog.setval('${REGISTER.place}'::pg_catalog.regclass, pg_catalog.hashtextextended(coalesce(place, ''), 0)),
    pg_catalog.set_config('${CONTEXT_SETTING}', tenant, true),
    pg_catalog.set_config('statement_timeout', timeout::pg_catalog.text, true));
  IF frozen THEN
    -- Going read-only is allowed at any point; going back is not once a query ran.
    done := pg_catalog.set_config('transaction_read_only', 'on', true);
  END IF;
  RETURN pg_catalog.quote_ident(place);
END
$fn$;

-- What Tenantry calls: enter() above, with the transaction's search_path placed too (\`shared\`
-- is the schema of the shared tables), and a common path of its own for a session secret of
-- tenant work, the call of nearly every tenant transaction. Every expression it runs is
-- prepared anew in each transaction and every function an expression names is looked up and
-- permission-checked, so that path runs few expressions naming few functions; anything else,
-- refusals included, goes through enter(token, next_secret), which decides and says why.
CREATE OR REPLACE FUNCTION ${c}.enter(token text, next_secret bigint, shared text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $fn$
DECLARE
  tenant text;
  status text;
  here boolean;
  frozen boolean;
  timeout int4;
  place text;
  done text;
  path text;
BEGIN
  IF NOT pg_catalog.starts_with(token, 's1.work.') OR next_secret IS NULL
     -- s1.work.<36-character id>.<secret>, compared as text (a cast could fail, and PL/pgSQL
     -- may fold it while planning, before OR decides); a missing register reads NULL.
     OR pg_catalog.pg_sequence_last_value(pg_catalog.to_regclass('${REGISTER.secret}'))::pg_catalog.text
        IS DISTINCT FROM pg_catalog.substr(token, 46) THEN
    path := coalesce(${c}.enter(token, next_secret), pg_catalog.quote_ident(shared)) ${cat} ', pg_temp';
    RETURN pg_catalog.set_config('search_path', path, true);
  END IF;
  -- Authenticated: the secret is spent before anything can refuse.
  done := pg_catalog.setval('${REGISTER.secret}'::pg_catalog.regclass, next_secret)::pg_catalog.text
    ${cat} pg_catalog.pg_advisory_xact_lock_shared(
      pg_catalog.hashtextextended('tenantry:tenant:' ${cat} pg_catalog.substr(token, 9, 36), 0))::pg_catalog.text;
${commonPathTail('pg_catalog.substr(token, 9, 36)::pg_catalog.uuid')}

-- What the dialect's statement calls (migration 0027 / s0014): enter(token, next_secret,
-- shared) above, with the common call's parts passed apart, so that nothing of it is parsed
-- out of a token: \`token\` is NULL, \`secret\` the session's one-time secret as an int8 and
-- \`tenant_id\` the tenant's uuid. The secret authenticates the whole call (only the process
-- that chose it knows it, and it works once), so what comes beside it is the caller's word as
-- much as a tenant inside a token would be. Any other call (a token, no next secret, a wrong
-- or missing secret) goes through enter(token, next_secret), which decides and says why; a
-- wrong secret is spent there as before.
--
-- \`known_version\`, \`known_timeout\`, \`known_place\`: the caller's copy of what this function
-- answered about the tenant before (context/known-tenant-states.ts). While the database's tenant
-- state version still equals \`known_version\`, no tenant row here changed since, and the copy is
-- used instead of reading the row again. Otherwise the row is read, and the answer carries
-- the version it was read at: the version, statement timeout and schema ('' for none), then
-- \`path\`, one a line; the version is empty when the tenant's state may not be copied (frozen).
CREATE OR REPLACE FUNCTION ${c}.enter(token text, next_secret bigint, shared text, tenant_id uuid, secret bigint,
                                      known_version bigint, known_timeout int4, known_place text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $fn$
DECLARE
  tenant text;
  status text;
  here boolean;
  frozen boolean;
  timeout int4;
  place text;
  version text;
  done text;
  path text;
BEGIN
  IF token IS NOT NULL OR next_secret IS NULL
     OR pg_catalog.pg_sequence_last_value(pg_catalog.to_regclass('${REGISTER.secret}')) IS DISTINCT FROM secret THEN
    path := coalesce(${c}.enter(coalesce(token, 's1.work.' ${cat} coalesce(tenant_id::pg_catalog.text, '') ${cat} '.' ${cat} coalesce(secret::pg_catalog.text, '0')), next_secret),
                     pg_catalog.quote_ident(shared)) ${cat} ', pg_temp';
    -- (A missing secret counts as a wrong one: the session's is spent, and TN001 says why.)
    RETURN pg_catalog.set_config('search_path', path, true);
  END IF;
  -- Authenticated: the secret is spent before anything can refuse. concat() takes the lock's
  -- void as it is: no casts to prepare.
  done := pg_catalog.concat(
    pg_catalog.setval('${REGISTER.secret}'::pg_catalog.regclass, next_secret),
    pg_catalog.pg_advisory_xact_lock_shared(
      pg_catalog.hashtextextended('tenantry:tenant:' ${cat} tenant_id::pg_catalog.text, 0)));
  -- After the move lock (so a freeze committed before it is seen): the caller's copy, if no
  -- tenant's state changed since it was read. Only an active tenant whose rows are here and
  -- that is not frozen is ever copied.
  IF pg_catalog.pg_sequence_last_value('${STATE_VERSION}'::pg_catalog.regclass) ${eq} known_version THEN
${placeWork('tenant_id::pg_catalog.text', 'known_timeout', 'known_place').replaceAll('\n', '\n  ').replace(/^/, '  ')}
    RETURN path;
  END IF;
  -- The row and the version it is read at, with no change of any tenant's state in progress
  -- between the two: a change takes the tenant state lock exclusively when it commits (the trigger
  -- on tenantry.tenants), and this block holds it shared, then releases it by rolling back.
  BEGIN
    done := pg_catalog.pg_advisory_xact_lock_shared(${STATE_LOCK})::pg_catalog.text;
    ${READ_ROW} tenant_id;
    version := pg_catalog.pg_sequence_last_value('${STATE_VERSION}'::pg_catalog.regclass)::pg_catalog.text;
    RAISE SQLSTATE '${RELEASE}';
  EXCEPTION WHEN SQLSTATE '${RELEASE}' THEN
    NULL;
  END;
${workFromRow(`pg_catalog.concat_ws(E'\\n', version, timeout, coalesce(place, ''), path)`, "\n    version := '';")}

-- The verified tenant, if this copy of the tables is its own: \`place\` is the schema of a
-- schema-tier copy, '' for the shared tables and a tenant database's tables, NULL for "any".
-- No context: NULL (the policy then hides every row and refuses every write). A
-- \`tenantry.ctx\` setting that the registers do not vouch for in this transaction (forged,
-- copied, left from another one): TN001. PL/pgSQL, not an inlinable SQL function: inlining
-- re-parses the body while planning every statement (measured at ~90 µs of planning per
-- unprepared statement, more than the whole check costs to run). No table read, no hash, not
-- SECURITY DEFINER and no SET clause: the registers are readable by the caller.
CREATE OR REPLACE FUNCTION ${c}.current_tenant_id_in(place text) RETURNS uuid
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
  v text := pg_catalog.current_setting('${CONTEXT_SETTING}', true);
BEGIN
  IF v IS NULL OR v ${eq} '' THEN
    RETURN NULL;
  END IF;
  -- Vouched for in this transaction. A session that never entered has no registers:
  -- to_regclass() is NULL and the voucher fails. The voucher is the hash of the id's one
  -- canonical text, so another spelling of the same uuid fails too.
  IF ${read(REGISTER.voucher)} IS DISTINCT FROM ${voucher('v')} THEN
    PERFORM ${c}.refuse('${S.invalidContext}', 'tenant context rejected');
  END IF;
  -- The verified tenant if this copy is its own (the registers exist: the voucher matched).
  IF place IS NULL OR pg_catalog.pg_sequence_last_value('${REGISTER.place}'::pg_catalog.regclass)
       ${eq} ANY (ARRAY[0, pg_catalog.hashtextextended(place, 0)]) THEN
    RETURN v;
  END IF;
  RETURN NULL;
END
$fn$;

-- The verified tenant of the current transaction, in any copy; NULL when none was entered.
CREATE OR REPLACE FUNCTION ${c}.current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE
AS $fn$ SELECT ${c}.current_tenant_id_in(NULL) $fn$;

REVOKE ALL ON FUNCTION ${c}.enter(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${c}.make_registers() FROM PUBLIC;
REVOKE ALL ON FUNCTION ${c}.refuse(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${c}.refuse_work(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${c}.enter(text, bigint) TO ${runtime};
REVOKE ALL ON FUNCTION ${c}.enter(text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${c}.enter(text, bigint, text) TO ${runtime};
REVOKE ALL ON FUNCTION ${c}.enter(text, bigint, text, uuid, bigint, bigint, int4, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${c}.enter(text, bigint, text, uuid, bigint, bigint, int4, text) TO ${runtime};
GRANT EXECUTE ON FUNCTION ${c}.refuse(text, text) TO ${runtime};
GRANT EXECUTE ON FUNCTION ${c}.current_tenant_id() TO ${runtime};
GRANT EXECUTE ON FUNCTION ${c}.current_tenant_id_in(text) TO ${runtime};
`;
}
