import type { TenantTableDefinition } from './tenant-table.ts';

/** What a migration's `up()` receives: a query function on the owner role, inside the run's transaction. */
export interface MigrationContext {
  /** Runs one statement (or several, without parameters). */
  query(text: string, values?: readonly unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  /** Schema the tenant tables of this target live in (`search_path` is set to it first). */
  readonly schema: string;
  /** Creates a tenant table from a declaration (see `tenantTableSql` in `tenantry/schema`). */
  tenantTable(definition: TenantTableDefinition): Promise<void>;
}

/**
 * One step of the tenant-table chain. Ids are applied in array order and recorded, so
 * never rename or remove an applied one; add a new migration instead.
 *
 * @example
 * ```ts
 * const migrations: TenantMigration[] = [{
 *   id: '001_items',
 *   up: (m) => m.tenantTable({ name: 'items', columns: { id: 'uuid NOT NULL DEFAULT gen_random_uuid()' }, primaryKey: ['id'] }),
 * }];
 * ```
 */
export interface TenantMigration {
  readonly id: string;
  up(context: MigrationContext): Promise<unknown>;
}
