import pg from 'pg';
import { expect } from 'vitest';
import { isTenantryError, type TenantRecord } from '../../packages/tenantry/src/index.ts';
import { type ApplyReport, applyRetrofit } from '../../packages/tenantry/src/retrofit/apply.ts';
import { planRetrofit } from '../../packages/tenantry/src/retrofit/plan.ts';
import { parsePlan, planId, renderPlan } from '../../packages/tenantry/src/retrofit/plan-file.ts';
import type { RetrofitPlan } from '../../packages/tenantry/src/retrofit/plan-step.ts';
import type { LegacyApp } from './harness.ts';

/** Plans `app` with `global`, and checks the file reads back as the same plan. */
export async function planFile(
  app: LegacyApp,
  global: readonly string[],
): Promise<{ plan: RetrofitPlan; text: string }> {
  const { roles } = app.tenantry.config;
  const plan = await planRetrofit(app.tenantry.adminPool, {
    schema: app.schema,
    global,
    defaultTenant: 'acme',
    ownerRole: roles.owner,
    runtimeRole: roles.runtime,
  });
  const text = renderPlan(plan);
  const back = parsePlan(text);
  expect(planId(back)).toBe(planId(plan));
  expect(back.steps).toEqual(plan.steps);
  return { plan, text };
}

/** Applies `text`, stopping (as a kill would) once `stopAfter` steps of this run are done. */
export async function applyUntil(app: LegacyApp, text: string, stopAfter: number): Promise<void> {
  const controller = new AbortController();
  let done = 0;
  const run = applyRetrofit(app.tenantry, text, {
    batchRows: 500,
    signal: controller.signal,
    onProgress: (p) => {
      if (p.state === 'done' && ++done === stopAfter) controller.abort();
    },
  });
  await expect(run).rejects.toSatisfy((e) => isTenantryError(e, 'RETROFIT_INTERRUPTED'));
}

/** Applies `text` to the end, checking doctor finds no error. */
export async function applyAll(
  app: LegacyApp,
  text: string,
  phase: 'retrofit' | 'cutover' = 'retrofit',
): Promise<ApplyReport> {
  const report = await applyRetrofit(app.tenantry, text, { batchRows: 500, phase });
  const errors = report.doctor?.findings.filter((f) => f.severity === 'error') ?? [];
  expect(errors.map((f) => `${f.code} ${f.table}: ${f.message}`)).toEqual([]);
  return report;
}

/** Row counts of `tables` (admin, so every row), and how many are not `tenantId`'s (null: before the retrofit). */
export async function ownership(
  app: LegacyApp,
  tables: readonly string[],
  tenantId: string | null,
): Promise<Record<string, { rows: number; others: number }>> {
  const out: Record<string, { rows: number; others: number }> = {};
  const c = new pg.Client({ connectionString: app.database.url });
  await c.connect();
  try {
    for (const t of tables) {
      const [schema, name] = t.split('.') as [string, string];
      const { rows } = await c.query<{ rows: number; others: number }>(
        tenantId === null
          ? `SELECT count(*)::int AS rows, 0 AS others FROM "${schema}"."${name}"`
          : `SELECT count(*)::int AS rows, count(*) FILTER (WHERE tenant_id IS DISTINCT FROM $1)::int AS others FROM "${schema}"."${name}"`,
        tenantId === null ? [] : [tenantId],
      );
      out[t] = rows[0] as { rows: number; others: number };
    }
  } finally {
    await c.end();
  }
  return out;
}

/**
 * Checks that every row of `tables` — those from before (`before`) and those the old
 * application wrote meanwhile — now belongs to `tenantId`; returns the counts after.
 */
export async function expectAllInTenant(
  app: LegacyApp,
  tables: readonly string[],
  before: Record<string, { rows: number }>,
  tenantId: string,
): Promise<Record<string, { rows: number; others: number }>> {
  const after = await ownership(app, tables, tenantId);
  for (const t of tables) {
    expect(after[t]?.others, t).toBe(0);
    expect(after[t]?.rows, t).toBeGreaterThanOrEqual(before[t]?.rows ?? 0);
  }
  return after;
}

/**
 * Cuts over, creates a second tenant and checks it sees none of `tables`' rows and deletes
 * none of them; returns the tenant for further cross-tenant checks.
 */
export async function cutOverToSecondTenant(
  app: LegacyApp,
  text: string,
  tables: readonly string[],
): Promise<TenantRecord> {
  await applyAll(app, text, 'cutover');
  const second = await app.tenantry.tenants.create({ slug: 'globex', name: 'Globex' });
  await app.tenantry.transaction(second, async (tx) => {
    for (const t of tables) {
      const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t}`);
      expect(rows[0]?.n, t).toBe(0);
      expect((await tx.query(`DELETE FROM ${t}`)).rowCount, t).toBe(0);
    }
  });
  return second;
}

/** A fingerprint of the retrofitted schema: keys, indexes, policies, owners and RLS flags. */
export async function fingerprint(app: LegacyApp): Promise<string[]> {
  const { rows } = await app.tenantry.adminPool.query<{ line: string }>(
    `SELECT 'con ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid) AS line
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1
     UNION ALL
     SELECT 'idx ' || pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid
       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1
     UNION ALL
     SELECT 'pol ' || tablename || ' ' || policyname || ' ' || roles::text || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
       FROM pg_policies WHERE schemaname = $1
     UNION ALL
     SELECT 'tbl ' || c.relname || ' owner=' || pg_get_userbyid(c.relowner) || ' rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
     ORDER BY 1`,
    [app.schema],
  );
  return rows.map((r) => r.line);
}
