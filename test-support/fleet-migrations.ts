/**
 * The fleet tests' migrations: the example application's (`appMigrations`) plus one more,
 * a column and an index. A module of its own so that the CLI can load it
 * (`tenantry migrate --migrations test-support/fleet-migrations.ts`) in a child process
 * the test kills. The sleep makes each target slow enough for the kill to land mid-run.
 */
import type { TenantMigration } from '../packages/tenantry/src/index.ts';
import { appMigrations } from './fixture.ts';

/** The migration the fleet tests roll out. */
export const noteMigration: TenantMigration = {
  id: '003_items_note',
  up: (m) =>
    m.query('ALTER TABLE items ADD COLUMN note text; CREATE INDEX ON items (tenant_id, note); SELECT pg_sleep(0.05)'),
};

export const migrations: TenantMigration[] = [...appMigrations, noteMigration];
