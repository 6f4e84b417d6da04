import type { Pool } from 'pg';
import type { TenantStatus } from '../context/tenant-context.ts';
import { type TenantRecord, type TenantRow, toRecord } from '../control/tenant-record.ts';
import { TenantryError } from '../errors/catalog.ts';

/** Columns the console's tenant list sorts by. */
export const TENANT_SORTS = ['created', 'slug', 'name'] as const;
export type TenantSort = (typeof TENANT_SORTS)[number];

/** What the list asks: search text, status, sort, direction, cursor, page size. */
export interface TenantListQuery {
  readonly q?: string | undefined;
  readonly status?: TenantStatus | undefined;
  readonly sort?: TenantSort | undefined;
  readonly dir?: 'asc' | 'desc' | undefined;
  readonly cursor?: string | undefined;
  readonly limit?: number | undefined;
}

/** One page: the tenants with their placement's name, and the cursor of the next page. */
export interface TenantListPage {
  readonly tenants: readonly (TenantRecord & { readonly placement: string })[];
  readonly nextCursor?: string;
}

// The sort key of each column as SQL, and how a cursor value is cast back. `created_at` is
// carried to the microsecond as UTC text: a JavaScript Date would drop the last three digits
// and the next page would repeat or skip rows created in the same millisecond.
const KEYS: Record<TenantSort, { sql: string; cursor: string; cast: string }> = {
  created: {
    sql: 't.created_at',
    cursor: `to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')`,
    cast: `($1::timestamp AT TIME ZONE 'UTC')`,
  },
  slug: { sql: 't.slug', cursor: 't.slug', cast: '$1::text' },
  name: { sql: 't.name', cursor: 't.name', cast: '$1::text' },
};

/**
 * The console's tenant list: search (prefix of the slug or of the name, case-insensitive),
 * status, sort by creation, slug or name in either direction, keyset pagination. Each page
 * is one query that walks an index (`tenants (created_at, id)`, `(slug)`, `(name, id)`,
 * migration 0019) from the cursor, so page 2,000 costs what page 1 does; a search reads the
 * two prefix indexes (`slug text_pattern_ops`, `lower(name) text_pattern_ops`). A search
 * inside names would need a trigram index (`pg_trgm`), which not every server has.
 *
 * @example
 * ```ts
 * const page = await listTenants(tenantry.adminPool, { q: 'acme', sort: 'slug', limit: 50 });
 * const next = await listTenants(tenantry.adminPool, { q: 'acme', sort: 'slug', cursor: page.nextCursor });
 * ```
 */
export async function listTenants(pool: Pool, query: TenantListQuery): Promise<TenantListPage> {
  const sort = query.sort ?? 'created';
  const dir = query.dir ?? (sort === 'created' ? 'desc' : 'asc');
  const limit = query.limit ?? 50;
  const key = KEYS[sort];
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, sort);
  const op = dir === 'asc' ? '>' : '<';
  const order = dir === 'asc' ? 'ASC' : 'DESC';
  const q = query.q?.trim().toLowerCase();
  const like = q ? q.replace(/[\\%_]/g, (c) => `\\${c}`) : null;
  const { rows } = await pool.query<TenantRow & { placement: string; sort_key: string }>(
    `SELECT t.*, p.name AS placement, ${key.cursor} AS sort_key
       FROM tenantry.tenants t JOIN tenantry.placements p ON p.id = t.placement_id
      WHERE ($1::text IS NULL OR (${key.sql}, t.id) ${op} (${key.cast}, $2::uuid))
        AND ($3::text IS NULL OR t.slug LIKE $3 || '%' OR lower(t.name) LIKE $3 || '%')
        AND ($4::text IS NULL OR t.status = $4)
      ORDER BY ${key.sql} ${order}, t.id ${order}
      LIMIT $5`,
    [after?.v ?? null, after?.id ?? null, like, query.status ?? null, limit + 1],
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  const nextCursor =
    rows.length > limit && last
      ? Buffer.from(JSON.stringify({ v: last.sort_key, id: last.id })).toString('base64url')
      : undefined;
  return {
    tenants: page.map((r) => Object.freeze({ ...toRecord(r), placement: r.placement })),
    ...(nextCursor ? { nextCursor } : {}),
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/;

function decodeCursor(cursor: string, sort: TenantSort): { v: string; id: string } {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { v?: unknown; id?: unknown };
    if (
      typeof parsed.v === 'string' &&
      parsed.v.length <= 300 &&
      (sort !== 'created' || CURSOR_TIME.test(parsed.v)) &&
      typeof parsed.id === 'string' &&
      UUID.test(parsed.id)
    ) {
      return { v: parsed.v, id: parsed.id };
    }
  } catch {
    // fall through
  }
  throw new TenantryError('INVALID_INPUT', 'cursor is not one this list returned');
}
