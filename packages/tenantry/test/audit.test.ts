import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry } from '../../../test-support/http.ts';
import { listTenantAudit } from '../src/effects/audit-entries.ts';
import { audit } from '../src/effects/tenant-audit.ts';
import type { Tenantry } from '../src/index.ts';

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
/** A superuser session on the test database: what tampering takes. */
let admin: pg.Client;

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('audit'));
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await tenantry?.close();
  await db?.drop();
});

/** A tenant with `n` data-plane entries after its `tenant.created`; its chain's rows by position. */
async function seeded(slug: string, n = 5): Promise<{ id: string; rows: { id: string; seq: number }[] }> {
  const tenant = await tenantry.tenants.create({ slug, name: slug });
  for (let i = 0; i < n; i++) {
    await tenantry.transaction(tenant, async (tx) => {
      await tx.query('SELECT 1');
      audit(tx, 'item.created', `item:${i}`, { i });
    });
  }
  const { rows } = await admin.query<{ id: string; seq: number }>(
    'SELECT id::text, seq::int FROM tenantry.audit_log WHERE tenant_id = $1 ORDER BY seq',
    [tenant.id],
  );
  return { id: tenant.id, rows };
}

/** Runs `sql` as the superuser with triggers off (what it takes to get past the append-only guard). */
async function tamper(sql: string, values: unknown[]): Promise<void> {
  await admin.query('BEGIN');
  await admin.query('SET LOCAL session_replication_role = replica');
  await admin.query(sql, values);
  await admin.query('COMMIT');
}

async function firstBad(tenantId: string) {
  const report = await tenantry.audit.verify({ tenantId });
  expect(report.ok).toBe(false);
  return report.chains.find((c) => c.tenantId === tenantId)?.firstBad;
}

describe('the audit chain', () => {
  it('chains control-plane and data-plane entries of a tenant, with actor, target and request id', async () => {
    const t = await tenantry.tenants.create({ slug: 'chain-a', name: 'A' });
    await tenantry.transaction({ ...(await contextOf(t.id)), requestId: 'req-1', actor: 'user:u1' }, async (tx) => {
      await tx.query('SELECT 1');
      audit(tx, 'item.created', 'item:1', { title: 'hello' });
    });
    const { rows } = await admin.query(
      'SELECT seq::int, action, actor, target, request_id, details, length(hash) AS len FROM tenantry.audit_log WHERE tenant_id = $1 ORDER BY seq',
      [t.id],
    );
    expect(rows).toMatchObject([
      { seq: 1, action: 'tenant.created', len: 32 },
      {
        seq: 2,
        action: 'item.created',
        actor: 'user:u1',
        target: 'item:1',
        request_id: 'req-1',
        details: { title: 'hello' },
      },
    ]);
    expect((await tenantry.audit.verify({ tenantId: t.id })).ok).toBe(true);
    expect((await tenantry.audit.verify()).ok).toBe(true);
  });

  it('an entry with no other statement opens its own transaction; a failed change leaves no entry', async () => {
    const t = await tenantry.tenants.create({ slug: 'chain-b', name: 'B' });
    await tenantry.transaction(t, async (tx) => audit(tx, 'report.exported', null, {}));
    await expect(
      tenantry.transaction(t, async (tx) => {
        audit(tx, 'item.created', 'item:x');
        await tx.query('SELECT 1/0');
      }),
    ).rejects.toThrow();
    const { rows } = await admin.query('SELECT action FROM tenantry.audit_log WHERE tenant_id = $1 ORDER BY seq', [
      t.id,
    ]);
    expect(rows.map((r) => r.action)).toEqual(['tenant.created', 'report.exported']);
  });

  for (const tier of ['pool', 'schema', 'database'] as const) {
    it(`${tier} tier: a data-plane entry commits where the tenant's rows live, and only its tenant reads it`, async () => {
      const t = await tenantry.tenants.create({ slug: `tier-${tier}`, name: tier, tier });
      const other = await tenantry.tenants.create({ slug: `tier-${tier}-other`, name: tier, tier });
      await tenantry.transaction(t, async (tx) => audit(tx, 'item.created', `item:${tier}`, { tier }));
      const mine = await tenantry.transaction(t, (tx) => listTenantAudit(tx, { action: 'item.created' }));
      expect(mine.entries).toMatchObject([
        { target: `item:${tier}`, metadata: { tier }, seq: tier === 'database' ? 1 : 2 },
      ]);
      const theirs = await tenantry.transaction(other, (tx) => listTenantAudit(tx, { action: 'item.created' }));
      expect(theirs.entries).toEqual([]);
    });
  }

  it('detects an edited entry and names it', async () => {
    const { id, rows } = await seeded('tamper-edit');
    const victim = rows[2];
    await tamper(`UPDATE tenantry.audit_log SET details = '{"i": 99}' WHERE id = $1`, [victim?.id]);
    expect(await firstBad(id)).toEqual({ id: victim?.id, seq: victim?.seq, problem: expect.stringMatching(/changed/) });
  });

  it('an erasure empties details (audit_redact) and the chain still verifies; no other change passes', async () => {
    const { id, rows } = await seeded('redact');
    expect((await admin.query('SELECT tenantry.audit_redact($1) AS n', [id])).rows[0]?.n).toBe(String(rows.length));
    const { rows: after } = await admin.query<{ details: unknown; redacted: boolean }>(
      'SELECT details, redacted FROM tenantry.audit_log WHERE tenant_id = $1',
      [id],
    );
    expect(after.every((r) => r.redacted && JSON.stringify(r.details) === '{}')).toBe(true);
    expect((await tenantry.audit.verify({ tenantId: id })).ok).toBe(true);
    // The flag alone does not let anything else through, and without it the owner is refused.
    await admin.query('BEGIN');
    await admin.query(`SELECT set_config('tenantry.audit_redacting', $1, true)`, [id]);
    await expect(
      admin.query("UPDATE tenantry.audit_log SET actor = 'x', details = '{}', redacted = true WHERE tenant_id = $1", [
        id,
      ]),
    ).rejects.toMatchObject({ code: 'TN006' });
    await admin.query('ROLLBACK');
    await expect(
      admin.query("UPDATE tenantry.audit_log SET details = '{}', redacted = true WHERE tenant_id = $1", [id]),
    ).rejects.toMatchObject({ code: 'TN006' });
    // Marking an entry redacted by hand (triggers off) while keeping details is caught too.
    const victim = rows[1];
    await tamper(`UPDATE tenantry.audit_log SET details = '{"i": 7}' WHERE id = $1`, [victim?.id]);
    expect(await firstBad(id)).toMatchObject({ id: victim?.id, problem: expect.stringMatching(/changed/) });
  });

  it('detects a deleted entry and names the entry after the gap', async () => {
    const { id, rows } = await seeded('tamper-delete');
    await tamper('DELETE FROM tenantry.audit_log WHERE id = $1', [rows[2]?.id]);
    expect(await firstBad(id)).toEqual({
      id: rows[3]?.id,
      seq: rows[3]?.seq,
      problem: `entry ${rows[2]?.seq} before it is missing`,
    });
  });

  it('detects deleted entries at the end of a chain', async () => {
    const { id, rows } = await seeded('tamper-tail');
    const last = rows.at(-1);
    await tamper('DELETE FROM tenantry.audit_log WHERE id = $1', [last?.id]);
    expect(await firstBad(id)).toEqual({
      id: null,
      seq: last?.seq,
      problem: expect.stringMatching(/end of the chain/),
    });
  });

  it('detects an inserted entry, even one whose hash is computed correctly, and names it', async () => {
    const { id, rows } = await seeded('tamper-insert');
    const after = rows[1];
    // A forged entry after entry 2, linked to it and hashed exactly as the trigger would; the
    // trigger would re-chain a plain INSERT at the end, so the forger turns triggers off.
    await admin.query('BEGIN');
    await admin.query('SET LOCAL session_replication_role = replica');
    const { rows: inserted } = await admin.query<{ id: string }>(
      `WITH prev AS (SELECT * FROM tenantry.audit_log WHERE id = $1)
       INSERT INTO tenantry.audit_log (at, actor, tenant_id, action, target, details, details_digest, seq, prev_hash, hash)
       SELECT p.at, 'forger', p.tenant_id, 'item.deleted', 'item:0', '{}', tenantry.audit_details_digest('{}'),
              p.seq + 1, p.hash,
              tenantry.audit_hash(p.hash, p.seq + 1, p.at, p.tenant_id, 'forger', 'item.deleted', 'item:0', NULL,
                                  tenantry.audit_details_digest('{}'))
         FROM prev p RETURNING id::text`,
      [after?.id],
    );
    await admin.query('COMMIT');
    expect(await firstBad(id)).toEqual({
      id: inserted[0]?.id,
      seq: (after?.seq ?? 0) + 1,
      problem: `inserted: a second entry at position ${(after?.seq ?? 0) + 1}`,
    });
  });

  it('detects reordered entries and names the first one out of place', async () => {
    const { id, rows } = await seeded('tamper-reorder');
    const [a, b] = [rows[2], rows[3]];
    await tamper(
      'UPDATE tenantry.audit_log SET seq = CASE WHEN id = $1 THEN $4::bigint ELSE $3::bigint END WHERE id IN ($1, $2)',
      [a?.id, b?.id, a?.seq, b?.seq],
    );
    expect(await firstBad(id)).toEqual({ id: b?.id, seq: a?.seq, problem: expect.stringMatching(/changed/) });
  });

  it('8 concurrent writers of one tenant leave one unbroken chain', async () => {
    const t = await tenantry.tenants.create({ slug: 'chain-concurrent', name: 'C' });
    await Promise.all(
      Array.from({ length: 8 }, (_, w) =>
        (async () => {
          for (let i = 0; i < 10; i++) {
            await tenantry.transaction(t, async (tx) => {
              await tx.query('SELECT 1');
              audit(tx, 'item.created', `item:${w}-${i}`);
            });
          }
        })(),
      ),
    );
    const { rows } = await admin.query(
      'SELECT count(*)::int AS n, count(DISTINCT seq)::int AS d, max(seq)::int AS m FROM tenantry.audit_log WHERE tenant_id = $1',
      [t.id],
    );
    expect(rows[0]).toEqual({ n: 81, d: 81, m: 81 });
    expect((await tenantry.audit.verify({ tenantId: t.id })).ok).toBe(true);
  });
});

describe('append-only', () => {
  it('the runtime role can neither read nor change the log, even inside a tenant transaction', async () => {
    const t = await tenantry.tenants.create({ slug: 'ro-runtime', name: 'R' });
    for (const sql of [
      'SELECT * FROM tenantry.audit_log',
      "UPDATE tenantry.audit_log SET actor = 'x'",
      'DELETE FROM tenantry.audit_log',
      'TRUNCATE tenantry.audit_log',
      "INSERT INTO tenantry.audit_log (actor, action) VALUES ('x', 'y.z')",
    ]) {
      await expect(tenantry.runtimePool.query(sql)).rejects.toMatchObject({ code: '42501' });
      await expect(tenantry.transaction(t, (tx) => tx.query(sql))).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('the owner’s UPDATE, DELETE and TRUNCATE (of the table or a partition) are refused by the trigger', async () => {
    const owner = await tenantry.adminPool.connect();
    try {
      await owner.query(`SET ROLE "${db.roles.owner}"`);
      const { rows } = await owner.query<{ name: string }>(
        "SELECT 'tenantry.audit_log_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM') AS name",
      );
      for (const sql of [
        "UPDATE tenantry.audit_log SET actor = 'x'",
        'DELETE FROM tenantry.audit_log',
        'TRUNCATE tenantry.audit_log',
        `TRUNCATE ${rows[0]?.name}`,
        `DELETE FROM ${rows[0]?.name}`,
        'TRUNCATE tenantry.audit_log_default',
      ]) {
        await expect(owner.query(sql)).rejects.toMatchObject({ code: 'TN006' });
      }
    } finally {
      await owner.query('RESET ROLE');
      owner.release();
    }
  });
});

describe('partitions and retention', () => {
  const monthName = async (offset: number) =>
    (
      await admin.query<{ n: string }>(
        `SELECT 'audit_log_' || to_char((now() AT TIME ZONE 'UTC') + make_interval(months => $1), 'YYYY_MM') AS n`,
        [offset],
      )
    ).rows[0]?.n;
  const exists = async (name: string | undefined) =>
    (await admin.query('SELECT 1 FROM pg_class WHERE relname = $1', [name])).rowCount === 1;

  it('next month’s partition exists before it is needed, and ensure() recreates a missing one', async () => {
    for (const offset of [0, 1, 2, 3]) expect(await exists(await monthName(offset))).toBe(true);
    expect(await tenantry.audit.partitions.ensure()).toBe(0);
    await admin.query(`DROP TABLE tenantry.${await monthName(3)}`);
    expect(await tenantry.audit.partitions.ensure()).toBe(1);
    expect(await exists(await monthName(3))).toBe(true);
  });

  it('an entry of a month without a partition lands in the default partition instead of failing', async () => {
    const t = await tenantry.tenants.create({ slug: 'far-future', name: 'F' });
    await admin.query(
      "INSERT INTO tenantry.audit_log (at, actor, tenant_id, action) VALUES (now() + interval '5 years', 'test', $1, 'late.entry')",
      [t.id],
    );
    const { rows } = await admin.query(
      "SELECT tableoid::regclass::text AS part FROM tenantry.audit_log WHERE tenant_id = $1 AND action = 'late.entry'",
      [t.id],
    );
    expect(rows).toEqual([{ part: 'tenantry.audit_log_default' }]);
    expect((await tenantry.audit.verify({ tenantId: t.id })).ok).toBe(true);
  });

  it('retention removes old months whole, and the chains still verify from their anchors', async () => {
    const t = await tenantry.tenants.create({ slug: 'retention', name: 'R' });
    await admin.query("SELECT tenantry.audit_create_partition(now() - interval '5 months')");
    await admin.query("SELECT tenantry.audit_create_partition(now() - interval '4 months')");
    for (const months of [5, 5, 4]) {
      await admin.query(
        `INSERT INTO tenantry.audit_log (at, actor, tenant_id, action)
         VALUES (now() - make_interval(months => $2), 'test', $1, 'old.entry')`,
        [t.id, months],
      );
    }
    expect((await tenantry.audit.verify({ tenantId: t.id })).ok).toBe(true);
    const removed = await tenantry.audit.partitions.retain({ months: 4, mode: 'detach' });
    expect(removed).toEqual([await monthName(-5)]);
    expect(await exists((await monthName(-5))?.replace('audit_log_', 'audit_archive_'))).toBe(true);
    expect(await tenantry.audit.partitions.retain({ months: 3 })).toEqual([await monthName(-4)]);
    expect(await exists(await monthName(-4))).toBe(false);
    expect((await tenantry.audit.verify({ tenantId: t.id })).ok).toBe(true);
  });
});

async function contextOf(id: string) {
  const { contextOf: of } = await import('../src/control/tenant-record.ts');
  return of(await tenantry.tenants.get(id));
}
