import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { appMigrations } from '../../../test-support/fixture.ts';
import { tenantDatabasePrefix } from '../src/control/connection-url.ts';
import { isTenantryError, type TenantRecord, Tenantry } from '../src/index.ts';

/**
 * The acceptance test for the pool map: 60 database-tier tenants used at once
 * under a global budget of 20 connections. stancl/tenancy runs out of connections at 70
 * tenant databases; here PostgreSQL never sees more than the budget.
 */
let db: TestDatabase;
let tenantry: Tenantry;
const tenants: TenantRecord[] = [];

beforeAll(async () => {
  db = await createTestDatabase('budget');
  tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: appMigrations,
    tenantDatabases: { max: 20, perDatabase: 3, acquireTimeoutMs: 10_000, idleTimeoutMs: 60_000 },
  });
  await tenantry.setup();
  await tenantry.migrate();
  // Four at a time: each is a CREATE DATABASE from the placement's template.
  for (let i = 0; i < 60; i += 4) {
    const batch = [i, i + 1, i + 2, i + 3].map((n) =>
      tenantry.tenants.create({ slug: `budget-${n}`, name: `B ${n}`, tier: 'database' }),
    );
    tenants.push(...(await Promise.all(batch)));
  }
}, 240_000);

afterAll(async () => {
  await tenantry?.close();
  await db?.drop();
});

it('60 tenant databases used concurrently never hold more than 20 connections', async () => {
  const prefix = `${tenantDatabasePrefix(db.name)}_t_`;
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const { rows } = await tenantry.adminPool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE left(datname, length($1)) = $1 AND usename = $2',
        [prefix, db.roles.runtime],
      );
      peak = Math.max(peak, rows[0]?.n ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
  })();
  let served = 0;
  let timedOut = 0;
  const requests = Array.from({ length: 600 }, async (_, i) => {
    const t = tenants[i % tenants.length] as TenantRecord;
    try {
      const { rows } = await tenantry.transaction(t, (tx) =>
        tx.query<{ db: string; n: string }>(
          'SELECT current_database() AS db, (SELECT count(*) FROM items)::text AS n, pg_sleep(0.01) IS NULL AS slept',
        ),
      );
      expect(rows[0]?.db).toBe(t.databaseName); // a connection never serves another tenant's database
      served++;
    } catch (error) {
      if (!isTenantryError(error, 'POOL_EXHAUSTED')) throw error;
      timedOut++;
    }
  });
  await Promise.all(requests);
  sampling = false;
  await sampler;
  expect(served + timedOut).toBe(600);
  expect(served).toBeGreaterThan(0);
  expect(peak).toBeGreaterThan(0);
  expect(peak).toBeLessThanOrEqual(20);
  const stats = tenantry.poolMap.stats();
  expect(stats.connectionsOpen).toBeLessThanOrEqual(20);
  expect(stats.evictions).toBeGreaterThan(0);
  console.log(
    `budget: ${served} served, ${timedOut} timed out, peak ${peak} connections, ${stats.evictions} evictions`,
  );
}, 120_000);
