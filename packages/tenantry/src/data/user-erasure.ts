import { randomUUID } from 'node:crypto';
import type { ClientBase } from 'pg';
import { inTransaction } from '../control/admin-transaction.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { listTenantTables } from '../control/tenant-tables.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { parsePersonalComment } from '../schema/personal-data.ts';
import { qualified, quoteIdent } from '../sql.ts';
import { UUID_PATTERN } from '../uuid.ts';
import { removeOrphanAccounts } from './control-plane-rows.ts';
import { type DataDeps, openTenantTransaction, placeOf } from './tenant-place.ts';

/** What erasing one user from one tenant did. */
export interface UserErasureReport {
  readonly tenantId: string;
  readonly userId: string;
  /** Per table marked `personal`: how, and how many of the user's rows. */
  readonly tables: readonly {
    readonly table: string;
    readonly mode: 'pseudonymise' | 'delete';
    readonly rows: number;
  }[];
  /** The account was deleted too: the user belonged to no other tenant. */
  readonly accountRemoved: boolean;
}

/** A tenant table with a `personal` declaration, as the catalog records it. */
interface MarkedTable {
  readonly table: string;
  readonly owner: string;
  readonly mode: 'pseudonymise' | 'delete';
  /** The personal columns, and whether each may be NULL and is text. */
  readonly columns: readonly { readonly name: string; readonly nullable: boolean; readonly text: boolean }[];
}

/**
 * Erasure of one person from one tenant (GDPR art. 17 for a user rather than a tenant),
 * what `tenantry.eraseUser` and `DELETE /v1/users/{id}?erase=true` run:
 *
 * 1. the user must be a member of the tenant (`NOT_FOUND` otherwise: a user of another
 *    tenant is never reached through this one); the membership is locked;
 * 2. in the tenant's maintenance context where its rows are, every tenant table whose
 *    owner column carries a `personal` declaration (read from the catalog) is changed for
 *    the rows that name the user: pseudonymised (owner replaced by one random id, personal
 *    columns cleared) or deleted. Only this tenant's rows: RLS and `tenant_id = $1` both say so;
 * 3. the membership goes (its sessions with it), and the account too when the user belongs
 *    to no other tenant; `user.erased` is audited with the user id, the tables and row
 *    counts, never an email, a name or the pseudonym.
 *
 * Pool and schema tiers: one transaction for all of it. Database tier: the rows commit in
 * the tenant's database first, then the membership; if the second fails, run it again (the
 * rows no longer name the user, so it only finishes the rest).
 *
 * @example
 * ```ts
 * const report = await tenantry.eraseUser('acme', userId, { actor: 'dpo' });
 * console.log(report.tables, report.accountRemoved);
 * ```
 */
export class UserEraser {
  readonly #deps: DataDeps;

  constructor(deps: DataDeps) {
    this.#deps = deps;
  }

  async erase(tenant: TenantRecord, userId: string, actor: string): Promise<UserErasureReport> {
    if (typeof userId !== 'string' || !UUID_PATTERN.test(userId)) throw new TenantryError('NOT_FOUND', 'user');
    const place = await placeOf(this.#deps, tenant);
    const conn = await openTenantTransaction(this.#deps, tenant.id, place, 'write');
    try {
      if (place.inMainDatabase) {
        const report = await this.#erase(conn.client, conn.client, place.schema, tenant.id, userId, actor);
        await conn.client.query('COMMIT');
        return report;
      }
      return await inTransaction(this.#deps.admin, (control) =>
        this.#erase(control, conn.client, place.schema, tenant.id, userId, actor, () => conn.client.query('COMMIT')),
      );
    } catch (error) {
      await conn.client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await conn.release();
    }
  }

  async #erase(
    control: ClientBase,
    data: ClientBase,
    schema: string,
    tenantId: string,
    userId: string,
    actor: string,
    commitRows?: () => Promise<unknown>,
  ): Promise<UserErasureReport> {
    const { rows: member } = await control.query(
      'SELECT 1 FROM tenantry.memberships WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE',
      [tenantId, userId],
    );
    if (member.length === 0) throw new TenantryError('NOT_FOUND', 'user');
    const tables: { table: string; mode: 'pseudonymise' | 'delete'; rows: number }[] = [];
    const pseudonym = randomUUID();
    for (const marked of await markedTables(data, schema)) {
      tables.push({
        table: marked.table,
        mode: marked.mode,
        rows: await eraseRows(data, schema, marked, tenantId, userId, pseudonym),
      });
    }
    await commitRows?.();
    await control.query('DELETE FROM tenantry.memberships WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
    const accountRemoved = (await removeOrphanAccounts(control, [userId])).length > 0;
    await writeAudit(control, {
      actor,
      tenantId,
      action: 'user.erased',
      // The user id, what was done and how much; no personal data, and not the pseudonym.
      details: { userId, tables, accountRemoved },
    });
    return { tenantId, userId, tables, accountRemoved };
  }
}

/** The tenant tables of `schema` whose owner column carries a `personal` declaration, children first. */
async function markedTables(client: ClientBase, schema: string): Promise<MarkedTable[]> {
  const { rows } = await client.query<{ table: string; owner: string; comment: string }>(
    `SELECT c.relname AS table, a.attname AS owner, col_description(c.oid, a.attnum) AS comment
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND col_description(c.oid, a.attnum) LIKE 'tenantry:personal %'`,
    [schema],
  );
  const order = (await listTenantTables(client, [schema])).map((t) => t.table);
  const out: MarkedTable[] = [];
  for (const row of rows.sort((x, y) => order.indexOf(x.table) - order.indexOf(y.table))) {
    if (!order.includes(row.table)) continue; // not a tenant table (no isolation policy)
    const declared = parsePersonalComment(row.comment);
    if (!declared) continue;
    const { rows: columns } = await client.query<{ name: string; nullable: boolean; text: boolean }>(
      `SELECT a.attname AS name, NOT a.attnotnull AS nullable, t.typcategory = 'S' AS text
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = $1::regclass AND a.attname = ANY($2) AND NOT a.attisdropped`,
      [qualified(schema, row.table), declared.columns],
    );
    out.push({ table: row.table, owner: row.owner, mode: declared.mode, columns });
  }
  return out;
}

async function eraseRows(
  client: ClientBase,
  schema: string,
  marked: MarkedTable,
  tenantId: string,
  userId: string,
  pseudonym: string,
): Promise<number> {
  const table = qualified(schema, marked.table);
  const owner = quoteIdent(marked.owner);
  if (marked.mode === 'delete') {
    const { rowCount } = await client.query(`DELETE FROM ${table} WHERE tenant_id = $1 AND ${owner} = $2`, [
      tenantId,
      userId,
    ]);
    return rowCount ?? 0;
  }
  const values: unknown[] = [tenantId, userId, pseudonym];
  const sets = [`${owner} = $3`];
  for (const column of marked.columns) {
    if (column.nullable) sets.push(`${quoteIdent(column.name)} = NULL`);
    else if (column.text) {
      if (values.length === 3) values.push(`erased-${pseudonym.slice(0, 8)}`);
      sets.push(`${quoteIdent(column.name)} = $4`);
    } else {
      throw new TenantryError(
        'SCHEMA_DEFINITION_INVALID',
        `${marked.table}.${column.name} is marked personal but is NOT NULL and not text: make it nullable`,
      );
    }
  }
  const { rowCount } = await client.query(
    `UPDATE ${table} SET ${sets.join(', ')} WHERE tenant_id = $1 AND ${owner} = $2`,
    values,
  );
  return rowCount ?? 0;
}
