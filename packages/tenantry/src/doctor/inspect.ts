import type { ClientBase, Pool } from 'pg';
import { qualified } from '../sql.ts';
import { parseNodeTree, type TreeValue } from './node-tree.ts';
import { type ExpressionCatalog, type FunctionInfo, referencedOids } from './policy-expression.ts';

/** The part of `pg` the doctor needs: a pool or a client, used for catalog queries only. */
export type Queryable = Pick<Pool | ClientBase, 'query'>;

/** A tenant table, as the catalog describes it. */
export interface TableInfo {
  readonly oid: number;
  /** `schema.table`, unquoted: what a finding's `table` holds. */
  readonly label: string;
  /** `"schema"."table"`, quoted once, for fix SQL. */
  readonly sql: string;
  readonly schema: string;
  readonly kind: 'r' | 'p';
  readonly rls: boolean;
  readonly forced: boolean;
  /** Attribute number of the tenant column; null when the table has none. */
  readonly tenantAttnum: number | null;
  readonly tenantNotNull: boolean;
  /** The runtime role holds INSERT on the table (false when the role does not exist). */
  readonly runtimeMayInsert: boolean;
}

/** `polcmd`: r = SELECT, a = INSERT, w = UPDATE, d = DELETE, * = ALL. */
export type PolicyCommand = 'r' | 'a' | 'w' | 'd' | '*';

export interface PolicyInfo {
  readonly tableOid: number;
  readonly name: string;
  readonly command: PolicyCommand;
  readonly permissive: boolean;
  /** Applies to PUBLIC or to a role the runtime role is a member of (true when that role is missing). */
  readonly applies: boolean;
  readonly using: TreeValue | null;
  readonly check: TreeValue | null;
  readonly usingText: string | null;
  readonly checkText: string | null;
}

export interface ConstraintInfo {
  readonly tableOid: number;
  readonly name: string;
  /** p = primary key, u = unique, x = exclusion, f = foreign key. */
  readonly type: 'p' | 'u' | 'x' | 'f';
  readonly keys: readonly number[];
  readonly columns: readonly string[];
  readonly refOid: number | null;
  readonly refKeys: readonly number[];
  /** Referenced column names, in key order (foreign keys only). */
  readonly refColumns: readonly string[];
  /** `pg_get_constraintdef()`, e.g. `FOREIGN KEY (item_id) REFERENCES items(id)`. */
  readonly definition: string;
}

export interface IndexInfo {
  readonly tableOid: number;
  readonly name: string;
  /** `"schema"."index"`, quoted once. */
  readonly sql: string;
  readonly method: string;
  readonly unique: boolean;
  readonly valid: boolean;
  readonly partial: boolean;
  /** Key column attribute numbers (0 = expression); INCLUDE columns left out. */
  readonly keys: readonly number[];
  /** The primary key, unique or exclusion constraint this index backs, if any. */
  readonly constraint: string | null;
  /**
   * Indexes a tsvector (a column or a `to_tsvector(…)` expression) while `@@`
   * (ts_match_vq) is not LEAKPROOF on this server, so RLS keeps it from index conditions.
   */
  readonly fullTextUnderRls: boolean;
  /** `pg_get_indexdef()`. */
  readonly definition: string;
}

/** A partition of a partitioned tenant table that the runtime role may query directly, without RLS. */
export interface ExposedPartition {
  readonly rootOid: number;
  readonly label: string;
  readonly sql: string;
}

/** Everything the table and policy checks read, fetched in a handful of catalog queries. */
export interface Snapshot {
  readonly tables: readonly TableInfo[];
  readonly policies: readonly PolicyInfo[];
  readonly constraints: readonly ConstraintInfo[];
  readonly indexes: readonly IndexInfo[];
  readonly exposedPartitions: readonly ExposedPartition[];
  readonly expressions: ExpressionCatalog;
}

/**
 * Reads the tenant tables of `schemas` and what hangs off them, from the catalog only
 * (no table is scanned). `runtimeOid` is null when the runtime role does not exist.
 */
export async function inspectCatalog(
  client: Queryable,
  options: { schemas: readonly string[]; tenantColumn: string; runtimeOid: number | null },
): Promise<Snapshot> {
  const { rows: tableRows } = await client.query<{
    oid: number;
    schema: string;
    name: string;
    kind: 'r' | 'p';
    rls: boolean;
    forced: boolean;
    tenant_attnum: number | null;
    tenant_not_null: boolean;
    runtime_may_insert: boolean;
  }>(
    // A table is global when its comment starts with `tenantry:global` (see runDoctor).
    `SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
            c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
            a.attnum AS tenant_attnum, coalesce(a.attnotnull, false) AS tenant_not_null,
            CASE WHEN $3::oid IS NULL THEN false
                 ELSE has_table_privilege($3::oid, c.oid, 'INSERT') END AS runtime_may_insert
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
      WHERE n.nspname = ANY ($1::text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND NOT starts_with(coalesce(obj_description(c.oid, 'pg_class'), ''), 'tenantry:global')
      ORDER BY n.nspname, c.relname`,
    [options.schemas, options.tenantColumn, options.runtimeOid],
  );
  const tables: TableInfo[] = tableRows.map((r) => ({
    oid: r.oid,
    label: `${r.schema}.${r.name}`,
    sql: qualified(r.schema, r.name),
    schema: r.schema,
    kind: r.kind,
    rls: r.rls,
    forced: r.forced,
    tenantAttnum: r.tenant_attnum,
    tenantNotNull: r.tenant_not_null,
    runtimeMayInsert: r.runtime_may_insert,
  }));
  const oids = tables.map((t) => t.oid);
  if (oids.length === 0) {
    const expressions = { functions: new Map(), operators: new Map() };
    return { tables, policies: [], constraints: [], indexes: [], exposedPartitions: [], expressions };
  }

  const [policyRows, constraintRows, indexRows, partitionRows] = await Promise.all([
    client.query<{
      table_oid: number;
      name: string;
      command: PolicyCommand;
      permissive: boolean;
      applies: boolean;
      using_tree: string | null;
      check_tree: string | null;
      using_text: string | null;
      check_text: string | null;
    }>(
      `SELECT p.polrelid AS table_oid, p.polname AS name, p.polcmd AS command, p.polpermissive AS permissive,
              ($2::oid IS NULL OR 0 = ANY (p.polroles)
               OR EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE r <> 0 AND pg_has_role($2::oid, r, 'MEMBER'))) AS applies,
              p.polqual::text AS using_tree, p.polwithcheck::text AS check_tree,
              pg_get_expr(p.polqual, p.polrelid) AS using_text, pg_get_expr(p.polwithcheck, p.polrelid) AS check_text
         FROM pg_policy p
        WHERE p.polrelid = ANY ($1::oid[])
        ORDER BY p.polrelid, p.polname`,
      [oids, options.runtimeOid],
    ),
    client.query<{
      table_oid: number;
      name: string;
      type: 'p' | 'u' | 'x' | 'f';
      keys: number[];
      columns: string[];
      ref_oid: number | null;
      ref_keys: number[];
      ref_columns: string[];
      definition: string;
    }>(
      // conparentid <> 0 are the per-partition copies PostgreSQL makes of a parent's keys.
      `SELECT con.conrelid AS table_oid, con.conname AS name, con.contype AS type, con.conkey AS keys,
              ARRAY(SELECT a.attname::text
                      FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                     ORDER BY k.i) AS columns,
              nullif(con.confrelid, 0) AS ref_oid, coalesce(con.confkey, '{}') AS ref_keys,
              ARRAY(SELECT a.attname::text
                      FROM unnest(con.confkey) WITH ORDINALITY k(attnum, i)
                      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                     ORDER BY k.i) AS ref_columns,
              pg_get_constraintdef(con.oid) AS definition
         FROM pg_constraint con
        WHERE con.conrelid = ANY ($1::oid[]) AND con.contype IN ('p', 'u', 'x', 'f') AND con.conparentid = 0
        ORDER BY con.conrelid, con.conname`,
      [oids],
    ),
    client.query<{
      table_oid: number;
      schema: string;
      name: string;
      method: string;
      unique: boolean;
      valid: boolean;
      partial: boolean;
      keys: number[];
      constraint_name: string | null;
      full_text: boolean;
      definition: string;
    }>(
      `SELECT i.indrelid AS table_oid, n.nspname AS schema, ic.relname AS name, am.amname AS method,
              i.indisunique AS unique, i.indisvalid AS valid, i.indpred IS NOT NULL AS partial,
              ARRAY(SELECT k FROM unnest(i.indkey::int2[]) WITH ORDINALITY u(k, n)
                     WHERE n <= i.indnkeyatts ORDER BY n) AS keys,
              (SELECT c.conname FROM pg_constraint c
                WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                  AND c.contype IN ('p', 'u', 'x')) AS constraint_name,
              EXISTS (SELECT 1 FROM unnest(i.indclass::oid[]) oc JOIN pg_opclass o ON o.oid = oc
                       WHERE o.opcintype = 'tsvector'::regtype)
                AND NOT (SELECT proleakproof FROM pg_proc
                          WHERE oid = 'pg_catalog.ts_match_vq(tsvector, tsquery)'::regprocedure) AS full_text,
              pg_get_indexdef(i.indexrelid) AS definition
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_namespace n ON n.oid = ic.relnamespace
         JOIN pg_am am ON am.oid = ic.relam
        WHERE i.indrelid = ANY ($1::oid[])
        ORDER BY i.indrelid, ic.relname`,
      [oids],
    ),
    options.runtimeOid === null
      ? Promise.resolve({ rows: [] as { root_oid: number; schema: string; name: string }[] })
      : client.query<{ root_oid: number; schema: string; name: string }>(
          // Privileges are not inherited by partitions, and a partition queried by name gets
          // its own RLS settings, not its parent's: a grant there is a way around the policy.
          `SELECT root AS root_oid, n.nspname AS schema, c.relname AS name
             FROM unnest($1::oid[]) root
            CROSS JOIN LATERAL pg_partition_tree(root) t
             JOIN pg_class c ON c.oid = t.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE t.relid <> root AND NOT c.relrowsecurity
              AND has_table_privilege($2::oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE')
            ORDER BY n.nspname, c.relname`,
          [tables.filter((t) => t.kind === 'p').map((t) => t.oid), options.runtimeOid],
        ),
  ]);

  const policies: PolicyInfo[] = policyRows.rows.map((r) => ({
    tableOid: r.table_oid,
    name: r.name,
    command: r.command,
    permissive: r.permissive,
    applies: r.applies,
    using: r.using_tree === null ? null : parseNodeTree(r.using_tree),
    check: r.check_tree === null ? null : parseNodeTree(r.check_tree),
    usingText: r.using_text,
    checkText: r.check_text,
  }));
  const functionOids = new Set<string>();
  const operatorOids = new Set<string>();
  for (const p of policies) {
    for (const tree of [p.using, p.check]) {
      const found = referencedOids(tree);
      for (const f of found.functions) functionOids.add(f);
      for (const o of found.operators) operatorOids.add(o);
    }
  }
  const [functionRows, operatorRows] = await Promise.all([
    client.query<{ oid: string; name: string; volatility: FunctionInfo['volatility']; builtin: boolean }>(
      `SELECT p.oid::text AS oid, n.nspname || '.' || p.proname AS name, p.provolatile AS volatility,
              n.nspname = 'pg_catalog' AS builtin
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.oid = ANY ($1::oid[])`,
      [[...functionOids]],
    ),
    client.query<{ oid: string; name: string }>(
      'SELECT oid::text AS oid, oprname AS name FROM pg_operator WHERE oid = ANY ($1::oid[])',
      [[...operatorOids]],
    ),
  ]);

  return {
    tables,
    policies,
    constraints: constraintRows.rows.map((r) => ({
      tableOid: r.table_oid,
      name: r.name,
      type: r.type,
      keys: r.keys,
      columns: r.columns,
      refOid: r.ref_oid,
      refKeys: r.ref_keys,
      refColumns: r.ref_columns,
      definition: r.definition,
    })),
    indexes: indexRows.rows.map((r) => ({
      tableOid: r.table_oid,
      name: r.name,
      sql: qualified(r.schema, r.name),
      method: r.method,
      unique: r.unique,
      valid: r.valid,
      partial: r.partial,
      keys: r.keys,
      constraint: r.constraint_name,
      fullTextUnderRls: r.full_text,
      definition: r.definition,
    })),
    exposedPartitions: partitionRows.rows.map((r) => ({
      rootOid: r.root_oid,
      label: `${r.schema}.${r.name}`,
      sql: qualified(r.schema, r.name),
    })),
    expressions: {
      functions: new Map(
        functionRows.rows.map((r) => [r.oid, { name: r.name, volatility: r.volatility, builtin: r.builtin }]),
      ),
      operators: new Map(operatorRows.rows.map((r) => [r.oid, r.name])),
    },
  };
}
