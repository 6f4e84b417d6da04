import type { ClientBase } from 'pg';
import {
  CLUSTER_CLOCK_TABLE,
  clusterContextFunctionsSql,
  nodeKeySql,
  OLD_CLUSTER_CLOCK_TABLE,
} from '../context/cluster-context-functions.ts';
import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';

/** What {@link setupCitus} needs: the roles and the context key's HMAC pads. */
export interface CitusSetupOptions {
  readonly owner: string;
  readonly runtime: string;
  readonly ipad: Buffer;
  readonly opad: Buffer;
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
  const keySql = nodeKeySql(options.owner, options.ipad.toString('hex'), options.opad.toString('hex'));
  await client.query('BEGIN');
  try {
    // The key table is node-local: never propagated, created on each node by itself.
    await client.query('SET LOCAL citus.enable_ddl_propagation TO off');
    await client.query(keySql);
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
  // Each worker gets its own copy (run_command_on_workers: one transaction per worker).
  const { rows } = await client.query<{ node: string; port: number; success: boolean; result: string }>(
    'SELECT nodename AS node, nodeport AS port, success, result FROM run_command_on_workers($1)',
    [`SET citus.enable_ddl_propagation TO off; ${keySql}`],
  );
  const failed = rows.filter((r) => !r.success);
  if (failed.length > 0) {
    throw new TenantryError(
      'CONFIG_INVALID',
      `the node-local context key could not be written on ${failed.map((r) => `${r.node}:${r.port} (${r.result})`).join(', ')}`,
    );
  }
  await client.query(`GRANT USAGE ON SCHEMA ${quoteIdent(CONTEXT_SCHEMA)} TO ${quoteIdent(options.runtime)}`);
  return nodes;
}
