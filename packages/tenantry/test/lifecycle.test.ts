import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { listTenantTables } from '../src/control/tenant-tables.ts';
import type { TenantRecord, TenantryError } from '../src/index.ts';

let f: Fixture;

beforeAll(async () => {
  f = await createFixture('lifecycle');
});

afterAll(async () => {
  await f?.close();
});

/** Everything the control plane holds, as the superuser (admin URL) sees it. */
async function snapshot(): Promise<{ tenants: string; audit: number }> {
  const t = await f.tenantry.adminPool.query<{ j: string }>(
    'SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY id), $$[]$$)::text AS j FROM tenantry.tenants t',
  );
  const a = await f.tenantry.adminPool.query<{ n: number }>('SELECT count(*)::int AS n FROM tenantry.audit_log');
  return { tenants: t.rows[0]?.j as string, audit: a.rows[0]?.n as number };
}

interface AuditRow {
  action: string;
  actor: string;
  details: Record<string, unknown>;
  xmin: string;
}

async function auditOf(tenantId: string): Promise<AuditRow[]> {
  const { rows } = await f.tenantry.adminPool.query<AuditRow>(
    'SELECT action, actor, details, xmin::text AS xmin FROM tenantry.audit_log WHERE tenant_id = $1 ORDER BY id',
    [tenantId],
  );
  return rows;
}

/** The transaction id that last wrote the tenant's row. */
async function rowXmin(tenantId: string): Promise<string> {
  const { rows } = await f.tenantry.adminPool.query<{ xmin: string }>(
    'SELECT xmin::text AS xmin FROM tenantry.tenants WHERE id = $1',
    [tenantId],
  );
  return rows[0]?.xmin as string;
}

async function itemCount(tenantId: string): Promise<number> {
  const { rows } = await f.tenantry.adminPool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM items WHERE tenant_id = $1',
    [tenantId],
  );
  return rows[0]?.n as number;
}

const work = (tenant: TenantRecord | string) =>
  f.tenantry.transaction(tenant, (tx) => tx.query<{ n: string }>('SELECT count(*) AS n FROM items'));

describe('create', () => {
  it('provisions an active pool-tier tenant and audits it in the same transaction', async () => {
    const t = await f.tenantry.tenants.create(
      { slug: 'life-acme', name: '  Acme Inc.  ', plan: 'pro' },
      { actor: 'ops' },
    );
    expect(t).toMatchObject({ slug: 'life-acme', name: 'Acme Inc.', status: 'active', tier: 'pool', plan: 'pro' });
    expect(t.limits).toEqual({ maxUsers: null, maxStorageMb: null, statementTimeoutMs: 30000 });
    expect(Object.isFrozen(t)).toBe(true);
    const audit = await auditOf(t.id);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ action: 'tenant.created', actor: 'ops', details: { slug: 'life-acme' } });
    expect(audit[0]?.xmin).toBe(await rowXmin(t.id));
  });

  const invalid: [string, unknown][] = [
    ['a slug with upper case and spaces', { slug: 'Bad Slug', name: 'x' }],
    ['a slug with a leading hyphen', { slug: '-acme', name: 'x' }],
    ['a slug with an underscore', { slug: 'ac_me', name: 'x' }],
    ['a slug of 64 characters', { slug: 'a'.repeat(64), name: 'x' }],
    ['an empty name', { slug: 'life-empty', name: '' }],
    ['a blank name', { slug: 'life-blank', name: '   ' }],
    ['an unknown field', { slug: 'life-unknown', name: 'x', colour: 'red' }],
    ['an unknown limit', { slug: 'life-limit', name: 'x', limits: { maxWidgets: 3 } }],
    ['a zero statement timeout', { slug: 'life-timeout', name: 'x', limits: { statementTimeoutMs: 0 } }],
    ['an unknown tier', { slug: 'life-tier', name: 'x', tier: 'galaxy' }],
    ['an unknown placement', { slug: 'life-place', name: 'x', tier: 'schema', placement: 'nowhere' }],
    ['a placement of another tier', { slug: 'life-mixed', name: 'x', tier: 'schema', placement: 'shared' }],
    ['features that are not an object', { slug: 'life-features', name: 'x', features: [1, 2] }],
    ['no input at all', undefined],
  ];
  for (const [what, input] of invalid) {
    it(`rejects ${what} with INVALID_INPUT and writes nothing`, async () => {
      const before = await snapshot();
      const error = (await f.tenantry.tenants.create(input as never).catch((e: unknown) => e)) as TenantryError;
      expect(error).toMatchObject({ code: 'INVALID_INPUT', status: 400 });
      expect(error.details?.problems).toEqual(
        expect.arrayContaining([expect.objectContaining({ message: expect.any(String) })]),
      );
      expect(await snapshot()).toEqual(before);
    });
  }

  it('names the offending field', async () => {
    await expect(f.tenantry.tenants.create({ slug: 'life-x', name: 'x', tier: 'cloud' as never })).rejects.toThrow(
      /tier:/,
    );
    await expect(f.tenantry.tenants.create({ slug: 'life-y', name: 'x', placement: 'nope' })).rejects.toThrow(
      /placement:/,
    );
    await expect(f.tenantry.tenants.create({ slug: 'NO', name: 'x' })).rejects.toThrow(/slug:/);
  });

  it('a duplicate slug is TENANT_SLUG_TAKEN and writes nothing', async () => {
    await f.tenantry.tenants.create({ slug: 'life-dup', name: 'First' });
    const before = await snapshot();
    await expect(f.tenantry.tenants.create({ slug: 'life-dup', name: 'Second' })).rejects.toMatchObject({
      code: 'TENANT_SLUG_TAKEN',
      status: 409,
    });
    expect(await snapshot()).toEqual(before);
    expect((await f.tenantry.tenants.get('life-dup')).name).toBe('First');
  });
});

describe('read', () => {
  it('gets by id and by slug; unknown or malformed references are TENANT_NOT_FOUND', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'life-get', name: 'Get' });
    expect(await f.tenantry.tenants.get(t.id)).toEqual(t);
    expect(await f.tenantry.tenants.get('life-get')).toEqual(t);
    expect(await f.tenantry.tenants.get(t.id.toUpperCase())).toEqual(t);
    for (const ref of [
      'life-nope',
      '00000000-0000-4000-8000-000000000000',
      "'; DROP TABLE x; --",
      '',
      'x'.repeat(101),
    ]) {
      await expect(f.tenantry.tenants.get(ref)).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND', status: 404 });
      expect(await f.tenantry.tenants.find(ref)).toBeUndefined();
    }
  });

  it('lists every tenant exactly once across cursor pages, in creation order', async () => {
    for (let i = 0; i < 12; i++) await f.tenantry.tenants.create({ slug: `life-page-${i}`, name: `Page ${i}` });
    // Tenants imported in one go share a creation time: the id breaks the tie.
    await f.tenantry.adminPool.query(
      "UPDATE tenantry.tenants SET created_at = '2024-01-01T00:00:00.123456Z' WHERE slug LIKE 'life-page-%' AND slug < 'life-page-5'",
    );
    const { rows } = await f.tenantry.adminPool.query<{ id: string }>(
      'SELECT id FROM tenantry.tenants ORDER BY created_at, id',
    );
    const expected = rows.map((r) => r.id);
    for (const limit of [1, 2, 5, expected.length, 500]) {
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await f.tenantry.tenants.list({ limit, ...(cursor ? { cursor } : {}) });
        expect(page.tenants.length).toBeLessThanOrEqual(limit);
        seen.push(...page.tenants.map((t) => t.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor && pages < 100);
      expect(seen).toEqual(expected);
      expect(pages).toBe(Math.max(1, Math.ceil(expected.length / limit)));
    }
  });

  it('filters by status', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'life-filter', name: 'Filter' });
    await f.tenantry.tenants.suspend(t.id);
    const page = await f.tenantry.tenants.list({ status: 'suspended', limit: 500 });
    expect(page.tenants.map((x) => x.id)).toContain(t.id);
    expect(page.tenants.every((x) => x.status === 'suspended')).toBe(true);
  });

  it('a bad cursor or limit is INVALID_INPUT', async () => {
    const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const uuid = '00000000-0000-4000-8000-000000000000';
    const cursors = [
      'not a cursor',
      '',
      forged({ at: 1, id: uuid }),
      forged({ at: '2024-01-01T00:00:00.000000', id: 'nope' }),
      forged({ at: 'yesterday-ish', id: uuid }),
      forged({ at: '2024-13-45T99:00:00.000000', id: uuid }),
      forged({ at: '2024-02-30T00:00:00.000000', id: uuid }),
      forged({ at: '0000-01-01T00:00:00.000000', id: uuid }),
      forged({ at: '2024-01-01T00:00:00.000000', id: [uuid] }),
      forged(null),
    ];
    for (const cursor of cursors) {
      await expect(f.tenantry.tenants.list({ cursor })).rejects.toMatchObject({ code: 'INVALID_INPUT', status: 400 });
    }
    for (const limit of [0, -1, 501, 1.5]) {
      await expect(f.tenantry.tenants.list({ limit })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    }
  });
});

describe('update', () => {
  it('changes name, plan and limits, audited with the fields changed in the same transaction', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'life-upd', name: 'Old', limits: { maxUsers: 5 } });
    const u = await f.tenantry.tenants.update(
      'life-upd',
      { name: 'New', plan: 'enterprise', limits: { maxStorageMb: 100, statementTimeoutMs: 5000 } },
      { actor: 'admin@x' },
    );
    expect(u).toMatchObject({ id: t.id, name: 'New', plan: 'enterprise', status: 'active' });
    expect(u.limits).toEqual({ maxUsers: 5, maxStorageMb: 100, statementTimeoutMs: 5000 });
    expect(u.updatedAt.getTime()).toBeGreaterThan(t.updatedAt.getTime());
    expect(await f.tenantry.tenants.get(t.id)).toEqual(u);
    // null clears a limit; other limits stay.
    const cleared = await f.tenantry.tenants.update(t.id, { limits: { maxUsers: null } });
    expect(cleared.limits).toEqual({ maxUsers: null, maxStorageMb: 100, statementTimeoutMs: 5000 });
    const audit = await auditOf(t.id);
    expect(audit.map((a) => a.action)).toEqual(['tenant.created', 'tenant.updated', 'tenant.updated']);
    expect(audit[1]).toMatchObject({ actor: 'admin@x', details: { fields: ['name', 'plan', 'limits'] } });
    expect(audit[2]?.xmin).toBe(await rowXmin(t.id));
  });

  it('bad input is INVALID_INPUT and changes nothing; an unknown tenant is TENANT_NOT_FOUND', async () => {
    await f.tenantry.tenants.create({ slug: 'life-upd-bad', name: 'Keep' });
    const before = await snapshot();
    for (const input of [{ name: '' }, { slug: 'renamed' }, { limits: { statementTimeoutMs: -5 } }, { plan: 7 }]) {
      await expect(f.tenantry.tenants.update('life-upd-bad', input as never)).rejects.toMatchObject({
        code: 'INVALID_INPUT',
      });
    }
    await expect(f.tenantry.tenants.update('life-missing', { name: 'x' })).rejects.toMatchObject({
      code: 'TENANT_NOT_FOUND',
    });
    expect(await snapshot()).toEqual(before);
  });
});

describe('lifecycle transitions', () => {
  it('suspend refuses work (even through a stale record), resume restores it; one audit row each', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'life-susp', name: 'Susp' });
    await f.tenantry.transaction(t, (tx) => tx.query("INSERT INTO items (title) VALUES ('kept')"));
    const s = await f.tenantry.tenants.suspend(t.id, { actor: 'billing' });
    expect(s.status).toBe('suspended');
    expect(s.statusChangedAt.getTime()).toBeGreaterThanOrEqual(t.statusChangedAt.getTime());
    for (const ref of [t.id, 'life-susp', t, s]) {
      await expect(work(ref)).rejects.toMatchObject({ code: 'TENANT_SUSPENDED', status: 403 });
    }
    let audit = await auditOf(t.id);
    expect(audit.map((a) => a.action)).toEqual(['tenant.created', 'tenant.suspended']);
    expect(audit[1]).toMatchObject({ actor: 'billing', details: { from: 'active', to: 'suspended' } });
    expect(audit[1]?.xmin).toBe(await rowXmin(t.id));

    const r = await f.tenantry.tenants.resume('life-susp');
    expect(r.status).toBe('active');
    expect((await work(t)).rows[0]?.n).toBe('1');
    audit = await auditOf(t.id);
    expect(audit.map((a) => a.action)).toEqual(['tenant.created', 'tenant.suspended', 'tenant.resumed']);
    expect(audit[2]?.xmin).toBe(await rowXmin(t.id));
  });

  it('offboard refuses work with TENANT_NOT_ACTIVE', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'life-off', name: 'Off' });
    const o = await f.tenantry.tenants.offboard(t.id);
    expect(o.status).toBe('offboarding');
    await expect(work(t)).rejects.toMatchObject({ code: 'TENANT_NOT_ACTIVE', status: 403 });
    const audit = await auditOf(t.id);
    expect(audit.map((a) => a.action)).toEqual(['tenant.created', 'tenant.offboarding']);
    expect(audit[1]?.xmin).toBe(await rowXmin(t.id));
    // A suspended tenant can be offboarded too.
    const u = await f.tenantry.tenants.create({ slug: 'life-off-2', name: 'Off 2' });
    await f.tenantry.tenants.suspend(u.id);
    expect((await f.tenantry.tenants.offboard(u.id)).status).toBe('offboarding');
  });

  it('soft delete keeps the rows and refuses work', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'life-soft', name: 'Soft' });
    await f.tenantry.transaction(t, (tx) => tx.query("INSERT INTO items (title) VALUES ('one'), ('two')"));
    const d = await f.tenantry.tenants.delete(t.id);
    expect(d.status).toBe('deleted');
    expect(await itemCount(t.id)).toBe(2);
    expect((await f.tenantry.tenants.get(t.id)).status).toBe('deleted');
    await expect(work(t)).rejects.toMatchObject({ code: 'TENANT_NOT_ACTIVE' });
    const audit = await auditOf(t.id);
    expect(audit.map((a) => a.action)).toEqual(['tenant.created', 'tenant.deleted']);
    expect(audit[1]?.xmin).toBe(await rowXmin(t.id));
  });

  it('hard delete removes every row of the tenant from every tenant table, and its record; others keep theirs', async () => {
    const gone = await f.tenantry.tenants.create({ slug: 'life-hard', name: 'Hard' });
    const other = await f.tenantry.tenants.create({ slug: 'life-other', name: 'Other' });
    for (const t of [gone, other]) {
      await f.tenantry.transaction(t, async (tx) => {
        for (let i = 0; i < 3; i++) {
          const { rows } = await tx.query<{ id: string }>('INSERT INTO items (title) VALUES ($1) RETURNING id', [
            `${t.slug} ${i}`,
          ]);
          await tx.query('INSERT INTO comments (item_id, body) VALUES ($1, $2), ($1, $3)', [rows[0]?.id, 'c1', 'c2']);
        }
      });
    }
    const tables = await listTenantTables(f.tenantry.adminPool, ['public']);
    expect(tables.map((t) => t.table).sort()).toEqual(['comments', 'items']);
    const countAll = async (tenantId: string) => {
      const out: Record<string, number> = {};
      for (const t of tables) {
        const { rows } = await f.tenantry.adminPool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "${t.schema}"."${t.table}" WHERE tenant_id = $1`,
          [tenantId],
        );
        out[t.table] = rows[0]?.n as number;
      }
      return out;
    };
    expect(await countAll(gone.id)).toEqual({ comments: 6, items: 3 });
    const otherBefore = await countAll(other.id);
    expect(otherBefore).toEqual({ comments: 6, items: 3 });

    const deleted = await f.tenantry.tenants.delete(gone.id, { hard: true, actor: 'gdpr' });
    expect(deleted.id).toBe(gone.id);
    expect(await countAll(gone.id)).toEqual({ comments: 0, items: 0 });
    expect(await countAll(other.id)).toEqual(otherBefore);
    expect(await f.tenantry.tenants.find(gone.id)).toBeUndefined();
    await expect(work(gone)).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND' });
    const audit = await auditOf(gone.id);
    expect(audit.map((a) => a.action)).toEqual([
      'tenant.created',
      'tenant.deleted',
      'tenant.erased',
      'tenant.erasure_verified',
    ]);
    // A tombstone without personal data: earlier entries keep what happened and when, not their details.
    expect(audit[0]?.details).toEqual({});
    expect(audit[2]).toMatchObject({
      actor: 'gdpr',
      details: { deleted: { 'public.comments': 6, 'public.items': 3 } },
    });
    expect(audit[3]).toMatchObject({ details: { ok: true, rows: { 'public.comments': 0, 'public.items': 0 } } });
    expect(JSON.stringify(audit)).not.toContain('life-hard');
    // The slug is free again.
    expect((await f.tenantry.tenants.create({ slug: 'life-hard', name: 'Reborn' })).id).not.toBe(gone.id);
  });

  it('hard delete of an already soft-deleted tenant purges it without a second status change', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'life-hard-2', name: 'Hard 2' });
    await f.tenantry.transaction(t, (tx) => tx.query("INSERT INTO items (title) VALUES ('x')"));
    await f.tenantry.tenants.delete(t.id);
    await f.tenantry.tenants.delete(t.id, { hard: true });
    expect(await itemCount(t.id)).toBe(0);
    expect(await f.tenantry.tenants.find(t.id)).toBeUndefined();
    expect((await auditOf(t.id)).map((a) => a.action)).toEqual([
      'tenant.created',
      'tenant.deleted',
      'tenant.erased',
      'tenant.erasure_verified',
    ]);
  });

  it('invalid transitions are INVALID_TENANT_STATE and change nothing', async () => {
    const active = await f.tenantry.tenants.create({ slug: 'life-inv', name: 'Inv' });
    const suspended = await f.tenantry.tenants.create({ slug: 'life-inv-s', name: 'Inv S' });
    await f.tenantry.tenants.suspend(suspended.id);
    const offboarding = await f.tenantry.tenants.create({ slug: 'life-inv-o', name: 'Inv O' });
    await f.tenantry.tenants.offboard(offboarding.id);
    const deleted = await f.tenantry.tenants.create({ slug: 'life-inv-d', name: 'Inv D' });
    await f.tenantry.tenants.delete(deleted.id);
    const before = await snapshot();
    const attempts: [string, () => Promise<unknown>][] = [
      ['resume active', () => f.tenantry.tenants.resume(active.id)],
      ['suspend suspended', () => f.tenantry.tenants.suspend(suspended.id)],
      ['suspend offboarding', () => f.tenantry.tenants.suspend(offboarding.id)],
      ['resume offboarding', () => f.tenantry.tenants.resume(offboarding.id)],
      ['offboard offboarding', () => f.tenantry.tenants.offboard(offboarding.id)],
      ['resume deleted', () => f.tenantry.tenants.resume(deleted.id)],
      ['offboard deleted', () => f.tenantry.tenants.offboard(deleted.id)],
      ['suspend deleted', () => f.tenantry.tenants.suspend(deleted.id)],
    ];
    for (const [what, attempt] of attempts) {
      const error = await attempt().catch((e: unknown) => e);
      expect(error, what).toMatchObject({ code: 'INVALID_TENANT_STATE', status: 409 });
    }
    expect(await snapshot()).toEqual(before);
    expect((await work(active)).rows).toHaveLength(1);
  });

  it('transitions of an unknown tenant are TENANT_NOT_FOUND', async () => {
    await expect(f.tenantry.tenants.suspend('life-never')).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND' });
    await expect(f.tenantry.tenants.delete('life-never', { hard: true })).rejects.toMatchObject({
      code: 'TENANT_NOT_FOUND',
    });
  });
});

describe('update with nothing to change', () => {
  it('is INVALID_INPUT and writes no audit row', async () => {
    const tenantry = f.tenantry;
    const t = await tenantry.tenants.create({ slug: 'noop-update', name: 'Noop' });
    const before = await tenantry.adminPool.query(
      'SELECT count(*)::int AS n FROM tenantry.audit_log WHERE tenant_id = $1',
      [t.id],
    );
    await expect(tenantry.tenants.update(t.id, {})).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    const after = await tenantry.adminPool.query(
      'SELECT count(*)::int AS n FROM tenantry.audit_log WHERE tenant_id = $1',
      [t.id],
    );
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});
