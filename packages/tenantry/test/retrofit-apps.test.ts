import { afterAll, describe, expect, it } from 'vitest';
import {
  applyAll,
  applyUntil,
  cutOverToSecondTenant,
  expectAllInTenant,
  ownership,
  planFile,
} from '../../../test-support/retrofit/exercise.ts';
import { createLegacyApp, type LegacyApp, startWriter } from '../../../test-support/retrofit/harness.ts';

/**
 * Two more applications in their own shapes, each retrofitted while it writes, stopped
 * midway and resumed: a SaaS CRM (JSONB, partial, expression and full-text indexes, a
 * polymorphic reference) and an ERP keyed by composite natural keys with self-references.
 */
interface Case {
  readonly label: string;
  readonly file: string;
  readonly schema: string;
  readonly global: readonly string[];
  readonly stopAfter: number;
  writes(i: number): { text: string; values?: unknown[] };
  /** As the second tenant: a row of its own (must work), and one pointing at the default tenant's row (must fail). */
  readonly own: readonly string[];
  readonly crossReference: string;
  /** The kinds of hazard the plan names, no more, no fewer. */
  readonly hazards: readonly string[];
}

const CASES: Case[] = [
  {
    label: 'retrofit_crm',
    file: 'saas-crm.sql',
    schema: 'crm',
    global: ['currency', 'pipeline_stage'],
    stopAfter: 25,
    writes: (i) =>
      [
        {
          text: `INSERT INTO contact (account_id, last_name, email, custom_fields) VALUES ($1, 'Writer', $2, '{"src": "writer"}')`,
          values: [1 + (i % 800), `w${i}@writer.example`],
        },
        { text: 'UPDATE deal SET stage_id = 1 + stage_id % 5 WHERE id = $1', values: [1 + (i % 2000)] },
        { text: `INSERT INTO note (subject_type, subject_id, body) VALUES ('deal', $1, 'renewal call')`, values: [i] },
        {
          text: `INSERT INTO account (name, domain) VALUES ('Writer', 'w' || $1::int || '-' || pg_backend_pid() || '.example')`,
          values: [i],
        },
        { text: `SELECT count(*) FROM note WHERE search @@ to_tsquery('english', 'renewal')` },
      ][i % 5] as { text: string; values?: unknown[] },
    own: [
      `INSERT INTO account (id, name, domain) VALUES (1, 'Mine', 'account1.example')`,
      `INSERT INTO contact (account_id, last_name) VALUES (1, 'Mine')`,
    ],
    crossReference: `INSERT INTO deal (account_id, stage_id, title, currency) VALUES (2, 1, 'stolen', 'EUR')`,
    hazards: ['SHARED_SEQUENCE', 'UNIQUE_BECOMES_PER_TENANT'],
  },
  {
    label: 'retrofit_erp',
    file: 'natural-keys.sql',
    schema: 'erp',
    global: ['unit'],
    stopAfter: 30,
    writes: (i) =>
      [
        {
          text: `WITH o AS (INSERT INTO orders (year, order_no, customer, taken_by) VALUES (2025, $1, 'Writer', 1 + $1::int % 60) RETURNING year, order_no)
                 INSERT INTO order_line (year, order_no, line_no, sku, qty) SELECT year, order_no, 1, 'SKU-1', 1 FROM o`,
          values: [100_000 + i],
        },
        {
          text: `UPDATE stock SET qty = qty + 1 WHERE warehouse_code = 'NORTH' AND sku = 'SKU-' || $1::int`,
          values: [1 + (i % 500)],
        },
        {
          text: `INSERT INTO employee (emp_no, name, manager_no) VALUES ($1, 'New', 1 + $1::int % 60)`,
          values: [1000 + i],
        },
        { text: `UPDATE category SET name = name || '' WHERE code = 'c1'` },
      ][i % 4] as { text: string; values?: unknown[] },
    own: [
      // The same natural keys as the default tenant's rows: unique per tenant now.
      `INSERT INTO employee (emp_no, name, manager_no) VALUES (1, 'My boss', NULL), (2, 'Me', 1)`,
      `INSERT INTO category (code, parent_code, name) VALUES ('root', NULL, 'Mine')`,
    ],
    crossReference: `INSERT INTO employee (emp_no, name, manager_no) VALUES (3, 'Spy', 5)`,
    hazards: [], // natural keys: no sequence, no convention-named column, no extra unique key
  },
];

const apps: LegacyApp[] = [];
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
});

describe.each(CASES)('retrofit: $file', (c) => {
  it('plans, applies while the application writes, resumes after a stop, and isolates a second tenant', async () => {
    const app = await createLegacyApp(c.label, c.file, c.schema);
    apps.push(app);
    const { plan, text } = await planFile(app, c.global);
    expect([...new Set(plan.hazards.map((h) => h.code))].sort()).toEqual(c.hazards);
    const before = await ownership(app, plan.tenantTables, null);

    const writer = await startWriter(app, c.writes);
    await applyUntil(app, text, c.stopAfter);
    const report = await applyAll(app, text);
    expect(report.skipped).toBe(c.stopAfter);
    const result = await writer.stop();
    expect(result.errors).toEqual([]);
    expect(result.ok).toBeGreaterThan(20);

    const acme = report.defaultTenantId as string;
    const after = await expectAllInTenant(app, plan.tenantTables, before, acme);

    const globex = await cutOverToSecondTenant(app, text, plan.tenantTables);
    await app.tenantry.transaction(globex, async (tx) => {
      for (const statement of c.own) await tx.query(statement);
    });
    await expect(app.tenantry.transaction(globex, (tx) => tx.query(c.crossReference))).rejects.toThrow(/foreign key/);
    const first = plan.tenantTables[0] as string;
    const { rows: acmeRows } = await app.tenantry.query<{ n: number }>(
      'acme',
      `SELECT count(*)::int AS n FROM ${first}`,
    );
    expect(acmeRows[0]?.n).toBe(after[first]?.rows);
  }, 300_000);
});
