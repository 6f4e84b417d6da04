import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyAll,
  applyUntil,
  cutOverToSecondTenant,
  expectAllInTenant,
  fingerprint,
  ownership,
  planFile,
} from '../../../test-support/retrofit/exercise.ts';
import { createLegacyApp, type LegacyApp, startWriter } from '../../../test-support/retrofit/harness.ts';
import { isTenantryError } from '../src/index.ts';
import { applyRetrofit } from '../src/retrofit/apply.ts';

/**
 * The DVD-rental shop (serial keys, foreign key chains, a partitioned payment table,
 * views, triggers, reference tables) retrofitted while its application keeps renting
 * films; the run is stopped twice — between steps, and by killing the backend of a
 * concurrent index build — and resumed.
 */
let app: LegacyApp;
let twin: LegacyApp;

beforeAll(async () => {
  [app, twin] = await Promise.all([
    createLegacyApp('retrofit_dvd', 'dvd-rental.sql', 'public'),
    createLegacyApp('retrofit_dvd_twin', 'dvd-rental.sql', 'public'),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([app?.close(), twin?.close()]);
});

/** The shop at work: rentals and payments come in, customers and prices change. */
const shop = (i: number) =>
  [
    {
      text: `WITH r AS (INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id)
                      VALUES (now() + $1::int * interval '1 millisecond', 1 + $1::int % 3000, 1 + $1::int % 600, 1) RETURNING *)
             INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
             SELECT customer_id, staff_id, rental_id, 2.99, now() FROM r`,
      values: [i],
    },
    { text: 'UPDATE customer SET active = NOT active WHERE customer_id = $1', values: [1 + (i % 600)] },
    { text: 'UPDATE film SET rental_rate = rental_rate + 0.01 WHERE film_id = $1', values: [1 + (i % 1000)] },
    {
      text: `INSERT INTO customer (store_id, first_name, last_name, email, address_id)
             VALUES (1, 'New', 'Customer', 'new' || $1 || '-' || pg_backend_pid() || '@example.com', 10)`,
      values: [i],
    },
    { text: 'SELECT count(*) FROM film_list WHERE price > 0' },
  ][i % 5] as { text: string; values?: unknown[] };

describe('retrofit: DVD rental', () => {
  it('plans, applies while the shop writes, resumes after two kills, and isolates a second tenant', async () => {
    const { plan, text } = await planFile(app, ['country', 'language']);
    expect(plan.globalTables.map((g) => g.table)).toEqual(['public.country', 'public.language']);
    expect(plan.tenantTables).toContain('public.payment');
    expect(plan.tenantTables).not.toContain('public.payment_p2022_01');
    expect(plan.legacyRoles).toEqual([app.legacyRole]);
    expect(plan.hazards.map((h) => h.code)).toEqual(
      expect.arrayContaining(['VIEW_BYPASSES_RLS', 'TRIGGER_WRITES_ACROSS_TABLES', 'PARTITIONED_TABLE']),
    );
    // Concurrent builds are alone in their step; every step says why and what it costs.
    for (const s of plan.steps) {
      expect(s.why.length, `step ${s.n}`).toBeGreaterThan(20);
      expect(s.estimate, `step ${s.n}`).not.toBe('');
      if (s.sql.includes('CONCURRENTLY')) expect(s.mode).toBe('concurrent');
    }
    const before = await ownership(app, plan.tenantTables, null);

    const writer = await startWriter(app, shop);
    await applyUntil(app, text, 40); // stopped between steps, inside the backfills

    // A kill during CREATE INDEX CONCURRENTLY: a transaction of the shop's holds the build
    // up, the build's backend is terminated, and an INVALID index stays behind.
    const admin = app.tenantry.adminPool;
    const blocker = await app.legacyClient();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE customer IN ROW EXCLUSIVE MODE');
    const killed = applyRetrofit(app.tenantry, text, { batchRows: 500 });
    let terminated = false;
    for (let i = 0; i < 600 && !terminated; i++) {
      const { rows } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%customer%' AND wait_event_type = 'Lock'`,
      );
      if (rows[0]) terminated = (await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid])).rowCount === 1;
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(terminated).toBe(true);
    await expect(killed).rejects.toSatisfy((e) => isTenantryError(e, 'RETROFIT_STEP_FAILED'));
    await blocker.query('ROLLBACK');
    await blocker.end();
    const { rows: invalid } = await admin.query(
      `SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid AND c.relname LIKE 'customer%tenant'`,
    );
    expect(invalid.length).toBe(1);

    const report = await applyAll(app, text);
    expect(report.skipped).toBeGreaterThan(40);
    expect(report.rollback).toContain('-- undo step');
    const result = await writer.stop();
    expect(result.errors).toEqual([]);
    expect(result.ok).toBeGreaterThan(50);

    // Every row, old or written during the retrofit, is the default tenant's.
    const acme = report.defaultTenantId as string;
    const after = await expectAllInTenant(app, plan.tenantTables, before, acme);

    // Deployed on the runtime role with the default tenant: it sees what the shop sees.
    const seen = await app.tenantry.query<{ n: number }>('acme', 'SELECT count(*)::int AS n FROM rental');
    expect(seen.rows[0]?.n).toBe(after['public.rental']?.rows);

    const globex = await cutOverToSecondTenant(app, text, plan.tenantTables);
    await app.tenantry.transaction(globex, async (tx) => {
      expect((await tx.query('UPDATE film SET title = $1 WHERE film_id = 1', ['stolen'])).rowCount).toBe(0);
      expect((await tx.query('DELETE FROM customer WHERE customer_id = 1')).rowCount).toBe(0);
      await tx.query(`INSERT INTO actor (first_name, last_name) VALUES ('Own', 'Actor')`);
    });
    // Pointing at the default tenant's rows, or writing them, fails.
    await expect(
      app.tenantry.transaction(globex, (tx) => tx.query(`INSERT INTO inventory (film_id, store_id) VALUES (1, 1)`)),
    ).rejects.toThrow(/foreign key/);
    await expect(
      app.tenantry.transaction(globex, (tx) =>
        tx.query(`INSERT INTO actor (tenant_id, first_name, last_name) VALUES ($1, 'Planted', 'Actor')`, [acme]),
      ),
    ).rejects.toThrow(/row-level security/);
    const acmeActors = await app.tenantry.query<{ n: number }>(
      'acme',
      `SELECT count(*)::int AS n FROM actor WHERE first_name = 'Own'`,
    );
    expect(acmeActors.rows[0]?.n).toBe(0);

    // The twin, retrofitted in one uninterrupted run, ends in the same state.
    const other = await planFile(twin, ['country', 'language']);
    await applyAll(twin, other.text);
    await applyAll(twin, other.text, 'cutover');
    const normal = (a: LegacyApp, lines: string[]) =>
      lines.map((l) =>
        l
          .replaceAll(a.database.roles.owner, '<owner>')
          .replaceAll(a.database.roles.runtime, '<runtime>')
          .replaceAll(a.legacyRole, '<app>'),
      );
    expect(normal(app, await fingerprint(app))).toEqual(normal(twin, await fingerprint(twin)));
  }, 300_000);
});
