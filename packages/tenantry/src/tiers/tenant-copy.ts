import type { ClientBase } from 'pg';
import type { TenantTableRef } from '../control/tenant-tables.ts';
import { TenantryError } from '../errors/catalog.ts';
import { qualified, quoteIdent } from '../sql.ts';

/** One table of a move: rows copied and the checksum both copies agreed on. */
export interface MovedTable {
  readonly table: string;
  readonly rows: number;
  readonly checksum: string;
}

/**
 * Copies one tenant's rows of one table from `src` into the table of the same name in
 * `toSchema` on `dst`, `batchSize` rows at a time, then verifies the copy: the row count
 * and an md5 over the rows in primary-key order must agree on both sides, or it throws
 * `INVALID_TENANT_STATE`. A destination that already holds rows of the tenant is refused.
 * Both connections must be in the tenant's context, in transactions the caller commits or
 * rolls back; `src` in one snapshot (`REPEATABLE READ`), so the checksum reads what was copied.
 *
 * @example
 * ```ts
 * const moved = await copyTenantTable(tenant.id, src, dst, { schema: 'public', table: 'items' }, 'tenant_0001', 1000);
 * ```
 */
export async function copyTenantTable(
  tenantId: string,
  src: ClientBase,
  dst: ClientBase,
  table: TenantTableRef,
  toSchema: string,
  batchSize: number,
): Promise<MovedTable> {
  const from = qualified(table.schema, table.table);
  const to = qualified(toSchema, table.table);
  const columns = await copyableColumns(src, table);
  const list = columns.map(quoteIdent).join(', ');
  const existing = await dst.query<{ n: string }>(`SELECT count(*) AS n FROM ${to} WHERE tenant_id = $1`, [tenantId]);
  if (existing.rows[0]?.n !== '0') {
    throw new TenantryError(
      'INVALID_TENANT_STATE',
      `the destination already holds rows of this tenant in ${table.table}`,
    );
  }
  // A cursor keeps memory bounded; row_to_json keeps every value exact (microseconds, numerics, bytea).
  await src.query(
    `DECLARE tenantry_move CURSOR FOR SELECT row_to_json(r)::text AS j FROM (SELECT ${list} FROM ${from} WHERE tenant_id = $1) r`,
    [tenantId],
  );
  for (;;) {
    const { rows } = await src.query<{ j: string }>(`FETCH ${batchSize} FROM tenantry_move`);
    if (rows.length === 0) break;
    await dst.query(`INSERT INTO ${to} (${list}) SELECT ${list} FROM json_populate_recordset(NULL::${to}, $1::json)`, [
      `[${rows.map((r) => r.j).join(',')}]`,
    ]);
  }
  await src.query('CLOSE tenantry_move');
  const key = await primaryKey(src, table);
  const [a, b] = [
    await tableChecksum(src, from, columns, key, tenantId),
    await tableChecksum(dst, to, columns, key, tenantId),
  ];
  if (a.rows !== b.rows || a.checksum !== b.checksum) {
    throw new TenantryError('INVALID_TENANT_STATE', `verification failed for ${table.table}; the move was undone`);
  }
  return { table: table.table, ...a };
}

/** md5 of nothing, what an empty table's checksum is reported as. */
const md5Empty = 'd41d8cd98f00b204e9800998ecf8427e';

/**
 * Row count and checksum of one tenant's rows of `qualifiedTable`: an md5 over the md5 of
 * each row's `columns` in primary-key order (`key`, quoted), so two copies agree exactly
 * when they hold the same rows. Leave `tenant_id` out of `columns` to compare the rows of
 * two different tenants (an export and its import).
 *
 * @example
 * ```ts
 * const { rows, checksum } = await tableChecksum(client, '"public"."items"', ['id', 'title'], '"tenant_id", "id"', id);
 * ```
 */
export async function tableChecksum(
  client: ClientBase,
  qualifiedTable: string,
  columns: readonly string[],
  key: string,
  tenantId: string,
): Promise<{ rows: number; checksum: string }> {
  const list = columns.map(quoteIdent).join(', ');
  const { rows } = await client.query<{ n: string; checksum: string | null }>(
    `SELECT count(*) AS n, md5(string_agg(md5(row(${list})::text), '' ORDER BY ${key})) AS checksum
       FROM ${qualifiedTable} WHERE tenant_id = $1`,
    [tenantId],
  );
  return { rows: Number(rows[0]?.n ?? 0), checksum: rows[0]?.checksum ?? md5Empty };
}

/** Columns a copy writes: not dropped, not generated (PostgreSQL computes those again). */
export async function copyableColumns(client: ClientBase, table: TenantTableRef): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_attribute a
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY a.attnum`,
    [qualified(table.schema, table.table)],
  );
  return rows.map((r) => r.name);
}

/** The primary key columns, quoted and comma-separated (the checksum's order). */
export async function primaryKey(client: ClientBase, table: TenantTableRef): Promise<string> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY array_position(i.indkey, a.attnum)`,
    [qualified(table.schema, table.table)],
  );
  if (rows.length === 0)
    throw new TenantryError('INVALID_TENANT_STATE', `${table.table} has no primary key to verify by`);
  return rows.map((r) => quoteIdent(r.name)).join(', ');
}
