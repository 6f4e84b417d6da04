import type { Generated } from 'kysely';
import { type TenantMigration, type TenantRecord, Tenantry } from '../packages/tenantry/src/index.ts';
import type { TenantIdColumn } from '../packages/tenantry/src/kysely/index.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

/** The example application's tables (seed 001's Item, plus a child table for composite FKs). */
export interface AppDB {
  items: {
    tenant_id: TenantIdColumn;
    id: Generated<string>;
    title: string;
    description: string | null;
    created_at: Generated<Date>;
  };
  comments: {
    tenant_id: TenantIdColumn;
    id: Generated<string>;
    item_id: string;
    body: string;
  };
}

export const appMigrations: TenantMigration[] = [
  {
    id: '001_items',
    up: (m) =>
      m.tenantTable({
        name: 'items',
        columns: {
          id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
          title: 'text NOT NULL',
          description: 'text',
          created_at: 'timestamptz NOT NULL DEFAULT now()',
          search:
            "tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || coalesce(description, ''))) STORED",
        },
        primaryKey: ['id'],
        indexes: [{ columns: ['created_at DESC'] }, { columns: ['search'], using: 'gin' }],
      }),
  },
  {
    id: '002_comments',
    up: (m) =>
      m.tenantTable({
        name: 'comments',
        columns: { id: 'uuid NOT NULL DEFAULT gen_random_uuid()', item_id: 'uuid NOT NULL', body: 'text NOT NULL' },
        primaryKey: ['id'],
        foreignKeys: [{ columns: ['item_id'], references: { table: 'items', columns: ['id'] }, onDelete: 'cascade' }],
        indexes: [{ columns: ['item_id'] }],
      }),
  },
];

export interface Fixture {
  readonly database: TestDatabase;
  readonly tenantry: Tenantry<AppDB>;
  close(): Promise<void>;
}

/** A set-up and migrated Tenantry on a database of the test file's own. */
export async function createFixture(label: string): Promise<Fixture> {
  const database = await createTestDatabase(label);
  const tenantry = await Tenantry.connect<AppDB>({
    databaseUrl: database.url,
    secret: database.secret,
    roles: database.roles,
    migrations: appMigrations,
    pool: { max: 20 },
  });
  await tenantry.setup();
  await tenantry.migrate();
  return {
    database,
    tenantry,
    async close() {
      await tenantry.close();
      await database.drop();
    },
  };
}

/** Creates tenants `slug-0 … slug-(n-1)`. */
export async function createTenants(tenantry: Tenantry<AppDB>, prefix: string, n: number): Promise<TenantRecord[]> {
  const out: TenantRecord[] = [];
  for (let i = 0; i < n; i++)
    out.push(await tenantry.tenants.create({ slug: `${prefix}-${i}`, name: `${prefix} ${i}` }));
  return out;
}
