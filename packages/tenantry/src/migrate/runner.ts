import type { PoolClient } from 'pg';
import type { ContextDialect } from '../dialect/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { quoteIdent } from '../schema/sql.ts';
import { tenantTableSql } from '../schema/tenant-table.ts';
import type { MigrationContext, TenantMigration } from './migration.ts';

/** Which chain a migration belongs to: Tenantry's own control plane, or the application's tenant tables. */
export type MigrationChain = 'control' | 'tenant';

/** What one run did to one target. */
export interface MigrationReport {
  readonly chain: MigrationChain;
  readonly target: string;
  readonly applied: readonly string[];
}

/**
 * Applies the pending migrations of one chain to one target, all in one transaction as
 * the owner role, under a per-target advisory lock: concurrent runs serialize, a failure
 * rolls the whole target back, and a killed run leaves nothing half-applied. The ledger
 * row is inserted before the migration runs, so two runners that slipped past the lock
 * would collide on its primary key instead of applying twice.
 */
export async function applyMigrations(
  client: PoolClient,
  options: {
    chain: MigrationChain;
    target: string;
    schema: string;
    ownerRole: string;
    runtimeRole: string;
    dialect: ContextDialect;
    migrations: readonly TenantMigration[];
  },
): Promise<MigrationReport> {
  const { chain, target, schema, ownerRole, runtimeRole, dialect, migrations } = options;
  await client.query('BEGIN');
  try {
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
        for (const statement of tenantTableSql(definition, { runtimeRole, dialect })) await client.query(statement);
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
    await client.query('COMMIT');
    return Object.freeze({ chain, target, applied: Object.freeze(applied) });
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
