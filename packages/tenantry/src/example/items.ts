import type { Generated } from 'kysely';
import { sql } from 'kysely';
import { isCursorTime } from '../cursor-time.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { TenantIdColumn } from '../kysely/index.ts';
import { prepareTenantQuery, type QueryParam } from '../kysely/prepared-query.ts';
import { createTenantKysely } from '../kysely/tenant-kysely.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { qualified } from '../sql.ts';
import type { CompiledStatement, TenantTransaction } from '../transaction/tenant-transaction.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';

/**
 * The reference server's example application: seed 001's `Item`, a tenant table with a
 * full-text search column. It is also what tests and benchmarks exercise.
 */
export interface ItemsDB {
  tenant_usage: { tenant_id: TenantIdColumn; scope: string; bytes: Generated<string> };
  items: {
    tenant_id: TenantIdColumn;
    id: Generated<string>;
    title: string;
    description: string | null;
    created_at: Generated<Date>;
    updated_at: Generated<Date>;
  };
}

/** Tenant-table migrations of the example application. */
export const itemsMigrations: readonly TenantMigration[] = Object.freeze([
  {
    id: 'example_001_items',
    up: (m) =>
      m.tenantTable({
        name: 'items',
        columns: {
          id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
          title: 'text NOT NULL CHECK (length(title) BETWEEN 1 AND 500)',
          description: 'text CHECK (length(description) <= 10000)',
          created_at: 'timestamptz NOT NULL DEFAULT clock_timestamp()',
          updated_at: 'timestamptz NOT NULL DEFAULT clock_timestamp()',
          search:
            "tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || coalesce(description, ''))) STORED",
        },
        primaryKey: ['id'],
        indexes: [{ columns: ['created_at DESC', 'id DESC'] }, { columns: ['search'], using: 'gin' }],
      }),
  },
  {
    // Storage used per tenant, kept by a trigger, so the max_storage_mb quota is one row
    // read, not a scan of the tenant's items. The trigger runs as the caller (the runtime
    // role), inside the tenant's transaction: RLS scopes its writes like any other.
    id: 'example_002_storage_usage',
    up: async (m) => {
      await m.tenantTable({
        name: 'tenant_usage',
        columns: { scope: 'text NOT NULL', bytes: 'bigint NOT NULL DEFAULT 0' },
        primaryKey: ['scope'],
      });
      const usage = qualified(m.schema, 'tenant_usage');
      await m.query(`
CREATE FUNCTION ${qualified(m.schema, 'items_track_usage')}() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  delta bigint := 0;
BEGIN
  -- Logical size (octet_length of the row as text): pg_column_size() would count only the
  -- TOAST pointer of a large value in an AFTER trigger.
  IF TG_OP IN ('INSERT', 'UPDATE') THEN delta := delta + octet_length(NEW::text); END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN delta := delta - octet_length(OLD::text); END IF;
  INSERT INTO ${usage} AS u (tenant_id, scope, bytes)
  VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END, 'items', delta)
  ON CONFLICT (tenant_id, scope) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes;
  RETURN NULL;
END
$fn$`);
      // A statement of its own: Citus sends a CREATE TRIGGER's text to the workers as is,
      // and a text of two statements is refused there (docs/citus.md).
      await m.query(`
CREATE TRIGGER items_track_usage AFTER INSERT OR UPDATE OR DELETE ON ${qualified(m.schema, 'items')}
  FOR EACH ROW EXECUTE FUNCTION ${qualified(m.schema, 'items_track_usage')}()`);
    },
  },
]);

/** Bytes per megabyte, for the `max_storage_mb` quota. */
const MB = 1024 * 1024;

/** Kysely for statements compiled ahead of their one-round-trip transaction (see `getQuery`). */
const queries = createTenantKysely<ItemsDB>((table) => table === 'items' || table === 'tenant_usage');
const itemById = prepareTenantQuery(queries, (db, p: QueryParam<{ id: string }>) =>
  db.selectFrom('items').select(COLUMNS).where('id', '=', p('id')),
);

/** An item as the API shows it. */
export interface Item {
  id: string;
  title: string;
  description: string | null;
  createdAt: string;
  updatedAt: string;
}

type Row = { id: string; title: string; description: string | null; created_at: Date; updated_at: Date };

const toItem = (r: Row): Item => ({
  id: r.id,
  title: r.title,
  description: r.description,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

const COLUMNS = ['id', 'title', 'description', 'created_at', 'updated_at'] as const;

/** Cursor of the item list: the last row's (created_at, id), opaque to clients. */
function decodeCursor(cursor: string): { at: string; id: string } {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { at?: unknown; id?: unknown };
    if (isCursorTime(value.at, 'Z') && typeof value.id === 'string' && UUID.test(value.id)) {
      return { at: value.at, id: value.id };
    }
  } catch {
    // fall through
  }
  throw new TenantryError('INVALID_INPUT', 'cursor is not one this API returned');
}

/**
 * Data access of the example application. Every function takes the tenant transaction:
 * the tenant predicate is added by Tenantry, and RLS guarantees it.
 */
export const items = {
  /**
   * Refuses with `QUOTA_EXCEEDED` when the tenant already uses `maxStorageMb` or more. The
   * usage row is locked, so concurrent writers of one tenant are checked one at a time.
   */
  async assertStorage(tx: TenantTransaction<ItemsDB>, maxStorageMb: number | null): Promise<void> {
    if (maxStorageMb === null) return;
    const row = await tx.db
      .selectFrom('tenant_usage')
      .select('bytes')
      .where('scope', '=', 'items')
      .forUpdate()
      .executeTakeFirst();
    if (row && Number(row.bytes) >= maxStorageMb * MB) {
      throw new TenantryError('QUOTA_EXCEEDED', `storage limit of ${maxStorageMb} MB reached`);
    }
  },

  /** Bytes the tenant's items take (as PostgreSQL stores the rows). */
  async storageBytes(tx: TenantTransaction<ItemsDB>): Promise<number> {
    const row = await tx.db.selectFrom('tenant_usage').select('bytes').where('scope', '=', 'items').executeTakeFirst();
    return row ? Number(row.bytes) : 0;
  },

  async create(tx: TenantTransaction<ItemsDB>, input: { title: string; description?: string | null }): Promise<Item> {
    const row = await tx.db
      .insertInto('items')
      .values({ title: input.title, description: input.description ?? null })
      .returning(COLUMNS)
      .executeTakeFirstOrThrow();
    return toItem(row);
  },

  async get(tx: TenantTransaction<ItemsDB>, id: string): Promise<Item | undefined> {
    if (!UUID.test(id)) return undefined;
    const row = await tx.db.selectFrom('items').select(COLUMNS).where('id', '=', id).executeTakeFirst();
    return row ? toItem(row) : undefined;
  },

  /**
   * {@link items.get} as one statement that is its whole transaction, for
   * `tenantry.query()` / `request.tenantQuery()` (one round trip), built with Kysely like
   * the rest; call it inside the tenant's context (a request of the plugin is one).
   */
  getQuery(id: string): CompiledStatement | undefined {
    if (!UUID.test(id)) return undefined;
    // Built and compiled once; each call fills in the id and the context's tenant.
    return itemById({ id });
  },

  /**
   * The name of an item's entry in the tenant cache (`tenantry/cache`): inside the tenant's
   * namespace, so the same id of another tenant is another entry.
   */
  cacheName(id: string): string | undefined {
    // Only an id that can name an item has an entry (a malformed one never reaches the cache).
    return UUID.test(id) ? `item:${id}` : undefined;
  },

  /** The item of a {@link items.getQuery} result. */
  fromRows(rows: readonly Record<string, unknown>[]): Item | undefined {
    const row = rows[0];
    return row ? toItem(row as Row) : undefined;
  },

  async list(
    tx: TenantTransaction<ItemsDB>,
    options: { q?: string; cursor?: string; limit: number },
  ): Promise<{ items: Item[]; nextCursor?: string }> {
    // The cursor keeps created_at to the microsecond (a JS Date would round it to the
    // millisecond and skip or repeat rows created within one).
    let query = tx.db
      .selectFrom('items')
      .select(COLUMNS)
      .select(sql<string>`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('at'));
    if (options.q) {
      query = query.where(sql<boolean>`search @@ websearch_to_tsquery('english', ${options.q})`);
    }
    if (options.cursor) {
      const after = decodeCursor(options.cursor);
      query = query.where((eb) =>
        eb.or([
          eb('created_at', '<', sql<Date>`${after.at}::timestamptz`),
          eb.and([eb('created_at', '=', sql<Date>`${after.at}::timestamptz`), eb('id', '<', after.id)]),
        ]),
      );
    }
    const rows = await query
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(options.limit + 1)
      .execute();
    const page = rows.slice(0, options.limit);
    const last = page[page.length - 1];
    const nextCursor =
      rows.length > options.limit && last
        ? Buffer.from(JSON.stringify({ at: last.at, id: last.id })).toString('base64url')
        : undefined;
    return { items: page.map(toItem), ...(nextCursor ? { nextCursor } : {}) };
  },

  async update(
    tx: TenantTransaction<ItemsDB>,
    id: string,
    patch: { title?: string; description?: string | null },
  ): Promise<Item | undefined> {
    if (!UUID.test(id)) return undefined;
    const row = await tx.db
      .updateTable('items')
      // statement_timestamp(), not clock_timestamp(): Citus refuses a VOLATILE function in
      // an UPDATE of a distributed table, and the statement's time is what "updated" means.
      .set({ ...patch, updated_at: sql`statement_timestamp()` })
      .where('id', '=', id)
      .returning(COLUMNS)
      .executeTakeFirst();
    return row ? toItem(row) : undefined;
  },

  async remove(tx: TenantTransaction<ItemsDB>, id: string): Promise<boolean> {
    if (!UUID.test(id)) return false;
    const result = await tx.db.deleteFrom('items').where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  },
};
