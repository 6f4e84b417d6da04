import { quoteIdent, quoteLiteral } from '../sql.ts';
import { CONTEXT_SCHEMA, type ContextDialect, POLICY_NAME } from './context-dialect.ts';

/**
 * The setting that carries the verified context to every node of a Citus cluster:
 * `<tenant id>.<place>.<mac>`, set with `SET LOCAL` (the only form Citus propagates to the
 * workers, with `citus.propagate_set_commands = 'local'`) by `enter_cluster()`. The MAC binds
 * it to the distributed transaction, so a copy is worthless in any other transaction, on any
 * node. See {@link citusDialect} and docs/citus.md.
 *
 * @example
 * ```ts
 * // Inside a tenant transaction on Citus: the signed value every node checks.
 * await tx.query(`SELECT current_setting('${CLUSTER_CONTEXT_SETTING}')`);
 * ```
 */
export const CLUSTER_CONTEXT_SETTING = 'tenantry.node_ctx';

/**
 * The Citus dialect: the pool tier's tables distributed by `tenant_id` over a Citus cluster,
 * with the same policies' meaning and the same application code as on one PostgreSQL server.
 * What it changes, each for a fact measured on Citus 13 (docs/citus.md):
 *
 * - the context statement calls `enter_cluster()`: `enter()` as on one server, then the
 *   context is placed with `SET LOCAL` (propagated to the workers) and MAC-signed over the
 *   distributed transaction id, which every node of the transaction shares;
 * - policies call `node_tenant_id_in()` directly, not through a sub-select (Citus refuses to
 *   propagate a policy with a sub-select); it checks the MAC with a key kept in a node-local
 *   table (a reference table would need a distributed query on the worker, which fails);
 * - a new tenant table is distributed by `tenant_id`, co-located with the other tenant
 *   tables, its composite foreign keys added once it is distributed.
 *
 * @example
 * ```ts
 * const tenantry = await Tenantry.connect({ databaseUrl: coordinatorUrl, dialect: 'citus', migrations });
 * await tenantry.setup(); // context functions and the node-local key on every node
 * await tenantry.migrate(); // tenant tables distributed and co-located
 * ```
 */
export const citusDialect: ContextDialect = Object.freeze({
  name: 'citus',
  // A scalar sub-select, not a plain call: Citus plans every call of a distributed function
  // whose arguments are parameters anew (to consider delegating it to a worker), so the
  // prepared statement would never reach its generic plan (measured: ~15 µs of planning
  // per transaction).
  enterSql: `SELECT (SELECT ${CONTEXT_SCHEMA}.enter_cluster($1, $2::int8, $3)) AS s`,
  currentTenantExpression: `${CONTEXT_SCHEMA}.node_tenant_id()`,
  policyPredicate(column: string, place?: string): string {
    // No sub-select: Citus refuses it ("unexpected non-SELECT command in SubLink"). The
    // function is STABLE, so an index led by tenant_id still serves the comparison.
    const where = place === undefined ? 'NULL' : quoteLiteral(place);
    return `${column} = ${CONTEXT_SCHEMA}.node_tenant_id_in(${where})`;
  },
  // Citus propagates SET LOCAL and assigns a distributed transaction id only inside a
  // transaction block: a one-statement transaction is sent with BEGIN and COMMIT too.
  transactionBlock: true,
  migrationSettings: [
    // Distributing a table and then creating indexes, policies and foreign keys in the same
    // transaction needs one connection per node (parallel DDL cannot be followed by more).
    "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'",
    // Row triggers run on the shards; the example's usage trigger writes a co-located row.
    'SET LOCAL citus.enable_unsafe_triggers TO on',
  ],
  distributeTableSql(table: string, tenantColumn: string): string {
    // Co-located with the oldest tenant table already distributed (by the policy Tenantry
    // names), so a tenant's rows of every table share a shard even after a tenant was
    // isolated (which changes the shard count, and with it Citus's default co-location).
    return `SELECT create_distributed_table(${quoteLiteral(table)}, ${quoteLiteral(tenantColumn)}, colocate_with => coalesce((
      SELECT d.logicalrelid::regclass::text FROM pg_dist_partition d
        JOIN pg_policy p ON p.polrelid = d.logicalrelid AND p.polname = ${quoteLiteral(POLICY_NAME)}
       WHERE d.partmethod = 'h' AND d.logicalrelid <> ${quoteLiteral(table)}::regclass
       ORDER BY d.logicalrelid LIMIT 1), 'default'))`;
  },
});

/** `dialect` given by name (`'postgres'`, `'citus'`) or as an object; see `TenantryOptions.dialect`. */
export function isCitus(dialect: ContextDialect): boolean {
  return dialect.name === 'citus';
}

/**
 * Makes an existing global table (no `tenant_id`) a reference table, copied to every node of
 * a Citus cluster: for a migration of an application that runs with `dialect: 'citus'`.
 *
 * @example
 * ```ts
 * { id: '003_countries', up: async (m) => { await m.query('CREATE TABLE countries (code text PRIMARY KEY)'); await m.query(referenceTableSql('countries')); } }
 * ```
 */
export function referenceTableSql(table: string, schema?: string): string {
  const name = schema ? `${quoteIdent(schema)}.${quoteIdent(table)}` : quoteIdent(table);
  return `SELECT create_reference_table(${quoteLiteral(name)})`;
}
