import type { ClientBase, Pool } from 'pg';
import { POLICY_NAME } from '../context/context-dialect.ts';
import { qualified, quoteIdent } from '../sql.ts';

/** A table carrying Tenantry's isolation policy. */
export interface TenantTableRef {
  readonly schema: string;
  readonly table: string;
}

/**
 * The tenant tables of a database (those with Tenantry's isolation policy; of `schemas`
 * only, when given: a database with thousands of tenant schemas has as many copies), ordered so
 * that a table comes before every table it references: deleting in this order never
 * trips a foreign key.
 */
export async function listTenantTables(
  client: Pool | ClientBase,
  schemas?: readonly string[],
): Promise<TenantTableRef[]> {
  const { rows: tables } = await client.query<{ oid: number; schema: string; table: string }>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS table
       FROM pg_policy p
       JOIN pg_class c ON c.oid = p.polrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE p.polname = $1 AND ($2::text[] IS NULL OR n.nspname = ANY($2))
      ORDER BY n.nspname, c.relname`,
    [POLICY_NAME, schemas ? [...schemas] : null],
  );
  const { rows: edges } = await client.query<{ child: number; parent: number }>(
    `SELECT conrelid::int AS child, confrelid::int AS parent FROM pg_constraint
      WHERE contype = 'f' AND conrelid <> confrelid AND conrelid = ANY($1) AND confrelid = ANY($1)`,
    [tables.map((t) => t.oid)],
  );
  // Depth-first topological order: children (referencing tables) first.
  const referencedBy = new Map<number, number[]>();
  for (const e of edges) referencedBy.set(e.parent, [...(referencedBy.get(e.parent) ?? []), e.child]);
  const byOid = new Map(tables.map((t) => [t.oid, t]));
  const ordered: TenantTableRef[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (oid: number) => {
    if (state.has(oid)) return; // done, or a cycle: the cycle's order is left to the database
    state.set(oid, 'visiting');
    for (const child of referencedBy.get(oid) ?? []) visit(child);
    state.set(oid, 'done');
    const t = byOid.get(oid);
    if (t) ordered.push({ schema: t.schema, table: t.table });
  };
  for (const t of tables) visit(t.oid);
  return ordered;
}

/**
 * `DELETE FROM … WHERE tenant_id = $1` for each table in order. Run inside the tenant's
 * maintenance transaction: RLS scopes it, and the explicit predicate would too, should a
 * table ever lose its policy.
 */
export function purgeStatements(tables: readonly TenantTableRef[], column = 'tenant_id'): string[] {
  return tables.map((t) => `DELETE FROM ${qualified(t.schema, t.table)} WHERE ${quoteIdent(column)} = $1`);
}

/**
 * Which tables are tenant tables, as the Kysely tenant filter asks (`schema.table`). The
 * shared schema's copy is the reference: every tenant schema has the same tables.
 */
export class TenantTableSet {
  readonly #pool: Pool;
  readonly #sharedSchema: string;
  #tables = new Set<string>();

  constructor(pool: Pool, sharedSchema: string) {
    this.#pool = pool;
    this.#sharedSchema = sharedSchema;
  }

  /** Reads the list again (after a migration). */
  async refresh(): Promise<void> {
    const tables = await listTenantTables(this.#pool, [this.#sharedSchema]);
    this.#tables = new Set(tables.map((t) => `${t.schema}.${t.table}`));
  }

  /** Whether `schema.table` (the shared schema when `schema` is absent) is a tenant table. */
  has(table: string, schema?: string): boolean {
    return this.#tables.has(`${schema ?? this.#sharedSchema}.${table}`);
  }
}
