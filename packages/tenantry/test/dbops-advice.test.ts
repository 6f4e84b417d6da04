import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPostgresCluster,
  type PostgresCluster,
  systemPostgresBinDir,
} from '../../../test-support/postgres-cluster.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { Tenantry } from '../src/index.ts';

// Slow statements and index advice need pg_stat_statements preloaded, which the shared
// server must not be reconfigured for: a cluster of this file's own, with the system
// PostgreSQL's binaries when there are any (hypopg is a system package: postgresql-15-hypopg,
// which .ci/run installs), else the embedded ones (pg_stat_statements only).

const binDir = systemPostgresBinDir();
const hypopgInstalled =
  binDir !== null &&
  existsSync(join('/usr/share/postgresql', binDir.split('/').at(-2) ?? '', 'extension', 'hypopg.control'));
if (!hypopgInstalled) {
  console.warn(
    'dbops-advice: hypopg is not installed (apt-get install postgresql-15-hypopg): the hypothetical-index check is skipped',
  );
}

let cluster: PostgresCluster;
let tenantry: Tenantry;
let acme: { id: string };

beforeAll(async () => {
  cluster = await createPostgresCluster({
    settings: { shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track': 'all' },
    ...(hypopgInstalled && binDir ? { binDir } : {}),
  });
  tenantry = await Tenantry.connect({
    databaseUrl: cluster.url(),
    secret: randomBytes(32).toString('hex'),
    migrations: itemsMigrations,
  });
  await tenantry.setup();
  await tenantry.migrate();
  acme = await tenantry.tenants.create({ slug: 'adv-acme', name: 'Acme' });
  const globex = await tenantry.tenants.create({ slug: 'adv-globex', name: 'Globex' });
  // 40,000 items over two tenants, titles nearly unique: finding one by title means reading
  // the tenant's half of the table unless an index leads with (tenant_id, title).
  await tenantry.adminPool.query(
    `INSERT INTO public.items (tenant_id, title)
     SELECT CASE WHEN g % 2 = 0 THEN $1::uuid ELSE $2::uuid END, 'title ' || g FROM generate_series(1, 40000) g`,
    [acme.id, globex.id],
  );
  await tenantry.adminPool.query('ANALYZE public.items');
}, 120_000);

afterAll(async () => {
  await tenantry?.close();
  await cluster?.destroy();
});

describe('slow statements and index advice', () => {
  it('without the extension created, says so plainly', async () => {
    const report = await tenantry.dbops.slowQueries();
    expect(report).toMatchObject({ available: false, statements: [] });
    expect(report.reason).toMatch(/CREATE EXTENSION pg_stat_statements/);
  });

  it('lists the planted slow statement and proposes the (tenant_id, title) index; hypopg confirms the lower cost', async () => {
    await tenantry.adminPool.query('CREATE EXTENSION pg_stat_statements');
    if (hypopgInstalled) await tenantry.adminPool.query('CREATE EXTENSION hypopg');
    for (let i = 0; i < 20; i++) {
      await tenantry.query(acme.id, 'SELECT id FROM items WHERE tenant_id = $1 AND title = $2', [
        acme.id,
        `title ${i * 2}`,
      ]);
    }
    const slow = await tenantry.dbops.slowQueries({ limit: 50 });
    expect(slow.available).toBe(true);
    const planted = slow.statements.find((s) => s.query === 'SELECT id FROM items WHERE tenant_id = $1 AND title = $2');
    expect(planted?.calls).toBe(20);
    expect(planted?.meanMs).toBeGreaterThan(0);

    const advice = await tenantry.dbops.adviseIndexes({ limit: 50 });
    expect(advice.available).toBe(true);
    expect(advice.hypopg).toBe(hypopgInstalled);
    const suggestion = advice.suggestions.find((s) => s.statement.queryId === planted?.queryId);
    expect(suggestion).toMatchObject({
      table: 'public.items',
      columns: ['tenant_id', 'title'],
      sql: 'CREATE INDEX CONCURRENTLY "items_tenant_id_title_idx" ON "public"."items" ("tenant_id", "title")',
    });
    if (!hypopgInstalled) {
      console.warn('dbops-advice: skipped the hypopg cost check (hypopg not installed)');
      return;
    }
    expect(suggestion?.hypothetical?.used).toBe(true);
    expect(suggestion?.hypothetical?.costAfter).toBeLessThan((suggestion?.costBefore ?? 0) / 10);
    // Nothing was created: the index was hypothetical.
    const { rowCount } = await tenantry.adminPool.query(
      "SELECT 1 FROM pg_class WHERE relname = 'items_tenant_id_title_idx'",
    );
    expect(rowCount).toBe(0);

    // Built for real (the suggestion's own SQL), the advice no longer proposes it.
    await tenantry.adminPool.query(suggestion?.sql ?? '');
    const after = await tenantry.dbops.adviseIndexes({ limit: 50 });
    expect(
      after.suggestions.filter((s) => s.table === 'public.items' && s.columns.join() === 'tenant_id,title'),
    ).toEqual([]);
  });
});
