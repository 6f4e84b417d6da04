import type { ClientBase } from 'pg';
import type { ContextDialect } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { MigrationContext, TenantMigration } from '../schema/migration.ts';
import { tenantTableSql } from '../schema/tenant-table.ts';
import { quoteIdent } from '../sql.ts';

/**
 * Which chain a migration belongs to: Tenantry's own control plane, the slice of it a
 * satellite database holds, or the application's tenant tables.
 */
export type MigrationChain = 'control' | 'satellite' | 'tenant';

/** What one run did to one target. */
export interface MigrationReport {
  readonly chain: MigrationChain;
  readonly target: string;
  readonly applied: readonly string[];
}

/** Where and what {@link applyMigrations} applies. */
export interface MigrationTarget {
  readonly chain: MigrationChain;
  /** Ledger key of the target: `shared`, or a schema or database target's id. */
  readonly target: string;
  /** Schema the target's tables live in (`search_path` is set to it). */
  readonly schema: string;
  readonly ownerRole: string;
  readonly runtimeRole: string;
  readonly dialect: ContextDialect;
  readonly migrations: readonly TenantMigration[];
  /**
   * Which copy of the tenant tables this target is, for the policies `tenantTable()`
   * creates: the schema of a schema-tier target, `''` for the shared tables and tenant
   * databases. Omitted (the control plane's chains), policies accept any verified tenant.
   */
  readonly place?: string;
}

/**
 * Applies the pending migrations of one chain to one target, all in one transaction as
 * the owner role, under a per-target advisory lock: concurrent runs serialize, a failure
 * rolls the whole target back, and a killed run leaves nothing half-applied. The ledger
 * row is inserted before the migration runs, so two runners that slipped past the lock
 * would collide on its primary key instead of applying twice.
 */
export async function applyMigrations(client: ClientBase, options: MigrationTarget): Promise<MigrationReport> {
  await client.query('BEGIN');
  try {
    const report = await applyPendingMigrations(client, options);
    await client.query('COMMIT');
    return report;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/**
 * The body of {@link applyMigrations}, inside a transaction the caller opened (so that
 * provisioning can create a schema, migrate it and record it in one commit). Leaves
 * `ROLE` and `search_path` changed until the transaction ends.
 */
export async function applyPendingMigrations(client: ClientBase, options: MigrationTarget): Promise<MigrationReport> {
  const { chain, target, schema, ownerRole, runtimeRole, dialect, migrations, place } = options;
  await client.query(`SET LOCAL ROLE ${quoteIdent(ownerRole)}`);
  await client.query(`SET LOCAL search_path = ${quoteIdent(schema)}, pg_catalog`);
  await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tenantry:migrate:${chain}:${target}`]);
  const { rows } = await client.query<{ id: string }>(
    'SELECT id FROM tenantry.migrations WHERE chain = $1 AND target = $2',
    [chain, target],
  );
  const done = new Set(rows.map((r) => r.id));
  const known = new Set(migrations.map((m) => m.id));
  const removed = [...done].filter((id) => !known.has(id));
  if (removed.length > 0) {
    throw new TenantryError('MIGRATION_CHANGED', `applied but no longer defined: ${removed.join(', ')}`);
  }
  const context: MigrationContext = {
    schema,
    query: async (text, values) => {
      const result = await client.query(text, values ? [...values] : undefined);
      return { rows: Array.isArray(result) ? [] : result.rows };
    },
    tenantTable: async (definition) => {
      const statements = tenantTableSql(definition, {
        runtimeRole,
        dialect,
        ...(place !== undefined ? { place } : {}),
      });
      for (const statement of statements) await client.query(statement);
    },
  };
  const applied: string[] = [];
  for (const migration of migrations) {
    if (done.has(migration.id)) continue;
    await client.query('INSERT INTO tenantry.migrations (chain, target, id) VALUES ($1, $2, $3)', [
      chain,
      target,
      migration.id,
    ]);
    try {
      await migration.up(context);
    } catch (cause) {
      throw new TenantryError('MIGRATION_FAILED', `${chain} migration ${migration.id} on ${target}`, { cause });
    }
    applied.push(migration.id);
  }
  return Object.freeze({ chain, target, applied: Object.freeze(applied) });
}
