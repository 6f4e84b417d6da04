import { desc, eq } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { type TenantMigration, TenantryError } from 'tenantry';
import * as schema from './schema.ts';

const { items } = schema;

/** The Drizzle instance of the application, typed by its schema (built in `main.ts`). */
export type AppDatabase = NodePgDatabase<typeof schema>;

/**
 * The application's tenant table. Tenantry's migrations create it (with `tenant_id` leading
 * every key, and row-level security) on every tier; `schema.ts` describes it for Drizzle.
 */
export const migrations: TenantMigration[] = [
  {
    id: 'items_001',
    up: (m) =>
      m.tenantTable({
        name: 'items',
        columns: {
          id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
          title: 'text NOT NULL CHECK (length(title) BETWEEN 1 AND 500)',
          description: 'text',
          created_at: 'timestamptz NOT NULL DEFAULT now()',
          updated_at: 'timestamptz NOT NULL DEFAULT now()',
        },
        primaryKey: ['id'],
        indexes: [{ columns: ['created_at DESC'] }],
      }),
  },
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const COLUMNS = {
  id: items.id,
  title: items.title,
  description: items.description,
  createdAt: items.createdAt,
  updatedAt: items.updatedAt,
};
type Row = { id: string; title: string; description: string | null; createdAt: Date; updatedAt: Date };

function toItem(row: Row) {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/**
 * The data access of the application through Drizzle, for the tenant of the current request.
 * `db` is built in `main.ts` on `tenantDrizzleClient(tenantry)`: each statement below runs in
 * a tenant transaction of the request's tenant, so row-level security sees only that
 * tenant's rows on whichever tier it lives, and PostgreSQL fills in `tenant_id` from the
 * verified context. No query names the tenant.
 */
export function itemStore(db: AppDatabase) {
  return {
    async list() {
      const rows = await db.select(COLUMNS).from(items).orderBy(desc(items.createdAt)).limit(100);
      return { items: rows.map(toItem) };
    },
    async get(id: string) {
      if (!UUID.test(id)) throw new TenantryError('NOT_FOUND');
      const [row] = await db.select(COLUMNS).from(items).where(eq(items.id, id));
      if (!row) throw new TenantryError('NOT_FOUND');
      return toItem(row);
    },
    async create(input: unknown) {
      const { title, description = null } = (input ?? {}) as { title?: unknown; description?: unknown };
      if (typeof title !== 'string' || title.length < 1 || title.length > 500) {
        throw new TenantryError('INVALID_INPUT', 'title: a string of 1 to 500 characters');
      }
      if (description !== null && typeof description !== 'string') {
        throw new TenantryError('INVALID_INPUT', 'description: a string or null');
      }
      const [row] = await db.insert(items).values({ title, description }).returning(COLUMNS);
      if (!row) throw new Error('INSERT … RETURNING returned no row');
      return toItem(row);
    },
  };
}
