import type { TenantTableDefinition } from './tenant-table.ts';

/** What {@link MigrationContext.createIndex} builds. */
export interface MigrationIndex {
  /** Index name (unqualified; it lives in the target's schema). */
  readonly name: string;
  /** Table name (unqualified). */
  readonly table: string;
  /** Key elements as SQL, tenant column first: `['tenant_id', 'created_at DESC']`. */
  readonly columns: readonly string[];
  readonly unique?: boolean;
  /** Access method (default btree). */
  readonly using?: string;
  /** Partial index predicate, as SQL. */
  readonly where?: string;
}

/** What a migration's `up()` receives: a query function on the owner role, inside the run's transaction. */
export interface MigrationContext {
  /** Runs one statement (or several, without parameters). */
  query(text: string, values?: readonly unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  /** Schema the tenant tables of this target live in (`search_path` is set to it first). */
  readonly schema: string;
  /** Creates a tenant table from a declaration (see `tenantTableSql` in `tenantry/schema`). */
  tenantTable(definition: TenantTableDefinition): Promise<void>;
  /**
   * False only while a `transaction: false` migration runs outside a transaction (each
   * statement then commits on its own, and `CREATE INDEX CONCURRENTLY` is possible).
   */
  readonly inTransaction: boolean;
  /**
   * Creates an index idempotently: `CREATE INDEX CONCURRENTLY IF NOT EXISTS` outside a
   * transaction (after dropping an INVALID index of the same name, which a failed or
   * interrupted concurrent build leaves behind), a plain `CREATE INDEX IF NOT EXISTS` inside
   * one (a target being created, which nobody writes to yet).
   */
  createIndex(index: MigrationIndex): Promise<void>;
}

/**
 * One step of the tenant-table chain. Ids are applied in array order and recorded, so
 * never rename or remove an applied one; add a new migration instead.
 *
 * `transaction: false` runs the migration outside the run's transaction, for DDL that
 * refuses to run in one (`CREATE INDEX CONCURRENTLY`, which builds an index without
 * blocking writes on a live table). Its `up()` must be idempotent: its ledger row is
 * written after it succeeds, so a failure (or a kill) leaves it pending and the next run
 * calls it again. Use `m.createIndex()`, which is. Where the target is being created (a
 * new tenant schema or database, inside the provisioning transaction), it runs inside that
 * transaction instead, with `m.inTransaction` true. See docs/migrations.md.
 *
 * @example
 * ```ts
 * const migrations: TenantMigration[] = [{
 *   id: '001_items',
 *   up: (m) => m.tenantTable({ name: 'items', columns: { id: 'uuid NOT NULL DEFAULT gen_random_uuid()' }, primaryKey: ['id'] }),
 * }, {
 *   id: '002_items_title_idx',
 *   transaction: false,
 *   up: (m) => m.createIndex({ name: 'items_title_idx', table: 'items', columns: ['tenant_id', 'title'] }),
 * }];
 * ```
 */
export interface TenantMigration {
  readonly id: string;
  /** `false`: run outside a transaction (see above). Default true. */
  readonly transaction?: boolean;
  up(context: MigrationContext): Promise<unknown>;
}
