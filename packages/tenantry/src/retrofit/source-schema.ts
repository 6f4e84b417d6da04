import type { ConstraintInfo, IndexInfo, Queryable, Snapshot } from '../doctor/inspect.ts';
import { inspectCatalog } from '../doctor/inspect.ts';
import { qualified } from '../sql.ts';

/** A leaf partition of a partitioned table: rows live there, and the backfill walks it. */
export interface SourcePartition {
  readonly label: string;
  readonly sql: string;
  readonly rows: number | null;
  readonly pages: number;
}

/** An ordinary or partitioned table of the schema being retrofitted. */
export interface SourceTable {
  readonly oid: number;
  readonly name: string;
  /** `schema.table`, unquoted. */
  readonly label: string;
  /** `"schema"."table"`, quoted once. */
  readonly sql: string;
  readonly kind: 'r' | 'p';
  readonly owner: string;
  /** Estimated rows (`reltuples`, summed over partitions); null when never analyzed. */
  readonly rows: number | null;
  readonly bytes: number;
  readonly pages: number;
  readonly hasTenantColumn: boolean;
  /** The extension this table belongs to (`pg_depend` deptype `e`), if any. */
  readonly extension: string | null;
  /** Already marked `tenantry:global` (doctor's convention): shared reference data. */
  readonly markedGlobal: boolean;
  readonly partitions: readonly SourcePartition[];
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  /** Sequences behind `serial` or identity columns (`"schema"."seq"`). */
  readonly sequences: readonly { readonly sql: string; readonly column: string; readonly identity: boolean }[];
}

/** What the planner reads from the catalog: doctor's snapshot of keys and indexes, plus sizes and owners. */
export interface SourceSchema {
  readonly schema: string;
  readonly tables: readonly SourceTable[];
  readonly constraints: readonly ConstraintInfo[];
  readonly indexes: readonly IndexInfo[];
  /** Index size in bytes, by `tableOid:indexName`. */
  readonly indexBytes: ReadonlyMap<string, number>;
  /** Roles other than the superusers that own or may write the tables: the old application's. */
  readonly writers: readonly { readonly role: string; readonly bypassrls: boolean }[];
}

/**
 * Reads the tables of `schema` with their keys and indexes (through doctor's
 * {@link inspectCatalog}, so planner and doctor agree on what a key is), plus what only a
 * retrofit needs: row and size estimates, owners, partitions, sequences, extension
 * membership and the roles the running application writes through. Catalog only.
 */
export async function readSourceSchema(
  client: Queryable,
  options: { schema: string; tenantColumn: string; ignoreRoles: readonly string[] },
): Promise<SourceSchema> {
  const { schema, tenantColumn } = options;
  const snapshot: Snapshot = await inspectCatalog(client, { schemas: [schema], tenantColumn, runtimeOid: null });
  const { rows } = await client.query<{
    oid: number;
    name: string;
    kind: 'r' | 'p';
    owner: string;
    rows: number | null;
    bytes: string;
    pages: string;
    has_tenant: boolean;
    extension: string | null;
    marked_global: boolean;
    partitions: { label: string; schema: string; name: string; rows: number | null; pages: number }[];
    columns: { name: string; type: string }[];
    sequences: { schema: string; name: string; column: string; identity: boolean }[];
  }>(
    // reltuples is -1 until the first ANALYZE (PostgreSQL 14+): reported as unknown, not 0.
    `SELECT c.oid, c.relname AS name, c.relkind AS kind, pg_get_userbyid(c.relowner) AS owner,
            CASE WHEN c.relkind = 'p' THEN (SELECT nullif(sum(greatest(p.reltuples, 0)), 0)::float8
                                              FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid
                                             WHERE t.isleaf)
                 WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::float8 END AS rows,
            coalesce((SELECT sum(pg_total_relation_size(t.relid)) FROM pg_partition_tree(c.oid) t),
                     pg_total_relation_size(c.oid))::text AS bytes,
            (pg_relation_size(c.oid) / current_setting('block_size')::int)::text AS pages,
            EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $2
                       AND a.attnum > 0 AND NOT a.attisdropped) AS has_tenant,
            (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') AS extension,
            starts_with(coalesce(obj_description(c.oid, 'pg_class'), ''), 'tenantry:global') AS marked_global,
            coalesce((SELECT json_agg(json_build_object(
                        'schema', pn.nspname, 'name', p.relname,
                        'rows', CASE WHEN p.reltuples < 0 THEN NULL ELSE p.reltuples END,
                        'pages', pg_relation_size(p.oid) / current_setting('block_size')::int) ORDER BY p.relname)
                        FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid
                        JOIN pg_namespace pn ON pn.oid = p.relnamespace
                       WHERE t.isleaf AND t.relid <> c.oid), '[]') AS partitions,
            (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod))
                             ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
            coalesce((SELECT json_agg(json_build_object('schema', sn.nspname, 'name', s.relname,
                                       'column', a.attname, 'identity', d.deptype = 'i') ORDER BY s.relname)
                        FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                        JOIN pg_namespace sn ON sn.oid = s.relnamespace
                        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
                       WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.deptype IN ('a', 'i')), '[]')
              AS sequences
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      ORDER BY c.relname`,
    [schema, tenantColumn],
  );
  const tables: SourceTable[] = rows.map((r) => ({
    oid: r.oid,
    name: r.name,
    label: `${schema}.${r.name}`,
    sql: qualified(schema, r.name),
    kind: r.kind,
    owner: r.owner,
    rows: r.rows === null ? null : Math.round(r.rows),
    bytes: Number(r.bytes ?? 0),
    pages: Number(r.pages),
    hasTenantColumn: r.has_tenant,
    extension: r.extension,
    markedGlobal: r.marked_global,
    partitions: r.partitions.map((p) => ({
      label: `${p.schema}.${p.name}`,
      sql: qualified(p.schema, p.name),
      rows: p.rows === null ? null : Math.round(p.rows),
      pages: p.pages,
    })),
    columns: r.columns ?? [],
    sequences: r.sequences.map((s) => ({ sql: qualified(s.schema, s.name), column: s.column, identity: s.identity })),
  }));
  const oids = tables.map((t) => t.oid);
  const [sizes, writers] = await Promise.all([
    client.query<{ key: string; bytes: string }>(
      `SELECT i.indrelid || ':' || c.relname AS key, pg_relation_size(i.indexrelid)::text AS bytes
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ANY ($1::oid[])`,
      [oids],
    ),
    client.query<{ role: string; bypassrls: boolean }>(
      // The owner, and whoever was granted writes: the roles the running application uses.
      `SELECT DISTINCT r.rolname AS role, r.rolbypassrls AS bypassrls
         FROM pg_class c
        CROSS JOIN LATERAL (SELECT c.relowner AS grantee
                            UNION SELECT a.grantee FROM aclexplode(c.relacl) a
                             WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE')) g
         JOIN pg_roles r ON r.oid = g.grantee
        WHERE c.oid = ANY ($1::oid[]) AND NOT r.rolsuper AND r.rolname <> ALL ($2::text[])
        ORDER BY 1`,
      [oids, options.ignoreRoles],
    ),
  ]);
  return {
    schema,
    tables,
    constraints: snapshot.constraints,
    indexes: snapshot.indexes,
    indexBytes: new Map(sizes.rows.map((r) => [r.key, Number(r.bytes)])),
    writers: writers.rows,
  };
}
