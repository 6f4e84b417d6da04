import { type TenantMigration, TenantryError } from 'tenantry';
import type { PrismaClient } from '../prisma/generated/client.ts';

/**
 * The application's tenant table. Tenantry's migrations create it (with `tenant_id` leading
 * every key, and row-level security) on every tier; `prisma/schema.prisma` describes it for
 * Prisma's client. Prisma Migrate never touches it.
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
const COLUMNS = { id: true, title: true, description: true, created_at: true, updated_at: true } as const;
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
 * The data access of the application through Prisma, for the tenant of the current request.
 * `prisma` is the client built in `main.ts` on `createTenantPrismaAdapter(tenantry)` and
 * wrapped by `tenantPrisma`: each query below runs in a tenant transaction of the request's
 * tenant, so row-level security sees only that tenant's rows on whichever tier it lives, and
 * PostgreSQL fills in `tenant_id` from the verified context. No query names the tenant.
 */
export function itemStore(prisma: PrismaClient) {
  return {
    async list() {
      const rows = await prisma.item.findMany({ select: COLUMNS, orderBy: { created_at: 'desc' }, take: 100 });
      return { items: rows.map(toItem) };
    },
    async get(id: string) {
      if (!UUID.test(id)) throw new TenantryError('NOT_FOUND');
      const row = await prisma.item.findUnique({ select: COLUMNS, where: { id } });
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
      return toItem(await prisma.item.create({ select: COLUMNS, data: { title, description } }));
    },
  };
}
