import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { Tenantry } from '../src/index.ts';
import { setupDatabase } from '../src/migrate/setup.ts';
import { KeyRing } from '../src/secrets/keys.ts';

// The control-plane chain without its audit migration: a database as it was before it.
const before = vi.hoisted(() => ({ on: false }));
vi.mock('../src/migrate/control-plane.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/migrate/control-plane.ts')>();
  return {
    ...real,
    controlPlaneMigrations: (runtime: string) => {
      const all = real.controlPlaneMigrations(runtime);
      return before.on
        ? all.slice(
            0,
            all.findIndex((m) => m.id === '0009_audit_chain'),
          )
        : all;
    },
  };
});

let db: TestDatabase;
let tenantry: Tenantry<unknown>;

beforeAll(async () => {
  db = await createTestDatabase('audit_migration');
  tenantry = await Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles });
});

afterAll(async () => {
  await tenantry?.close();
  await db?.drop();
});

describe('migration 0009: the plain audit table becomes the partitioned chain', () => {
  it('keeps every existing row (ids, times, content), chained in the order they were written', async () => {
    before.on = true;
    const client = await tenantry.adminPool.connect();
    try {
      await setupDatabase(client, tenantry.config, new KeyRing(db.secret));
    } finally {
      client.release();
    }
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const tenant = '11111111-1111-4111-8111-111111111111';
      await admin.query(
        `INSERT INTO tenantry.audit_log (at, actor, tenant_id, action, details) VALUES
           (now() - interval '7 months', 'system', $1, 'tenant.created', '{"slug":"old"}'),
           (now() - interval '2 months', 'admin', $1, 'tenant.suspended', '{}'),
           (now() - interval '1 day', 'system', NULL, 'placement.created', '{"name":"eu"}'),
           (now(), 'admin', $1, 'tenant.resumed', '{}')`,
        [tenant],
      );
      const old = await admin.query(
        'SELECT id, at, actor, tenant_id, action, details FROM tenantry.audit_log ORDER BY id',
      );

      before.on = false;
      await tenantry.setup();

      const kept = await admin.query(
        'SELECT id, at, actor, tenant_id, action, details FROM tenantry.audit_log ORDER BY id',
      );
      expect(kept.rows).toEqual(old.rows);
      const { rows: chain } = await admin.query(
        'SELECT seq::int FROM tenantry.audit_log WHERE tenant_id = $1 ORDER BY id',
        [tenant],
      );
      expect(chain.map((r) => r.seq)).toEqual([1, 2, 3]);
      expect((await tenantry.audit.verify()).ok).toBe(true);
      const { rows: kind } = await admin.query(
        "SELECT relkind::text FROM pg_class WHERE oid = 'tenantry.audit_log'::regclass",
      );
      expect(kind[0].relkind).toBe('p');
      // New entries continue after the kept ids.
      await tenantry.tenants.create({ slug: 'after', name: 'After' });
      const { rows: last } = await admin.query('SELECT max(id)::int AS id FROM tenantry.audit_log');
      expect(last[0].id).toBe(Number(old.rows.at(-1).id) + 1);
    } finally {
      await admin.end();
    }
  });
});
