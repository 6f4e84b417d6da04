import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { superuserQuery } from '../../../test-support/database.ts';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { exportOf as exportArchive, filesOf, rowsOf, tenantTables } from '../../../test-support/tenant-archive.ts';
import { tenantDatabasePrefix } from '../src/control/connection-url.ts';
import type { IsolationTier, TenantRecord } from '../src/index.ts';

let f: Fixture;

beforeAll(async () => {
  f = await createFixture('data');
});

afterAll(async () => {
  await f?.close();
});

const TIERS: IsolationTier[] = ['pool', 'schema', 'database'];
/** Each import lands in another tier than its export came from. */
const NEXT: Record<IsolationTier, IsolationTier> = { pool: 'schema', schema: 'database', database: 'pool' };

async function seed(t: TenantRecord, items: number, label: string): Promise<void> {
  await f.tenantry.transaction(t, async (tx) => {
    for (let i = 0; i < items; i++) {
      const [item] = await tx.db
        .insertInto('items')
        .values({ title: `${label} ${i}`, description: i % 2 ? null : `it's "quoted" ✓ ${i}` })
        .returning('id')
        .execute();
      for (let c = 0; c < 2; c++) {
        await tx.db
          .insertInto('comments')
          .values({ item_id: item?.id as string, body: `${label} comment ${i}.${c}` })
          .execute();
      }
    }
  });
}

const exportOf = (ref: string) => exportArchive(f.tenantry, ref);

/** Rows carrying `tenantId` in any table with a tenant_id column, in the main database and the tenant's own. */
async function rowsAnywhere(tenantId: string, databases: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const db of databases) {
    const tables = await superuserQuery<{ s: string; t: string }>(
      db,
      `SELECT table_schema AS s, table_name AS t FROM information_schema.columns
        WHERE column_name = 'tenant_id' AND table_schema NOT IN ('pg_catalog', 'information_schema')`,
    );
    for (const { s, t } of tables) {
      const [r] = await superuserQuery<{ n: number }>(
        db,
        `SELECT count(*)::int AS n FROM "${s}"."${t}" WHERE tenant_id = $1`,
        [tenantId],
      );
      if (r && r.n > 0 && !(s === 'tenantry' && (t === 'audit_log' || t.startsWith('audit_log_'))))
        out[`${db}:${s}.${t}`] = r.n;
    }
  }
  return out;
}

/**
 * `rows` without the usage metering tables (`tenantry.tenant_usage_*`): a background flush
 * of B's earlier work may add to them at any time, which is not a change of B's data.
 */
function withoutMetering(rows: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(rows).filter(([table]) => !/:tenantry\.tenant_usage_/.test(table)));
}

/** What an import that fails must leave unchanged. */
async function footprint() {
  const [r] = await superuserQuery<Record<string, number>>(
    f.database.name,
    `SELECT (SELECT count(*)::int FROM tenantry.tenants) AS tenants, (SELECT count(*)::int FROM tenantry.audit_log) AS audit,
            (SELECT count(*)::int FROM public.items) AS items, (SELECT count(*)::int FROM public.comments) AS comments,
            -- A backend's first temporary object creates pg_temp_N/pg_toast_temp_N, which then stay in
            -- the catalog: which backend slot serves a statement is not the import's doing.
            (SELECT count(*)::int FROM pg_namespace WHERE nspname !~ '^pg_(toast_)?temp_') AS schemas,
            -- This installation's databases only: other test files create and drop their own meanwhile.
            (SELECT count(*)::int FROM pg_database WHERE starts_with(datname, $1)) AS databases`,
    [tenantDatabasePrefix(f.database.name)],
  );
  return r;
}

describe.each(TIERS)('%s tier', (tier) => {
  let a: TenantRecord;
  let b: TenantRecord;

  beforeAll(async () => {
    a = await f.tenantry.tenants.create({
      slug: `${tier}-a`,
      name: `A ${tier}`,
      tier,
      plan: 'pro',
      settings: { locale: 'de' },
    });
    b = await f.tenantry.tenants.create({ slug: `${tier}-b`, name: `B ${tier}` });
    await seed(a, 30, `a-${tier}`);
    await seed(b, 5, `b-${tier}`);
    await f.tenantry.roles.define(a.id, 'auditor', ['items:read']);
    await f.tenantry.users.create(a.id, { email: `own-${tier}@a.test`, password: 'correct horse 1', role: 'owner' });
    await f.tenantry.users.create(a.id, { email: `shared-${tier}@a.test`, role: 'auditor' });
    await f.tenantry.users.create(b.id, { email: `shared-${tier}@a.test`, role: 'member' });
    await f.tenantry.apiKeys.create(a.id, { name: 'a', environment: 'test', scopes: ['items:read'] });
    await f.tenantry.apiKeys.create(b.id, { name: 'b', environment: 'test', scopes: ['items:read'] });
  });

  it('export → import into a fresh tenant of another tier: identical row counts and checksums', async () => {
    const { manifest, archive } = await exportOf(a.slug);
    expect(manifest).toMatchObject({ formatVersion: 1, tenant: { id: a.id, tier }, schema: { migrations: 2 } });
    expect(tenantTables(manifest)).toMatchObject({
      items: [30, expect.any(String)],
      comments: [60, expect.any(String)],
    });
    expect(manifest.files.filter((x) => x.kind === 'tenant').map((x) => x.table)).toEqual(['items', 'comments']);

    const before = await rowsAnywhere(b.id, [f.database.name]);
    const report = await f.tenantry.importTenant(Readable.from([archive]), { slug: `${tier}-copy`, tier: NEXT[tier] });
    expect(report.tenant).toMatchObject({ tier: NEXT[tier], plan: 'pro', settings: { locale: 'de' }, name: a.name });
    expect(report.notImported).toEqual(expect.arrayContaining(['users', 'memberships', 'api_keys', 'audit_log']));
    const copy = await exportOf(report.tenant.id);
    expect(tenantTables(copy.manifest)).toEqual(tenantTables(manifest));
    // Ids kept, tenant_id rewritten.
    const [orig, again] = [await filesOf(archive), await filesOf(copy.archive)];
    const ids = (files: Map<string, string>) => rowsOf(files.get('tables/items.ndjson')).map((r) => r.id);
    expect(ids(again)).toEqual(ids(orig));
    expect(new Set(rowsOf(again.get('tables/items.ndjson')).map((r) => r.tenant_id))).toEqual(
      new Set([report.tenant.id]),
    );
    // Custom roles come back; users, memberships and keys do not.
    expect(rowsOf(again.get('control/roles.ndjson')).map((r) => r.name)).toEqual(['auditor']);
    expect(rowsOf(again.get('control/users.ndjson'))).toEqual([]);
    expect(rowsOf(again.get('control/api_keys.ndjson'))).toEqual([]);
    // Importing never touches B.
    expect(withoutMetering(await rowsAnywhere(b.id, [f.database.name]))).toEqual(withoutMetering(before));
  });

  it('an export holds nothing of another tenant, and no hash or secret', async () => {
    const { archive } = await exportOf(a.slug);
    const files = await filesOf(archive);
    const all = [...files.values()].join('\n');
    expect(all).not.toContain(b.id);
    expect(all).not.toContain(`b-${tier}`);
    expect(all).not.toMatch(/password_hash|"hash"|token_hash|\$argon2/);
    expect(rowsOf(files.get('control/users.ndjson')).map((u) => u.email)).toEqual(
      expect.arrayContaining([`own-${tier}@a.test`, `shared-${tier}@a.test`]),
    );
    expect(rowsOf(files.get('control/api_keys.ndjson'))).toHaveLength(1);
    expect(rowsOf(files.get('control/tenants.ndjson'))).toMatchObject([{ id: a.id, slug: a.slug }]);
    expect(rowsOf(files.get('control/audit_log.ndjson')).map((e) => e.action)).toContain('tenant.created');
  });

  it('an export taken while writes go on is one snapshot: no comment without its item', async () => {
    let stop = false;
    const writer = (async () => {
      let n = 0;
      while (!stop) await seed(a, 1, `live-${n++}`);
    })();
    try {
      for (let round = 0; round < 3; round++) {
        const files = await filesOf((await exportOf(a.slug)).archive);
        const items = new Set(rowsOf(files.get('tables/items.ndjson')).map((r) => r.id));
        const comments = rowsOf(files.get('tables/comments.ndjson'));
        expect(comments.filter((c) => !items.has(c.item_id))).toEqual([]);
        expect(comments.length).toBe(items.size * 2);
      }
    } finally {
      stop = true;
      await writer;
    }
  });

  it('import refuses a tampered file and a truncated file, and writes nothing', async () => {
    const { archive } = await exportOf(a.slug);
    const tampered = Buffer.from(archive);
    const at = tampered.indexOf(`a-${tier} 3`);
    expect(at).toBeGreaterThan(0);
    tampered.write('Z', at); // same size, other content: only the SHA-256 can tell
    const before = await footprint();
    await expect(
      f.tenantry.importTenant(Readable.from([tampered]), { slug: `${tier}-tampered` }),
    ).rejects.toMatchObject({ code: 'EXPORT_CHECKSUM_MISMATCH', status: 400 });
    // The last 1,024 bytes are the end-of-archive marker: cut into the data before it.
    for (const cut of [archive.length - 1024 - 100, Math.floor(archive.length / 2), 700]) {
      await expect(
        f.tenantry.importTenant(Readable.from([archive.subarray(0, cut)]), { slug: `${tier}-cut` }),
      ).rejects.toMatchObject({ code: 'EXPORT_TRUNCATED' });
    }
    await expect(
      f.tenantry.importTenant(Readable.from([Buffer.from('not a tar at all')]), { slug: `${tier}-junk` }),
    ).rejects.toMatchObject({ code: expect.stringMatching(/^EXPORT_(INVALID|TRUNCATED)$/) });
    expect(await footprint()).toEqual(before);
  });

  it('hard delete leaves no row anywhere, keeps B and the shared user, and records the verification', async () => {
    const victim = await f.tenantry.tenants.create({ slug: `${tier}-gone`, name: 'Gone', tier });
    await seed(victim, 10, `gone-${tier}`);
    const own = await f.tenantry.users.create(victim.id, { email: `gone-${tier}@v.test`, role: 'owner' });
    const shared = await f.tenantry.users.create(victim.id, { email: `shared-${tier}@a.test`, role: 'member' });
    await f.tenantry.apiKeys.create(victim.id, { name: 'v', environment: 'test', scopes: [] });
    const bBefore = await rowsAnywhere(b.id, [f.database.name]);
    const report = await f.tenantry.eraseTenant(victim.slug, { actor: 'dpo' });

    expect(report.verification.ok).toBe(true);
    expect(Object.values(report.verification.rows).every((n) => n === 0)).toBe(true);
    expect(Object.keys(report.verification.rows)).toEqual(
      expect.arrayContaining(['public.items', 'public.comments', 'tenantry.api_keys', 'tenantry.memberships']),
    );
    expect(Object.values(report.verification.places).every((exists) => !exists)).toBe(true);
    expect(report.deleted).toMatchObject({ 'tenantry.users': 1, 'tenantry.api_keys': 1, 'tenantry.memberships': 2 });
    const databases = [f.database.name, ...(victim.databaseName ? [victim.databaseName] : [])];
    if (victim.databaseName) {
      expect(
        await superuserQuery(f.database.name, 'SELECT 1 FROM pg_database WHERE datname = $1', [victim.databaseName]),
      ).toEqual([]);
    }
    expect(await rowsAnywhere(victim.id, databases.slice(0, 1))).toEqual({});
    const users = await superuserQuery<{ id: string }>(
      f.database.name,
      'SELECT id FROM tenantry.users WHERE id = ANY($1)',
      [[own.id, shared.id]],
    );
    expect(users.map((u) => u.id)).toEqual([shared.id]); // the shared user keeps their account
    expect(withoutMetering(await rowsAnywhere(b.id, [f.database.name]))).toEqual(withoutMetering(bBefore));
    const audit = await superuserQuery<{ action: string; details: Record<string, unknown> }>(
      f.database.name,
      'SELECT action, details FROM tenantry.audit_log WHERE tenant_id = $1 ORDER BY id',
      [victim.id],
    );
    expect(audit.at(-1)).toMatchObject({ action: 'tenant.erasure_verified', details: { ok: true } });
    expect(audit.at(-1)?.details.rows).toEqual(report.verification.rows);
    expect(JSON.stringify(audit)).not.toContain(victim.slug);
  });
});

describe('erasing a tenant that was exported', () => {
  it('an export of a deleted tenant still works; after erasure the tenant is gone', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'exp-then-erase', name: 'E' });
    await seed(t, 3, 'e');
    await f.tenantry.tenants.delete(t.id);
    const { manifest } = await exportOf(t.id);
    expect(tenantTables(manifest)).toMatchObject({ items: [3, expect.any(String)] });
    await f.tenantry.tenants.delete(t.id, { hard: true });
    await expect(f.tenantry.tenants.get(t.id)).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND' });
  });
});

describe.each<IsolationTier>(['pool', 'database'])('import with replace, %s tier', (tier) => {
  it('restores the archive over the tenant: exactly its rows, same slug, the old tenant erased', async () => {
    const t = await f.tenantry.tenants.create({ slug: `${tier}-restore-me`, name: 'R', tier });
    await seed(t, 5, `r-${tier}`);
    const { manifest, archive } = await exportOf(t.slug);
    await seed(t, 3, `after-${tier}`); // written after the backup: must not survive the restore
    const other = await f.tenantry.tenants.create({ slug: `${tier}-bystander`, name: 'X' });
    await seed(other, 2, `x-${tier}`);
    const bystander = tenantTables((await exportOf(other.id)).manifest);

    const report = await f.tenantry.importTenant(Readable.from([archive]), { slug: t.slug, replace: true });
    expect(report.tenant).toMatchObject({ slug: t.slug, status: 'active', tier });
    expect(report.tenant.id).not.toBe(t.id);
    expect(report.replaced).toEqual({ tenantId: t.id });
    const now = await f.tenantry.tenants.get(t.slug);
    expect(now.id).toBe(report.tenant.id);
    expect(tenantTables((await exportOf(t.slug)).manifest)).toEqual(tenantTables(manifest));
    await expect(f.tenantry.tenants.get(t.id)).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND' });
    expect(await rowsAnywhere(t.id, [f.database.name])).toEqual({});
    expect(tenantTables((await exportOf(other.id)).manifest)).toEqual(bystander);
    const renamed = await superuserQuery<{ action: string }>(
      f.database.name,
      `SELECT action FROM tenantry.audit_log WHERE tenant_id = $1 ORDER BY id`,
      [report.tenant.id],
    );
    expect(renamed.map((r) => r.action)).toEqual(['tenant.created', 'tenant.imported', 'tenant.renamed']);
  });

  it('a tampered archive leaves the tenant as it was', async () => {
    const t = await f.tenantry.tenants.create({ slug: `${tier}-keep-me`, name: 'K', tier });
    await seed(t, 4, `k-${tier}`);
    const { archive } = await exportOf(t.slug);
    await seed(t, 1, `k2-${tier}`);
    const before = tenantTables((await exportOf(t.slug)).manifest);
    const tampered = Buffer.from(archive);
    tampered.write('Z', tampered.indexOf(`k-${tier} 2`));
    const footprintBefore = await footprint();
    await expect(
      f.tenantry.importTenant(Readable.from([tampered]), { slug: t.slug, replace: true }),
    ).rejects.toMatchObject({ code: 'EXPORT_CHECKSUM_MISMATCH' });
    expect(await f.tenantry.tenants.get(t.slug)).toMatchObject({ id: t.id, status: 'active' });
    expect(tenantTables((await exportOf(t.slug)).manifest)).toEqual(before);
    expect(await footprint()).toEqual(footprintBefore);
  });

  it('replacing a tenant that does not exist is TENANT_NOT_FOUND, and writes nothing', async () => {
    const { archive } = await exportOf(`${tier}-keep-me`);
    const footprintBefore = await footprint();
    await expect(
      f.tenantry.importTenant(Readable.from([archive]), { slug: `${tier}-nobody`, replace: true }),
    ).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND' });
    expect(await footprint()).toEqual(footprintBefore);
  });
});
