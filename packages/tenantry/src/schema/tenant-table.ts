import { type ContextDialect, POLICY_NAME, postgresDialect } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { qualified, quoteIdent } from '../sql.ts';
import { type PersonalData, personalDataSql } from './personal-data.ts';

/** An index on a tenant table; `tenant_id` is put in front of `columns` for you. */
export interface TenantIndex {
  /** Column names (`created_at DESC` allowed) or expressions (`lower(email)`). */
  readonly columns: readonly string[];
  readonly name?: string;
  /** Access method; `gin`/`gist` pull in `btree_gin`/`btree_gist` so `tenant_id` can lead. */
  readonly using?: 'btree' | 'gin' | 'gist' | 'brin';
  /** Predicate of a partial index, as SQL (e.g. `is_active`). */
  readonly where?: string;
  readonly unique?: boolean;
  /** Columns carried in the index for index-only scans. */
  readonly include?: readonly string[];
}

/** A foreign key; made composite `(tenant_id, …)` unless it points at a global table. */
export interface TenantForeignKey {
  readonly columns: readonly string[];
  readonly references: {
    readonly table: string;
    readonly columns: readonly string[];
    readonly schema?: string;
    /** The referenced table is global (no `tenant_id`): keep the key as written. */
    readonly global?: boolean;
  };
  readonly onDelete?: 'cascade' | 'restrict' | 'set null' | 'no action';
  readonly name?: string;
}

/** Declaration of a tenant table. `tenant_id` is added; don't list it. */
export interface TenantTableDefinition {
  readonly name: string;
  /** Schema; default: the migration target's schema (unqualified names use `search_path`). */
  readonly schema?: string;
  /** Column name → SQL type and column constraints, e.g. `'text NOT NULL'`. */
  readonly columns: Readonly<Record<string, string>>;
  /** Primary key columns, without `tenant_id`. */
  readonly primaryKey: readonly string[];
  /** Unique constraints (column lists, without `tenant_id`). Partial ones go in `indexes` with `unique: true`. */
  readonly unique?: readonly (readonly string[])[];
  readonly foreignKeys?: readonly TenantForeignKey[];
  readonly indexes?: readonly TenantIndex[];
  /** The columns of one person's data, reached by per-user erasure (see {@link PersonalData}). */
  readonly personal?: PersonalData;
}

/** Options of {@link tenantTableSql}. */
export interface TenantTableOptions {
  /** Role granted SELECT/INSERT/UPDATE/DELETE (the runtime role). */
  readonly runtimeRole: string;
  readonly dialect?: ContextDialect;
  readonly tenantColumn?: string;
  /**
   * The copy of the tables this one belongs to (see `ContextDialect.policyPredicate`): the
   * schema of a schema-tier copy, `''` for shared tables and tenant databases. Set by the
   * migration runner; omitted, the policy accepts any verified tenant.
   */
  readonly place?: string;
}

const PLAIN_COLUMN = /^([a-z_][a-z0-9_$]*)((?:\s+(?:asc|desc))?(?:\s+nulls\s+(?:first|last))?)$/i;
const NAME = /^[a-z_][a-z0-9_$]{0,62}$/i;

function name(value: string, what: string): string {
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${what} ${JSON.stringify(value)} is not a plain identifier`);
  }
  return value;
}

/** An index element: a plain column (checked with `column`, then quoted) or an expression (kept as SQL). */
/**
 * PostgreSQL silently truncates names to 63 bytes, so two long generated names could
 * collide; refuse them instead and ask for a shorter name.
 */
function objectName(value: string): string {
  if (Buffer.byteLength(value) > 63) {
    throw new TenantryError(
      'SCHEMA_DEFINITION_INVALID',
      `the name ${value} is longer than PostgreSQL's 63 bytes: give the constraint or index an explicit shorter name (or shorten the table name)`,
    );
  }
  return value;
}

function indexElement(element: string, column: (name: string) => void): string {
  const m = PLAIN_COLUMN.exec(element.trim());
  if (!m) return `(${element})`;
  column(m[1] as string);
  return `${quoteIdent(m[1] as string)}${(m[2] as string).toUpperCase()}`;
}

function list(columns: readonly string[], what: string): string {
  return columns.map((c) => quoteIdent(name(c, what))).join(', ');
}

/**
 * The DDL for a tenant table, as separate statements: `tenant_id uuid NOT NULL` defaulting
 * to the verified context and leading the primary key, every unique constraint, foreign
 * key and index; composite foreign keys (a row can never point at another tenant's row);
 * row-level security ENABLEd and FORCEd with one policy for USING and WITH CHECK; grants
 * for the runtime role. Nothing is executed: check the SQL, then run it.
 *
 * @example
 * ```ts
 * tenantTableSql({
 *   name: 'items',
 *   columns: {
 *     id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
 *     title: 'text NOT NULL',
 *     search: "tsvector GENERATED ALWAYS AS (to_tsvector('english', title)) STORED",
 *   },
 *   primaryKey: ['id'],
 *   indexes: [{ columns: ['search'], using: 'gin' }],
 * }, { runtimeRole: 'tenantry_runtime' });
 * ```
 */
export function tenantTableSql(def: TenantTableDefinition, options: TenantTableOptions): string[] {
  const dialect = options.dialect ?? postgresDialect;
  const tc = options.tenantColumn ?? 'tenant_id';
  const table = name(def.name, 'table name');
  const target = def.schema ? qualified(name(def.schema, 'schema'), table) : quoteIdent(table);
  const columnNames = Object.keys(def.columns ?? {});
  if (columnNames.length === 0) throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${table} has no columns`);
  if (columnNames.includes(tc)) {
    throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${table}: don't declare ${tc}, it is added for you`);
  }
  if (!def.primaryKey?.length) throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${table} needs a primary key`);
  const known = new Set(columnNames);
  const check = (cols: readonly string[], what: string) => {
    for (const c of cols) {
      if (c === tc) {
        throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${table}: ${what} lists ${tc}; it is put first for you`);
      }
      if (!known.has(c))
        throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${table}: ${what} names unknown column ${c}`);
    }
  };
  const t = quoteIdent(tc);
  const lines = [
    `${t} uuid NOT NULL DEFAULT ${dialect.currentTenantExpression}`,
    ...columnNames.map((c) => `${quoteIdent(name(c, 'column'))} ${def.columns[c]}`),
  ];
  check(def.primaryKey, 'primary key');
  lines.push(
    `CONSTRAINT ${quoteIdent(objectName(`${table}_pkey`))} PRIMARY KEY (${t}, ${list(def.primaryKey, 'column')})`,
  );
  for (const cols of def.unique ?? []) {
    check(cols, 'unique constraint');
    lines.push(
      `CONSTRAINT ${quoteIdent(objectName(`${table}_${cols.join('_')}_key`))} UNIQUE (${t}, ${list(cols, 'column')})`,
    );
  }
  // On a cluster, a foreign key between distributed tables can only be added once the
  // table is distributed: those become ALTER TABLE statements after the distribution.
  const distribute = dialect.distributeTableSql?.bind(dialect);
  const laterKeys: string[] = [];
  for (const fk of def.foreignKeys ?? []) {
    check(fk.columns, 'foreign key');
    if (fk.columns.length !== fk.references.columns.length) {
      throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${table}: foreign key column counts differ`);
    }
    const ref = fk.references.schema
      ? qualified(name(fk.references.schema, 'schema'), name(fk.references.table, 'table'))
      : quoteIdent(name(fk.references.table, 'table'));
    const own = fk.references.global ? list(fk.columns, 'column') : `${t}, ${list(fk.columns, 'column')}`;
    const theirs = fk.references.global
      ? list(fk.references.columns, 'column')
      : `${t}, ${list(fk.references.columns, 'column')}`;
    // SET NULL must not null tenant_id (NOT NULL): name the columns it applies to.
    const onDelete =
      fk.onDelete === 'set null'
        ? ` ON DELETE SET NULL (${list(fk.columns, 'column')})`
        : fk.onDelete
          ? ` ON DELETE ${fk.onDelete.toUpperCase()}`
          : '';
    const fkName = objectName(fk.name ?? `${table}_${fk.columns.join('_')}_fkey`);
    const constraint = `CONSTRAINT ${quoteIdent(fkName)} FOREIGN KEY (${own}) REFERENCES ${ref} (${theirs})${onDelete}`;
    if (distribute) laterKeys.push(`ALTER TABLE ${target} ADD ${constraint}`);
    else lines.push(constraint);
  }
  const statements: string[] = [];
  const extensions = new Set<string>();
  for (const [i, index] of (def.indexes ?? []).entries()) {
    if (!index.columns?.length)
      throw new TenantryError('SCHEMA_DEFINITION_INVALID', `${table}: index ${i} has no columns`);
    const using = index.using ?? 'btree';
    if (using === 'gin') extensions.add('btree_gin');
    if (using === 'gist') extensions.add('btree_gist');
    const indexName = objectName(index.name ?? `${table}_${i}_${index.unique ? 'uidx' : 'idx'}`);
    // An unknown column would otherwise surface only as MIGRATION_FAILED, midway through a run.
    if (index.include) check(index.include, `index ${indexName} INCLUDE`);
    const elements = index.columns.map((c) => indexElement(c, (col) => check([col], `index ${indexName}`)));
    const include = index.include?.length ? ` INCLUDE (${list(index.include, 'column')})` : '';
    const where = index.where ? ` WHERE ${index.where}` : '';
    statements.push(
      `CREATE ${index.unique ? 'UNIQUE ' : ''}INDEX ${quoteIdent(indexName)} ON ${target} USING ${using} (${t}, ${elements.join(', ')})${include}${where}`,
    );
  }
  const predicate = dialect.policyPredicate(t, options.place);
  return [
    ...[...extensions].map((e) => `CREATE EXTENSION IF NOT EXISTS ${e}`),
    `CREATE TABLE ${target} (\n  ${lines.join(',\n  ')}\n)`,
    ...(distribute ? [distribute(target, tc), ...laterKeys] : []),
    ...statements,
    `ALTER TABLE ${target} ENABLE ROW LEVEL SECURITY`,
    `ALTER TABLE ${target} FORCE ROW LEVEL SECURITY`,
    `CREATE POLICY ${quoteIdent(POLICY_NAME)} ON ${target} USING (${predicate}) WITH CHECK (${predicate})`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ${target} TO ${quoteIdent(options.runtimeRole)}`,
    ...(def.personal ? [personalDataSql(target, def.personal, columnNames, def.primaryKey)] : []),
  ];
}
