import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';
import { CLUSTER_CONTEXT_SETTING } from './citus-dialect.ts';
import { CONTEXT_SCHEMA, CONTEXT_SETTING } from './context-dialect.ts';
import { REGISTER, XACT } from './context-functions.ts';

/** The node-local copy of the context key, on every node of the cluster (never distributed). */
export const NODE_KEY_TABLE = `${CONTEXT_SCHEMA}.node_key`;

/**
 * An empty Citus local table (on the coordinator, in Citus's metadata) whose read makes Citus
 * assign the distributed transaction id. Not a reference table: a transaction that read one
 * costs ~100 µs more end to end (pgbench, BEGIN; the read; COMMIT) against ~20 µs for a
 * Citus local table.
 */
export const CLUSTER_CLOCK_TABLE = `${CONTEXT_SCHEMA}.coordinator_clock`;

/** The reference table that {@link CLUSTER_CLOCK_TABLE} replaces; `setup()` drops it. */
export const OLD_CLUSTER_CLOCK_TABLE = `${CONTEXT_SCHEMA}.cluster_clock`;

const eq = 'OPERATOR(pg_catalog.=)';
const ne = 'OPERATOR(pg_catalog.<>)';
const cat = 'OPERATOR(pg_catalog.||)';

/** HMAC-SHA256 of `msg` with the key aliased `k` (the same construction as `enter()`'s). */
const hmac = (msg: string) =>
  `pg_catalog.encode(pg_catalog.sha256(k.opad ${cat} pg_catalog.sha256(k.ipad ${cat} pg_catalog.convert_to(${msg}, 'UTF8'))), 'hex')`;

/**
 * What the MAC signs besides the tenant and the place: the distributed transaction
 * (`d`, a row of `get_current_transaction_id()`), the same on the coordinator and on every
 * worker that takes part, unique per transaction of the cluster. Its time is taken in
 * microseconds, not as text, which would depend on each node's `TimeZone`.
 */
const transactionSql = `d.initiator_node_identifier::pg_catalog.text ${cat} '.' ${cat} d.transaction_number::pg_catalog.text ${cat} '.' ${cat}
      (pg_catalog.date_part('epoch', d.transaction_stamp) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8::pg_catalog.text`;

/**
 * The context functions of a Citus cluster (`citusDialect`), installed by `setup()` on the
 * coordinator and propagated by Citus to every node:
 *
 * - `enter_cluster(token, next_secret, shared)`: `enter()` (the token checked as on one
 *   server, the tenant's row read on the coordinator, `search_path` placed), then the distributed transaction id is assigned
 *   (a read of the empty Citus local table `coordinator_clock`) and the context
 *   `<tenant>.<place>.<mac>` is placed with `SET LOCAL` — which Citus sends to every worker
 *   the transaction uses, now or later — after turning `citus.propagate_set_commands` on
 *   for the transaction. `set_config()` is not propagated: the workers would see nothing.
 * - `node_tenant_id_in(place)`: what every policy calls, on whichever node runs the shard
 *   query. It recomputes the MAC with the node's own copy of the key and that node's view
 *   of the distributed transaction id: a value copied from another transaction (or forged)
 *   is refused (TN001), no context sees nothing. It reads no distributed table (a nested
 *   distributed query fails on a worker) and no temporary object (a worker's transaction
 *   may be prepared for two-phase commit, which refuses temporary objects).
 *
 * The coordinator-local tables of the control plane keep `enter()`'s own check (the
 * `tenantry.ctx` setting and the session registers), which this leaves in place.
 */
export function clusterContextFunctionsSql(runtimeRole: string): string {
  const runtime = quoteIdent(runtimeRole);
  const c = CONTEXT_SCHEMA;
  return `
-- Replaced by the three-argument form below (which also places search_path, as enter()'s does).
DROP FUNCTION IF EXISTS ${c}.enter_cluster(text, bigint);

CREATE OR REPLACE FUNCTION ${c}.enter_cluster(token text, next_secret bigint, shared text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $fn$
-- Written for the cost of a one-statement transaction: PL/pgSQL prepares each expression
-- once per transaction, so this runs few of them, and enter()'s own common path (the
-- session secret) with search_path placed only when it differs.
DECLARE
  path text := ${c}.enter(token, next_secret, shared);
  ctx text;
BEGIN
  -- Propagation on for this transaction, then any distributed read starts the coordinated
  -- transaction and assigns its id (the read is local: a Citus local table on the coordinator).
  ctx := pg_catalog.set_config('citus.propagate_set_commands', 'local', true);
  PERFORM 1 FROM ${CLUSTER_CLOCK_TABLE} LIMIT 0;
  SELECT v.c ${cat} '.' ${cat} ${hmac(`'node|' ${cat} v.c ${cat} '.' ${cat} ${transactionSql}`)}
    INTO ctx
    FROM (SELECT pg_catalog.current_setting('${CONTEXT_SETTING}') ${cat} '.' ${cat}
                 pg_catalog.pg_sequence_last_value('${REGISTER.place}'::pg_catalog.regclass)::pg_catalog.text AS c) v,
         pg_catalog.get_current_transaction_id() d, ${NODE_KEY_TABLE} k
   WHERE k.id ${eq} 1 AND d.transaction_number ${ne} 0;
  IF ctx IS NULL THEN
    PERFORM ${c}.refuse('${S.invalidContext}', 'no distributed transaction or no node key (run tenantry setup)');
  END IF;
  EXECUTE 'SET LOCAL ${CLUSTER_CONTEXT_SETTING} = ' ${cat} pg_catalog.quote_literal(ctx);
  RETURN path;
END
$fn$;

-- The verified tenant on this node, if this copy of the tables is its own (see
-- current_tenant_id_in); NULL without a context; TN001 for a value this transaction's
-- MAC does not match, or one presented by a backend the node does not trust with it (the
-- binding, below). SECURITY DEFINER: the node key is unreadable to the runtime role.
-- About 35 µs in a one-statement transaction (a one-time filter: once per statement on an
-- index scan), 12 µs for each later call in the same transaction. Measured and no faster:
-- one query instead of several PL/pgSQL expressions, the transaction id's fields read
-- without a function scan; slower: LANGUAGE sql (planned on every call, 5x), a scan of the
-- key table without its primary key (2x). BENCHMARKS.md, "Citus".
--
-- The binding: the MAC ties the value to a distributed transaction id, which any role can
-- assign itself on a connection of its own (assign_distributed_transaction_id()). So the
-- value is taken only from a backend that is (a) the one that entered it (its registers
-- vouch for the same tenant in this transaction: the coordinator, when Citus runs the shard
-- query in the entering backend) or (b) a connection that presented the cluster's client
-- certificate, which Citus's own connections do (citus.node_conninfo) and PostgreSQL
-- verified against ssl_ca_file; unless the node key row says 'network' (the opt-out). The
-- certificate's subject is read from this backend's own row of pg_stat_get_activity()
-- (no extension needed; the owner is a member of the runtime role, so it may see it).
-- The binding's tests run only when reached (PL/pgSQL prepares and runs a statement only
-- then): the opt-out costs one comparison; a backend without a temporary schema (every
-- node's backends but the entering one) skips the register lookup (pg_my_temp_schema() is a
-- variable read, to_regclass() a name lookup); only a backend that did not enter the context
-- reads its own row of the activity table, which PostgreSQL copies once per transaction. In
-- the main query they cost every call: a sub-select there is set up on each run even when a
-- CASE never reaches it (measured: the opt-out 52 against 34 µs per later call, load 9).
CREATE OR REPLACE FUNCTION ${c}.node_tenant_id_in(place text) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
AS $fn$
DECLARE
  v text := pg_catalog.current_setting('${CLUSTER_CONTEXT_SETTING}', true);
  a text[];
  ok boolean;
  binding text;
  peer text;
BEGIN
  IF v IS NULL OR v ${eq} '' THEN
    RETURN NULL;
  END IF;
  a := pg_catalog.string_to_array(v, '.');
  SELECT pg_catalog.cardinality(a) ${eq} 3
         AND ${hmac(`'node|' ${cat} a[1] ${cat} '.' ${cat} a[2] ${cat} '.' ${cat} ${transactionSql}`)} ${eq} a[3],
         k.peer_binding, k.peer_dn
    INTO ok, binding, peer
    FROM pg_catalog.get_current_transaction_id() d, ${NODE_KEY_TABLE} k
   WHERE k.id ${eq} 1;
  IF ok IS NOT TRUE THEN
    PERFORM ${c}.refuse('${S.invalidContext}', 'tenant context rejected on this node');
  END IF;
  -- Not the opt-out, and not the backend that entered the context (its registers vouch for
  -- the same tenant in this transaction): the connection must be the cluster's peer.
  IF binding IS DISTINCT FROM 'network'
     AND (pg_catalog.pg_my_temp_schema() ${eq} 0::pg_catalog.oid
          OR pg_catalog.pg_sequence_last_value(pg_catalog.to_regclass('${REGISTER.voucher}'))
             IS DISTINCT FROM pg_catalog.hashtextextended(a[1], ${XACT})) THEN
    IF peer IS NULL THEN
      PERFORM ${c}.refuse('${S.invalidContext}', 'tenant context refused on this node: it comes from another node and no peer identity is configured (set the citus option peerCertificateDn, TENANTRY_CITUS_PEER_DN, to the subject of the client certificate Citus connects with, or peerBinding: ''network'', then run tenantry setup; docs/citus.md)');
    END IF;
    IF (SELECT s.ssl_client_dn FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) s)
       IS DISTINCT FROM peer THEN
      PERFORM ${c}.refuse('${S.invalidContext}', 'tenant context refused on this node: the connection did not present the cluster''s client certificate');
    END IF;
  END IF;
  RETURN CASE
    WHEN place IS NULL OR a[2]::pg_catalog.int8 ${eq} ANY (ARRAY[0, pg_catalog.hashtextextended(place, 0)])
      THEN a[1]::pg_catalog.uuid
  END;
END
$fn$;

CREATE OR REPLACE FUNCTION ${c}.node_tenant_id() RETURNS uuid
LANGUAGE sql STABLE
AS $fn$ SELECT ${c}.node_tenant_id_in(NULL) $fn$;

REVOKE ALL ON FUNCTION ${c}.enter_cluster(text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${c}.enter_cluster(text, bigint, text) TO ${runtime};
GRANT EXECUTE ON FUNCTION ${c}.node_tenant_id_in(text) TO ${runtime};
GRANT EXECUTE ON FUNCTION ${c}.node_tenant_id() TO ${runtime};
`;
}

/**
 * Which backends a node accepts a context from, written next to its key: `dn`, the
 * subject of the client certificate of Citus's connections (`pg_stat_ssl.client_dn`), or
 * the `'network'` opt-out; neither: only the backend that entered the context.
 */
export interface NodePeer {
  readonly dn: string | undefined;
  readonly binding: 'certificate' | 'network';
}

/**
 * The node-local key table, created where it runs (the coordinator with DDL propagation off
 * for it, each worker through `run_command_on_workers`), with the context key's pads and the
 * peer binding ({@link NodePeer}). Idempotent: a later `setup()` (after a node was added,
 * the key rotated or the peer identity changed) brings every node to the current values.
 */
export function nodeKeySql(ownerRole: string, ipadHex: string, opadHex: string, peer: NodePeer): string {
  const owner = quoteIdent(ownerRole);
  const dn = peer.dn === undefined ? 'NULL' : quoteLiteral(peer.dn);
  return `CREATE TABLE IF NOT EXISTS ${NODE_KEY_TABLE} (id int PRIMARY KEY CHECK (id = 1), ipad bytea NOT NULL, opad bytea NOT NULL);
ALTER TABLE ${NODE_KEY_TABLE} ADD COLUMN IF NOT EXISTS peer_dn text,
  ADD COLUMN IF NOT EXISTS peer_binding text NOT NULL DEFAULT 'certificate' CHECK (peer_binding IN ('certificate', 'network'));
ALTER TABLE ${NODE_KEY_TABLE} OWNER TO ${owner};
REVOKE ALL ON ${NODE_KEY_TABLE} FROM PUBLIC;
INSERT INTO ${NODE_KEY_TABLE} (id, ipad, opad, peer_dn, peer_binding)
  VALUES (1, '\\x${ipadHex}', '\\x${opadHex}', ${dn}, ${quoteLiteral(peer.binding)})
  ON CONFLICT (id) DO UPDATE SET ipad = EXCLUDED.ipad, opad = EXCLUDED.opad, peer_dn = EXCLUDED.peer_dn,
    peer_binding = EXCLUDED.peer_binding`;
}
