import type { Generated } from 'kysely';
import { type TenantMigration, type Tenantry, TenantryError } from 'tenantry';
import type { TenantIdColumn } from 'tenantry/kysely';

/** The application's tables: one tenant table. Tenantry adds `tenant_id`, keys and RLS. */
export interface AppDB {
  items: {
    tenant_id: TenantIdColumn;
    id: Generated<string>;
    title: string;
    description: string | null;
    created_at: Generated<Date>;
    updated_at: Generated<Date>;
  };
}

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
const COLUMNS = ['id', 'title', 'description', 'created_at', 'updated_at'] as const;
type Row = { id: string; title: string; description: string | null; created_at: Date; updated_at: Date };

function toItem(row: Row) {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/**
 * The data access of the application, for the tenant of the current request: every call
 * runs in a tenant transaction (`tenantry.transaction`), so row-level security sees only
 * that tenant's rows on whichever tier it lives, and the tenant filter adds `tenant_id`.
 * This is the one place an ORM call (Prisma, Drizzle) would replace the Kysely queries.
 */
export function itemStore(tenantry: Tenantry<AppDB>) {
  return {
    async list() {
      const rows = await tenantry.transaction((tx) =>
        tx.db.selectFrom('items').select(COLUMNS).orderBy('created_at', 'desc').limit(100).execute(),
      );
      return { items: rows.map(toItem) };
    },
    async get(id: string) {
      if (!UUID.test(id)) throw new TenantryError('NOT_FOUND');
      const row = await tenantry.transaction((tx) =>
        tx.db.selectFrom('items').select(COLUMNS).where('id', '=', id).executeTakeFirst(),
      );
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
      const row = await tenantry.transaction((tx) =>
        tx.db.insertInto('items').values({ title, description }).returning(COLUMNS).executeTakeFirstOrThrow(),
      );
      return toItem(row);
    },
  };
}
