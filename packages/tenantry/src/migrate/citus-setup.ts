import type { ClientBase } from 'pg';
import {
  CLUSTER_CLOCK_TABLE,
  clusterContextFunctionsSql,
  type NodePeer,
  nodeKeySql,
  OLD_CLUSTER_CLOCK_TABLE,
} from '../context/cluster-context-functions.ts';
import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';

/** What {@link setupCitus} needs: the roles, the context key's HMAC pads and the peer binding. */
export interface CitusSetupOptions {
  readonly owner: string;
  readonly runtime: string;
  readonly ipad: Buffer;
  readonly opad: Buffer;
  readonly peer: NodePeer;
}

/**
 * Citus functions that send SQL of the caller's choosing to a node over Citus's own
 * connections (which present the cluster's client certificate, so a node would take a
 * replayed context from them), or run it as if it had come that way. Citus grants them to
 * PUBLIC; `setup()` revokes that on every node (every overload, by name, so a Citus version
 * that adds one is covered). A role that needs them (an operator's) gets an explicit GRANT.
 */
export const CALLER_SQL_FUNCTIONS: readonly string[] = Object.freeze([
  'run_command_on_workers',
  'run_command_on_all_nodes',
  'run_command_on_coordinator',
  'run_command_on_shards',
  'run_command_on_placements',
  'run_command_on_colocated_placements',
  'master_run_on_worker',
  'citus_run_local_command',
]);

/**
 * The statements that take {@link CALLER_SQL_FUNCTIONS} from PUBLIC and from the runtime
 * role, and TEMPORARY from both, on the node where they run (neither is propagated by Citus),
 * and make the owner a member of the runtime role: the node check (SECURITY DEFINER, as the
 * owner) may then read the certificate subject of a runtime connection in
 * `pg_stat_get_activity()`, which PostgreSQL shows only to members of the backend's role.
 * No TEMPORARY: a register the runtime role could create itself would vouch for anything.
 */
export function nodeLockdownSql(database: string, owner: string, runtime: string): string {
  const r = quoteIdent(runtime);
  const db = quoteIdent(database);
  return `DO $lockdown$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY (${quoteLiteral(`{${CALLER_SQL_FUNCTIONS.join(',')}}`)}::text[])
  LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, %I', f, ${quoteLiteral(runtime)});
  END LOOP;
END
$lockdown$;
REVOKE TEMPORARY ON DATABASE ${db} FROM PUBLIC;
REVOKE TEMPORARY ON DATABASE ${db} FROM ${r};
GRANT TEMPORARY ON DATABASE ${db} TO ${quoteIdent(owner)};
GRANT ${r} TO ${quoteIdent(owner)}`;
}

/** A node of the cluster as `setup()` found it. */
export interface CitusNode {
  readonly name: string;
  readonly port: number;
  readonly coordinator: boolean;
}

/**
 * Prepares a Citus coordinator database for `dialect: 'citus'`, idempotently, after the
 * control-plane migrations (run by `setup()`): checks that Citus is there with at least one
 * worker, installs the cluster context functions (Citus propagates them to every node), the
 * empty Citus local table whose read assigns the distributed transaction id, and the node-local
 * copy of the context key on the coordinator and on every worker. Run it again after adding
 * a node or rotating the context key: every node is brought to the current key.
 *
 * @example
 * ```ts
 * await setupCitus(adminClient, { owner, runtime, ...hmacPads(keys.key('context-hmac')) });
 * ```
 */
export async function setupCitus(client: ClientBase, options: CitusSetupOptions): Promise<CitusNode[]> {
  const { rows: ext } = await client.query<{ version: string }>(
    "SELECT extversion AS version FROM pg_extension WHERE extname = 'citus'",
  );
  if (!ext[0]) {
    throw new TenantryError(
      'CONFIG_INVALID',
      "dialect 'citus' needs the citus extension in this database (CREATE EXTENSION citus on the coordinator and every worker); see docs/citus.md",
    );
  }
  const { rows: nodes } = await client.query<{ name: string; port: number; coordinator: boolean }>(
    `SELECT nodename AS name, nodeport AS port, groupid = 0 AS coordinator FROM pg_dist_node
      WHERE noderole = 'primary' AND isactive ORDER BY nodeid`,
  );
  if (!nodes.some((n) => n.coordinator) || !nodes.some((n) => !n.coordinator)) {
    throw new TenantryError(
      'CONFIG_INVALID',
      "dialect 'citus' needs a coordinator with at least one worker: citus_set_coordinator_host(…) and citus_add_node(…) on this database",
    );
  }
  const owner = quoteIdent(options.owner);
  const keySql = nodeKeySql(options.owner, options.ipad.toString('hex'), options.opad.toString('hex'), options.peer);
  const { rows: here } = await client.query<{ db: string }>('SELECT current_database() AS db');
  // Same database name on every node (Citus connects to its own database's name).
  const lockdownSql = nodeLockdownSql(here[0]?.db as string, options.owner, options.runtime);
  await client.query('BEGIN');
  try {
    // The key table is node-local: never propagated, created on each node by itself.
    await client.query('SET LOCAL citus.enable_ddl_propagation TO off');
    await client.query(keySql);
    await client.query(lockdownSql);
    await client.query('SET LOCAL citus.enable_ddl_propagation TO on');
    await client.query(`SET LOCAL ROLE ${owner}`);
    const { rowCount } = await client.query('SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass($1)', [
      CLUSTER_CLOCK_TABLE,
    ]);
    if (!rowCount) {
      await client.query(`CREATE TABLE IF NOT EXISTS ${CLUSTER_CLOCK_TABLE} (id int PRIMARY KEY)`);
      await client.query(`SELECT citus_add_local_table_to_metadata(${quoteLiteral(CLUSTER_CLOCK_TABLE)})`);
    }
    await client.query(clusterContextFunctionsSql(options.runtime));
    // Before this version the clock was a reference table; the functions above no longer read it.
    await client.query(`DROP TABLE IF EXISTS ${OLD_CLUSTER_CLOCK_TABLE}`);
    await client.query('RESET ROLE');
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
  // Each worker gets its own copy (run_command_on_workers: one transaction per worker), in
  // one statement: Citus reads the first result of the text it sends and closes the
  // connection, which can abort the statements after the first one of a longer text.
  const { rows } = await client.query<{ node: string; port: number; success: boolean; result: string }>(
    'SELECT nodename AS node, nodeport AS port, success, result FROM run_command_on_workers($1)',
    [
      `DO $node$ BEGIN
  PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
  EXECUTE $cmd$${keySql};
${lockdownSql}$cmd$;
END $node$`,
    ],
  );
  const failed = rows.filter((r) => !r.success);
  if (failed.length > 0) {
    throw new TenantryError(
      'CONFIG_INVALID',
      `the node-local context key and grants could not be written on ${failed.map((r) => `${r.node}:${r.port} (${r.result})`).join(', ')}`,
    );
  }
  await client.query(`GRANT USAGE ON SCHEMA ${quoteIdent(CONTEXT_SCHEMA)} TO ${quoteIdent(options.runtime)}`);
  // A REVOKE that a non-superuser may not make is only a warning: check what it left, everywhere.
  const check = `SELECT pg_catalog.string_agg(p.oid::regprocedure::text, ', ') FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY (${quoteLiteral(`{${CALLER_SQL_FUNCTIONS.join(',')}}`)}::text[])
       AND pg_catalog.has_function_privilege(${quoteLiteral(options.runtime)}, p.oid, 'EXECUTE')`;
  const { rows: left } = await client.query<{ node: string; result: string | null }>(
    `SELECT 'coordinator' AS node, (${check}) AS result
     UNION ALL SELECT nodename || ':' || nodeport, nullif(result, '') FROM run_command_on_workers($1)`,
    [check],
  );
  const open = left.filter((r) => r.result !== null);
  if (open.length > 0) {
    throw new TenantryError(
      'CONFIG_INVALID',
      `the runtime role can still run ${open.map((r) => `${r.result} (${r.node})`).join('; ')}: run tenantry setup as a superuser, which revokes them (docs/citus.md)`,
    );
  }
  return nodes;
}
