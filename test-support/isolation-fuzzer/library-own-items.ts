import { sql } from 'kysely';
import pg from 'pg';
import { describeError } from './checks.ts';
import { type FuzzContext, type Within, withTenant } from './context.ts';
import { type ItemState, type Op, type Row, remember } from './model.ts';
import type { Rng } from './rng.ts';
import { markerOf } from './text.ts';

/** Library operations on the tenant's own items: insert, read, search, update, delete, each raw SQL or Kysely. */

/** Share of library operations written with Kysely (the rest raw SQL): Kysely costs more CPU per statement. */
const KYSELY_SHARE = 0.35;

export async function libInsert(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const v = c.model.newVersion(op, rng);
  const m = markerOf(v.title) as string;
  const explicit = rng.chance(0.4) ? rng.uuid() : undefined;
  const variant = rng.pick(['kysely', 'raw', 'inline'] as const);
  op.detail = `${variant} insert ${JSON.stringify(v)}${explicit ? ` id ${explicit}` : ''}`;
  t.inflight.set(m, v);
  if (explicit) t.reserved.add(explicit);
  try {
    const rows = await withTenant(c, t, async (tx, db) => {
      if (variant === 'kysely') {
        return db
          .insertInto('items')
          .values({ ...v, ...(explicit ? { id: explicit } : {}) })
          .returning(['tenant_id', 'id', 'title', 'description'])
          .execute();
      }
      if (variant === 'raw') {
        const r = explicit
          ? await tx.query<Row>(
              'INSERT INTO items (id, title, description) VALUES ($1, $2, $3) RETURNING tenant_id, id, title, description',
              [explicit, v.title, v.description],
            )
          : await tx.query<Row>(
              'INSERT INTO items (title, description) VALUES ($1, $2) RETURNING tenant_id, id, title, description',
              [v.title, v.description],
            );
        return r.rows;
      }
      // Literals spliced into the text, as careless code does: escaped, they must stay data.
      const lit = (s: string | null) => (s === null ? 'NULL' : pg.escapeLiteral(s));
      const r = await tx.query<Row>(
        `INSERT INTO items (${explicit ? 'id, ' : ''}title, description) VALUES (${explicit ? `${lit(explicit)}, ` : ''}${lit(v.title)}, ${lit(v.description)}) RETURNING tenant_id, id, title, description`,
      );
      return r.rows;
    });
    const row = rows[0];
    c.checker.checks++;
    if (!row || row.tenant_id !== t.record.id || row.title !== v.title || row.description !== v.description) {
      c.checker.fail(
        op,
        row && row.tenant_id !== t.record.id ? 'leak' : 'anomaly',
        'insert returned another row',
        JSON.stringify(row),
      );
      remember(t.uncertain, m);
    } else {
      c.model.acknowledgeInsert(t, row.id, v);
    }
  } catch (error) {
    c.checker.fail(op, 'anomaly', 'insert failed', describeError(error));
    remember(t.uncertain, m);
  } finally {
    t.inflight.delete(m);
    if (explicit) t.reserved.delete(explicit);
  }
}

export async function libGet(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  const id = c.model.anyOwnId(op.tenant, rng);
  if (!id) return libList(c, op, rng, within);
  const kysely = rng.chance(KYSELY_SHARE);
  op.detail = `${kysely ? 'kysely' : 'raw'} get ${id}`;
  const rows = await within(async (tx, db) =>
    kysely
      ? db.selectFrom('items').select(['tenant_id', 'id', 'title', 'description']).where('id', '=', id).execute()
      : (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items WHERE id = $1', [id])).rows,
  );
  c.checker.checkOne(op, id, rows);
}

export async function libList(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  op.kind = 'lib.list';
  const kysely = rng.chance(KYSELY_SHARE);
  op.detail = `${kysely ? 'kysely' : 'raw'} select every item`;
  const rows = await within(async (tx, db) =>
    kysely
      ? db.selectFrom('items').select(['tenant_id', 'id', 'title', 'description']).execute()
      : (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items')).rows,
  );
  for (const row of rows) c.checker.checkRow(op, row);
  c.checker.checkComplete(op, rows);
}

export async function libSearch(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  const term = c.model.searchTerm(op, rng);
  const kysely = rng.chance(KYSELY_SHARE);
  op.detail = `${kysely ? 'kysely' : 'raw'} search ${JSON.stringify(term.q)}`;
  const rows = await within(async (tx, db) => {
    if (kysely) {
      return db
        .selectFrom('items')
        .select(['tenant_id', 'id', 'title', 'description'])
        .where(sql<boolean>`search @@ websearch_to_tsquery('english', ${term.q})`)
        .limit(100)
        .execute();
    }
    const r = await tx.query<Row>(
      "SELECT tenant_id, id, title, description FROM items WHERE search @@ websearch_to_tsquery('english', $1) LIMIT 100",
      [term.q],
    );
    return r.rows;
  });
  c.checker.checkSearch(op, term, rows);
}

export async function libUpdate(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const id = c.model.ownItem(t, rng) as string;
  const item = t.live.get(id) as ItemState;
  const v = c.model.newVersion(op, rng);
  const kysely = rng.chance(KYSELY_SHARE);
  op.detail = `${kysely ? 'kysely' : 'raw'} update ${id} to ${JSON.stringify(v)}`;
  item.busy = v;
  try {
    const rows = await withTenant(c, t, async (tx, db) =>
      kysely
        ? db
            .updateTable('items')
            .set({ title: v.title, description: v.description })
            .where('id', '=', id)
            .returning(['tenant_id', 'id'])
            .execute()
        : (
            await tx.query<Row>(
              'UPDATE items SET title = $2, description = $3, updated_at = statement_timestamp() WHERE id = $1 RETURNING tenant_id, id',
              [id, v.title, v.description],
            )
          ).rows,
    );
    item.busy = undefined;
    c.checker.checks++;
    if (rows.length !== 1 || rows[0]?.tenant_id !== t.record.id) {
      c.checker.fail(op, 'anomaly', `update of an acknowledged item touched ${rows.length} rows`, JSON.stringify(rows));
      c.model.uncertainItem(t, id);
    } else {
      c.model.acknowledgeUpdate(t, id, v);
    }
  } catch (error) {
    item.busy = undefined;
    c.checker.fail(op, 'anomaly', 'update failed', describeError(error));
    c.model.uncertainItem(t, id);
  }
}

export async function libDelete(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const id = c.model.ownItem(t, rng) as string;
  const item = t.live.get(id) as ItemState;
  const kysely = rng.chance(KYSELY_SHARE);
  op.detail = `${kysely ? 'kysely' : 'raw'} delete ${id}`;
  item.busy = 'delete';
  try {
    const n = await withTenant(c, t, async (tx, db) =>
      kysely
        ? Number((await db.deleteFrom('items').where('id', '=', id).executeTakeFirst()).numDeletedRows)
        : (await tx.query('DELETE FROM items WHERE id = $1', [id])).rowCount,
    );
    item.busy = undefined;
    c.checker.checks++;
    if (n !== 1) {
      c.checker.fail(op, 'anomaly', `delete of an acknowledged item removed ${n} rows`, id);
      c.model.uncertainItem(t, id);
    } else {
      c.model.acknowledgeDelete(t, id);
    }
  } catch (error) {
    item.busy = undefined;
    c.checker.fail(op, 'anomaly', 'delete failed', describeError(error));
    c.model.uncertainItem(t, id);
  }
}
