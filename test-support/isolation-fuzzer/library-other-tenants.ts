import pg from 'pg';
import { describeError } from './checks.ts';
import { type FuzzContext, type Within, withTenant } from './context.ts';
import { libInsert } from './library-own-items.ts';
import { type ItemState, type Op, type Row, remember, type TenantState } from './model.ts';
import type { Rng } from './rng.ts';
import { markerOf } from './text.ts';

/** Library operations reaching for other tenants' rows and copies of `items`: each must find and touch nothing. */

/**
 * Reads, updates and deletes naming another tenant's item id: nothing found, nothing touched.
 * The id stays reserved for the tenant meanwhile (`Model.withForeignId`).
 */
export async function libForeignId(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  await c.model.withForeignId(op.tenant, rng, (foreign) => foreignIdOp(c, op, rng, within, foreign));
}

async function foreignIdOp(
  c: FuzzContext,
  op: Op,
  rng: Rng,
  within: Within,
  foreign: { id: string; owner: TenantState } | undefined,
): Promise<void> {
  const id = foreign?.id ?? rng.uuid();
  const variant = rng.pick(['select', 'kysely-select', 'or-true', 'update', 'kysely-update', 'delete'] as const);
  op.detail = `${variant} naming ${foreign ? `${foreign.owner.record.slug}'s` : 'a random'} id ${id}`;
  if (variant === 'select' || variant === 'kysely-select') {
    const rows = await within(async (tx, db) =>
      variant === 'select'
        ? (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items WHERE id = $1', [id])).rows
        : db.selectFrom('items').select(['tenant_id', 'id', 'title', 'description']).where('id', '=', id).execute(),
    );
    for (const row of rows) c.checker.checkRow(op, row);
    c.checker.checks++;
    if (rows.length) c.checker.fail(op, 'leak', 'another tenant’s id found', JSON.stringify(rows).slice(0, 300));
    return;
  }
  if (variant === 'or-true') {
    // The classic injection: the caller's own rows come back, and only those.
    const rows = await within(async (tx) => {
      const r = await tx.query<Row>(
        `SELECT tenant_id, id, title, description FROM items WHERE id = '${id}' OR '1'='1' --'`,
      );
      return r.rows;
    });
    for (const row of rows) c.checker.checkRow(op, row);
    return;
  }
  // Writes: the title written carries the caller's marker, so a hit shows in the other's reads too.
  const v = c.model.newVersion(op, rng);
  const n = await within(async (tx, db) => {
    if (variant === 'update') {
      return (await tx.query('UPDATE items SET title = $2 WHERE id = $1', [id, v.title])).rowCount;
    }
    if (variant === 'kysely-update') {
      const r = await db.updateTable('items').set({ title: v.title }).where('id', '=', id).executeTakeFirst();
      return Number(r.numUpdatedRows);
    }
    return (await tx.query('DELETE FROM items WHERE id = $1', [id])).rowCount;
  });
  c.checker.checks++;
  if (n !== 0) c.checker.fail(op, 'leak', `${variant} reached another tenant’s item`, `${n} rows`);
}

/** `WHERE tenant_id = <other>`: no row read, updated or deleted. */
export async function libWhereOtherTenant(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  const t = op.tenant;
  const u = c.model.other(t, rng) as TenantState;
  const variant = rng.pick(['select', 'select-inline', 'update', 'delete', 'count-all-tenants'] as const);
  op.detail = `${variant} where tenant_id = ${u.record.slug} (${u.record.tier})`;
  if (variant === 'select' || variant === 'select-inline') {
    const rows = await within(async (tx) => {
      const r =
        variant === 'select'
          ? await tx.query<Row>('SELECT tenant_id, id, title, description FROM items WHERE tenant_id = $1', [
              u.record.id,
            ])
          : await tx.query<Row>(
              `SELECT tenant_id, id, title, description FROM items WHERE tenant_id = '${u.record.id}' OR tenant_id IS NOT NULL`,
            );
      return r.rows;
    });
    for (const row of rows) c.checker.checkRow(op, row);
    if (variant === 'select') {
      c.checker.checks++;
      if (rows.length) c.checker.fail(op, 'leak', 'rows of another tenant_id read', String(rows.length));
    }
    return;
  }
  if (variant === 'count-all-tenants') {
    // What an aggregate over "everyone" sees: the caller's tenant only.
    const r = await within((tx) =>
      tx.query<{ tenant_id: string; n: string }>('SELECT tenant_id, count(*)::text AS n FROM items GROUP BY tenant_id'),
    );
    for (const row of r.rows) {
      c.checker.checks++;
      if (row.tenant_id !== t.record.id) c.checker.fail(op, 'leak', 'another tenant counted', JSON.stringify(row));
    }
    return;
  }
  const v = c.model.newVersion(op, rng);
  const n = await within(async (tx) =>
    variant === 'update'
      ? (await tx.query('UPDATE items SET title = $2 WHERE tenant_id = $1', [u.record.id, v.title])).rowCount
      : (await tx.query('DELETE FROM items WHERE tenant_id = $1', [u.record.id])).rowCount,
  );
  c.checker.checks++;
  if (n !== 0) c.checker.fail(op, 'leak', `${variant} where tenant_id = other touched rows`, String(n));
}

/** `INSERT … (tenant_id) VALUES (<other>)`: refused, or (if ever accepted) in the caller's tenant only. */
export async function libInsertOtherTenant(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  const t = op.tenant;
  const u = c.model.other(t, rng) as TenantState;
  const v = c.model.newVersion(op, rng);
  const variant = rng.pick(['raw', 'inline', 'kysely', 'select-into'] as const);
  op.detail = `${variant} insert with tenant_id of ${u.record.slug} (${u.record.tier}) ${JSON.stringify(v.title)}`;
  const m = markerOf(v.title) as string;
  t.inflight.set(m, v);
  try {
    await c.checker.refused(
      within(async (tx, db) => {
        if (variant === 'kysely') {
          return db
            .insertInto('items')
            .values({ tenant_id: u.record.id, ...v })
            .returning(['tenant_id', 'id'])
            .execute();
        }
        if (variant === 'raw') {
          const r = await tx.query<Row>(
            'INSERT INTO items (tenant_id, title, description) VALUES ($1, $2, $3) RETURNING tenant_id, id',
            [u.record.id, v.title, v.description],
          );
          return r.rows;
        }
        if (variant === 'inline') {
          const r = await tx.query<Row>(
            `INSERT INTO items (tenant_id, title) VALUES ('${u.record.id}', ${pg.escapeLiteral(v.title)}) RETURNING tenant_id, id`,
          );
          return r.rows;
        }
        // Copy the caller's own row under the other's id: the row is the caller's, the tenant is not.
        const r = await tx.query<Row>(
          'INSERT INTO items (tenant_id, title, description) SELECT $1, $2, $3 FROM (SELECT 1) AS one RETURNING tenant_id, id',
          [u.record.id, v.title, v.description],
        );
        return r.rows;
      }),
      (rows) => {
        c.checker.checks++;
        for (const row of rows) {
          if (row.tenant_id === t.record.id) c.model.acknowledgeInsert(t, row.id, v);
          else {
            c.checker.fail(op, 'leak', 'row written with another tenant’s id', JSON.stringify(row));
            remember(t.planted, row.id);
          }
        }
      },
    );
  } finally {
    t.inflight.delete(m);
  }
}

/** `UPDATE … SET tenant_id = <other>`: refused; the item stays the caller's. */
export async function libMoveToOtherTenant(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  const t = op.tenant;
  const u = c.model.other(t, rng) as TenantState;
  const id = c.model.ownItem(t, rng);
  const item: ItemState | undefined = id === undefined ? undefined : t.live.get(id);
  const picked = rng.pick(['raw', 'kysely', 'all-rows'] as const);
  // The statements before this one in the same transaction gave other workers time to take
  // every settled item of the tenant: then the move aims at all rows, which needs none.
  const variant = item ? picked : 'all-rows';
  op.detail = `${variant} set tenant_id of ${variant === 'all-rows' ? 'every item' : id} to ${u.record.slug} (${u.record.tier})`;
  if (item) item.busy = { title: item.title, description: item.description };
  try {
    await c.checker.refused(
      within(async (tx, db) => {
        if (variant === 'kysely') {
          return db
            .updateTable('items')
            .set({ tenant_id: u.record.id })
            .where('id', '=', id as string)
            .returning(['tenant_id', 'id'])
            .execute();
        }
        const r =
          variant === 'raw'
            ? await tx.query<Row>('UPDATE items SET tenant_id = $1 WHERE id = $2 RETURNING tenant_id, id', [
                u.record.id,
                id,
              ])
            : await tx.query<Row>('UPDATE items SET tenant_id = $1 RETURNING tenant_id, id', [u.record.id]);
        return r.rows;
      }),
      (rows) => {
        c.checker.checks++;
        if (rows.some((r) => r.tenant_id !== t.record.id)) {
          c.checker.fail(op, 'leak', 'row moved to another tenant', JSON.stringify(rows).slice(0, 300));
          for (const r of rows) {
            c.model.uncertainItem(t, r.id);
            remember(t.planted, r.id);
          }
        }
      },
    );
  } finally {
    if (item) item.busy = undefined;
  }
}

/** An insert of the caller's own row with another tenant's item id: it lands in the caller's tenant. */
export async function libCloneForeignId(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const foreign = c.model.foreignId(t, rng);
  if (!foreign) return libInsert(c, Object.assign(op, { kind: 'lib.insert' as const }), rng);
  const v = c.model.newVersion(op, rng);
  const m = markerOf(v.title) as string;
  op.detail = `insert own row with ${foreign.owner.record.slug}'s id ${foreign.id}`;
  t.inflight.set(m, v);
  t.reserved.add(foreign.id);
  try {
    const r = await withTenant(c, t, (tx) =>
      tx.query<Row>('INSERT INTO items (id, title, description) VALUES ($1, $2, $3) RETURNING tenant_id, id', [
        foreign.id,
        v.title,
        v.description,
      ]),
    );
    const row = r.rows[0];
    c.checker.checks++;
    if (row?.tenant_id !== t.record.id) {
      c.checker.fail(op, 'leak', 'insert with a foreign id landed elsewhere', JSON.stringify(row));
      remember(t.uncertain, m);
    } else {
      c.model.acknowledgeInsert(t, row.id, v);
    }
  } catch (error) {
    c.checker.fail(op, 'anomaly', 'insert with another tenant’s id refused', describeError(error));
    remember(t.uncertain, m);
  } finally {
    t.inflight.delete(m);
    t.reserved.delete(foreign.id);
  }
}

/** Schema-qualified reads of another tenant's copy, the shared table, the control plane. */
export async function libOtherSchemaRead(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  const t = op.tenant;
  const s = c.model.other(t, rng, (u) => u.record.schemaName !== null);
  const shared = c.tenantry.config.tenantSchema;
  const target = rng.pick(['other-schema', 'other-schema', 'shared', 'control-plane'] as const);
  if (target === 'control-plane') {
    const table = rng.pick(['tenantry.tenants', 'tenantry.api_keys', 'tenantry.context_key', 'tenantry.audit_log']);
    op.detail = `select from ${table}`;
    await c.checker.refused(
      within((tx) => tx.query(`SELECT * FROM ${table} LIMIT 5`)),
      (r) => {
        c.checker.checks++;
        c.checker.fail(op, 'leak', `control plane readable (${table})`, `${r.rowCount} rows`);
      },
    );
    return;
  }
  const schema = target === 'shared' || !s ? shared : (s.record.schemaName as string);
  op.detail = `select from ${schema}.items (${target === 'shared' || !s ? 'shared table' : `${s.record.slug}'s schema`})`;
  await c.checker.refused(
    within((tx) => tx.query<Row>(`SELECT tenant_id, id, title, description FROM ${pg.escapeIdentifier(schema)}.items`)),
    (r) => {
      for (const row of r.rows) c.checker.checkRow(op, row);
    },
  );
}

/** Schema-qualified writes into another tenant's copy (or, off the pool tier, the shared table): refused. */
export async function libOtherSchemaWrite(c: FuzzContext, op: Op, rng: Rng, within: Within): Promise<void> {
  const t = op.tenant;
  const s = c.model.other(t, rng, (u) => u.record.schemaName !== null);
  const shared = c.tenantry.config.tenantSchema;
  // A database-tier tenant's own database has its own copy under the shared schema's name.
  const toShared = t.record.tier === 'schema' && (!s || rng.chance(0.3));
  if (!toShared && !s) {
    return libOtherSchemaRead(c, Object.assign(op, { kind: 'lib.other-schema-read' as const }), rng, within);
  }
  const schema = toShared ? shared : (s?.record.schemaName as string);
  const v = c.model.newVersion(op, rng);
  const where = toShared ? 'the shared table' : `${s?.record.slug}'s schema`;
  op.detail = `insert into ${schema}.items (${where}) ${JSON.stringify(v.title)}`;
  // In flight like any insert: if accepted, the row is visible from its commit on, before
  // this operation has recorded it (a concurrent read of that copy must not call it unknown).
  const m = markerOf(v.title) as string;
  t.inflight.set(m, v);
  try {
    await c.checker.refused(
      within((tx) =>
        tx.query<Row>(
          `INSERT INTO ${pg.escapeIdentifier(schema)}.items (title, description) VALUES ($1, $2) RETURNING tenant_id, id`,
          [v.title, v.description],
        ),
      ),
      (r) => {
        c.checker.checks++;
        for (const row of r.rows) {
          remember(t.planted, row.id);
          c.checker.fail(
            op,
            'leak',
            `write landed in ${toShared ? 'the shared table' : 'another tenant’s schema'}`,
            JSON.stringify(row),
          );
        }
      },
    );
  } finally {
    t.inflight.delete(m);
  }
}
