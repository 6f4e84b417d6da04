import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry } from '../../../test-support/http.ts';
import type { MaintenanceProgress } from '../src/dbops/maintenance-progress.ts';
import type { Tenantry } from '../src/index.ts';

// Database reports and maintenance on a database of this file's own: planted tables with an
// unused index, a duplicate index and dead tuples; VACUUM, REINDEX CONCURRENTLY, the
// per-target lock, cancellation, progress, audit entries, and the fleet run over the schema
// and database tiers.

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let admin: pg.Client;

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('dbops'));
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query(`
    CREATE TABLE public.dbops_dead (id int PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
    INSERT INTO public.dbops_dead SELECT g, 'note ' || g FROM generate_series(1, 20000) g;
    CREATE INDEX dbops_dead_note_idx ON public.dbops_dead (note);
    CREATE TABLE public.dbops_dup (id int PRIMARY KEY, a int, b int);
    CREATE INDEX dbops_dup_ab_1 ON public.dbops_dup (a, b);
    CREATE INDEX dbops_dup_ab_2 ON public.dbops_dup (a, b);
    DELETE FROM public.dbops_dead WHERE id % 10 <> 0;
    SELECT pg_stat_force_next_flush();
    CREATE TABLE public.dbops_foreign (id int);`);
  // Tenant tables belong to the owner role, which maintenance runs as (dbops_foreign does not).
  for (const t of ['dbops_dead', 'dbops_dup'])
    await admin.query(`ALTER TABLE public.${t} OWNER TO "${db.roles.owner}"`);
});

afterAll(async () => {
  await admin?.end();
  await tenantry?.close();
  await db?.drop();
});

async function dbEntries(action: string) {
  const { rows } = await admin.query<{
    actor: string;
    tenant_id: string | null;
    target: string;
    details: Record<string, unknown>;
  }>('SELECT actor, tenant_id, target, details FROM tenantry.audit_log WHERE action = $1 ORDER BY id', [action]);
  return rows;
}

describe('database reports', () => {
  it('health: connected, connections within max_connections, the pool map, wraparound age, no problem invented', async () => {
    const health = await tenantry.dbops.health();
    expect(health.connected).toBe(true);
    expect(health.connections.used).toBeGreaterThan(0);
    expect(health.connections.max).toBeGreaterThanOrEqual(health.connections.used);
    expect(health.poolMap).toMatchObject({ waiters: 0 });
    expect(health.wraparound.xidAge).toBeGreaterThan(0);
    expect(health.inRecovery).toBe(false);
  });

  it('health: an idle-in-transaction session and a blocked one are reported', async () => {
    const holder = new pg.Client({ connectionString: db.url, application_name: 'dbops-holder' });
    const waiter = new pg.Client({ connectionString: db.url });
    await holder.connect();
    await waiter.connect();
    try {
      await holder.query('BEGIN; LOCK TABLE public.dbops_dup IN ACCESS EXCLUSIVE MODE');
      const blocked = waiter.query('SELECT count(*) FROM public.dbops_dup').catch(() => {});
      await new Promise((r) => setTimeout(r, 1200));
      const health = await tenantry.dbops.health({ longRunningSeconds: 1 });
      expect(health.idleInTransaction.map((s) => s.applicationName)).toContain('dbops-holder');
      expect(health.blocked.some((b) => b.query.includes('dbops_dup'))).toBe(true);
      expect(health.status).toBe('warning');
      await holder.query('ROLLBACK');
      await blocked;
    } finally {
      await holder.end();
      await waiter.end();
    }
  });

  it('stats: finds the unused index, the duplicate indexes and the table full of dead tuples', async () => {
    const stats = await tenantry.dbops.stats();
    expect(stats.unusedIndexes.map((i) => i.index)).toContain('public.dbops_dead_note_idx');
    // Primary keys enforce something: never "unused".
    expect(stats.unusedIndexes.map((i) => i.index)).not.toContain('public.dbops_dead_pkey');
    expect(stats.duplicateIndexes).toContainEqual(['public.dbops_dup_ab_1', 'public.dbops_dup_ab_2'].sort());
    const dead = stats.deadTupleHeavy.find((t) => t.table === 'public.dbops_dead');
    expect(dead?.deadRows).toBe(18000);
    expect(dead?.liveRows).toBe(2000);
    expect(dead?.lastVacuum).toBeNull();
    expect(stats.cacheHitRatio).toBeGreaterThan(0);
  });
});

describe('maintenance', () => {
  it('vacuum clears the dead tuples, runs as the owner role, and is audited', async () => {
    const report = await tenantry.dbops.maintain({ operation: 'vacuum', tables: ['dbops_dead'], actor: 'test:ops' });
    expect(report.statements).toEqual(['VACUUM (ANALYZE) "public"."dbops_dead"']);
    const stats = await tenantry.dbops.stats();
    const table = stats.tables.find((t) => t.table === 'public.dbops_dead');
    expect(table?.deadRows).toBe(0);
    expect(table?.lastVacuum).not.toBeNull();
    expect(stats.deadTupleHeavy.map((t) => t.table)).not.toContain('public.dbops_dead');
    const [entry] = await dbEntries('db.vacuum');
    expect(entry).toMatchObject({
      actor: 'test:ops',
      tenant_id: null,
      target: 'db:shared',
      details: { outcome: 'completed', statements: report.statements },
    });
  });

  it('never VACUUM FULL unless asked; bad names and unknown tables change nothing', async () => {
    const full = await tenantry.dbops.maintain({
      operation: 'vacuum',
      full: true,
      tables: ['dbops_dup'],
      actor: 'test:ops',
    });
    expect(full.statements).toEqual(['VACUUM (FULL, ANALYZE) "public"."dbops_dup"']);
    await expect(
      tenantry.dbops.maintain({ operation: 'vacuum', tables: ['x; DROP TABLE items'], actor: 'test:ops' }),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(
      tenantry.dbops.maintain({ operation: 'analyze', tables: ['nope'], actor: 'test:ops' }),
    ).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    // VACUUM would only warn and skip a table the owner role does not own: refused instead.
    await expect(
      tenantry.dbops.maintain({ operation: 'vacuum', tables: ['dbops_foreign'], actor: 'test:ops' }),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('not owned by the owner role') });
    await expect(tenantry.dbops.maintain({ operation: 'drop' as 'analyze', actor: 'test:ops' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });

  it('one at a time per target: a second run is refused while one holds the target', async () => {
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      await other.query("SELECT pg_advisory_lock(hashtext('tenantry:maintenance:shared'))");
      await expect(tenantry.dbops.maintain({ operation: 'analyze', actor: 'test:ops' })).rejects.toMatchObject({
        code: 'MAINTENANCE_IN_PROGRESS',
      });
    } finally {
      await other.end();
    }
    await expect(
      tenantry.dbops.maintain({ operation: 'analyze', tables: ['dbops_dup'], actor: 'test:ops' }),
    ).resolves.toMatchObject({
      statements: ['ANALYZE "public"."dbops_dup"'],
    });
  });

  it('cancel: aborting cancels its own backend, audits "cancelled", and frees the target', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN; LOCK TABLE public.dbops_dup IN ACCESS EXCLUSIVE MODE');
      const controller = new AbortController();
      const run = tenantry.dbops.maintain({
        operation: 'analyze',
        tables: ['dbops_dup'],
        actor: 'test:cancel',
        signal: controller.signal,
      });
      await new Promise((r) => setTimeout(r, 500)); // ANALYZE waits for the lock
      controller.abort();
      await expect(run).rejects.toMatchObject({ code: 'MAINTENANCE_CANCELLED' });
      // The holder's lock is untouched: only the run's own backend was cancelled.
      await holder.query('SELECT 1');
      await holder.query('ROLLBACK');
    } finally {
      await holder.end();
    }
    const entries = (await dbEntries('db.analyze')).filter((e) => e.actor === 'test:cancel');
    expect(entries).toMatchObject([{ details: { outcome: 'cancelled' } }]);
    await expect(
      tenantry.dbops.maintain({ operation: 'analyze', tables: ['dbops_dup'], actor: 'test:ops' }),
    ).resolves.toBeTruthy();
  });

  it('REINDEX CONCURRENTLY reports its progress while it waits for writers, then completes', async () => {
    const writer = new pg.Client({ connectionString: db.url });
    await writer.connect();
    const seen: MaintenanceProgress[] = [];
    try {
      await writer.query('BEGIN; INSERT INTO public.dbops_dup VALUES (1, 1, 1)');
      const run = tenantry.dbops.maintain({
        operation: 'reindex',
        tables: ['dbops_dup'],
        actor: 'test:ops',
        onProgress: (p) => seen.push(p),
      });
      for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      await writer.query('COMMIT');
      const report = await run;
      expect(report.statements).toEqual(['REINDEX TABLE CONCURRENTLY "public"."dbops_dup"']);
    } finally {
      await writer.end();
    }
    expect(seen[0]).toMatchObject({ command: 'reindex', relation: 'dbops_dup' });
    expect(seen[0]?.phase).toMatch(/waiting/);
    const stats = await tenantry.dbops.stats();
    expect(stats.invalidIndexes).toEqual([]);
  });

  it('create-indexes: builds the tenant-leading index doctor finds missing, CONCURRENTLY', async () => {
    await admin.query(`
      CREATE TABLE public.dbops_notes (tenant_id uuid NOT NULL, id uuid NOT NULL, body text, PRIMARY KEY (id));
      ALTER TABLE public.dbops_notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
      ALTER TABLE public.dbops_notes OWNER TO "${db.roles.owner}";`);
    const before = await tenantry.doctor();
    expect(before.findings.filter((f) => f.code === 'NO_TENANT_INDEX').map((f) => f.table)).toEqual([
      'public.dbops_notes',
    ]);
    const report = await tenantry.dbops.maintain({ operation: 'create-indexes', actor: 'test:ops' });
    expect(report.statements).toEqual([
      'CREATE INDEX CONCURRENTLY "dbops_notes_tenant_id_idx" ON "public"."dbops_notes" ("tenant_id")',
    ]);
    const after = await tenantry.doctor();
    expect(after.findings.filter((f) => f.code === 'NO_TENANT_INDEX')).toEqual([]);
    await admin.query('DROP TABLE public.dbops_notes');
  });

  it('partitions: creates the audit log months ahead', async () => {
    const report = await tenantry.dbops.maintain({ operation: 'partitions', actor: 'test:ops' });
    expect(report.statements).toEqual(['SELECT tenantry.audit_ensure_partitions(3)']);
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'tenantry.audit_log'::regclass`,
    );
    expect(rows[0]?.n).toBeGreaterThanOrEqual(4);
  });
});

describe('fleet maintenance', () => {
  it('runs on every tenant schema and database, bounded, each target audited for its tenant', async () => {
    const s = await tenantry.tenants.create({ slug: 'ops-schema', name: 'S', tier: 'schema' });
    const d = await tenantry.tenants.create({ slug: 'ops-db', name: 'D', tier: 'database' });
    for (const t of [s, d])
      await tenantry.query(t, 'INSERT INTO items (tenant_id, title) VALUES ($1, $2)', [t.id, 'x']);
    const progress: number[] = [];
    const report = await tenantry.dbops.maintainFleet(
      { operation: 'analyze', tables: ['items'], actor: 'test:fleet' },
      { concurrency: 2, onTarget: (done) => progress.push(done) },
    );
    expect(report.failed).toEqual([]);
    expect(report.total).toBe(2);
    expect(report.completed.map((c) => c.target).sort()).toEqual(
      (
        await admin.query<{ id: string }>(
          "SELECT id FROM tenantry.targets WHERE kind IN ('schema', 'database') AND state = 'active' ORDER BY id",
        )
      ).rows.map((r) => r.id),
    );
    expect(progress).toEqual([0, 1, 2]);
    const entries = (await dbEntries('db.analyze')).filter((e) => e.actor === 'test:fleet');
    expect(entries.map((e) => e.tenant_id).sort()).toEqual([s.id, d.id].sort());
    // One tenant's maintenance, named by slug, reaches only its own copy of the tables.
    const one = await tenantry.dbops.maintain({
      operation: 'vacuum',
      tables: ['items'],
      actor: 'test:one',
      tenant: 'ops-db',
    });
    expect(one.target).toMatch(/^database\//);
    // Vacuuming the schema tenant's copy leaves every other copy of items alone.
    const before = await admin.query<{ schemaname: string; last_vacuum: Date | null }>(
      "SELECT schemaname, last_vacuum FROM pg_stat_user_tables WHERE relname = 'items' ORDER BY schemaname",
    );
    const mine = await tenantry.dbops.maintain({
      operation: 'vacuum',
      tables: ['items'],
      actor: 'test:one',
      tenant: s.slug,
    });
    const schema = mine.target.split('/').at(-1) as string;
    expect(mine.statements).toEqual([`VACUUM (ANALYZE) "${schema}"."items"`]);
    const after = await admin.query<{ schemaname: string; last_vacuum: Date | null }>(
      "SELECT schemaname, last_vacuum FROM pg_stat_user_tables WHERE relname = 'items' ORDER BY schemaname",
    );
    for (const row of after.rows) {
      const was = before.rows.find((r) => r.schemaname === row.schemaname)?.last_vacuum ?? null;
      if (row.schemaname === schema) expect(row.last_vacuum).not.toEqual(was);
      else expect(row.last_vacuum).toEqual(was);
    }
    expect(after.rows.map((r) => r.schemaname)).toContain('public');
    await expect(
      tenantry.dbops.maintain({ operation: 'partitions', tenant: 'ops-db', actor: 'test:one' }),
    ).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });
});
