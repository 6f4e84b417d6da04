import { createHash } from 'node:crypto';
import { TenantryError } from '../errors/catalog.ts';
import type { RetrofitPlan, RetrofitStep, StepMode, StepPhase } from './plan-step.ts';

const TITLE = '-- Tenantry retrofit plan (format 1)';
const STEP = /^-- ==== step (\d+)\/(\d+): (\S+) (.+) ====$/;
const MODES: readonly StepMode[] = ['registry', 'transaction', 'concurrent', 'batched'];
const FIELDS = {
  schema: 'schema',
  'tenant column': 'tenantColumn',
  'default tenant': 'defaultTenant',
  'owner role': 'ownerRole',
  'runtime role': 'runtimeRole',
  'legacy roles': 'legacyRoles',
} as const;

/**
 * The identity of a plan in the ledger: a hash of what apply executes (settings, step
 * order, SQL), so editing a comment keeps a half-applied plan resumable and editing SQL
 * makes it a new plan.
 */
export function planId(plan: RetrofitPlan): string {
  const executed = plan.steps.map((s) => [s.n, s.action, s.target, s.mode, s.phase, s.relation ?? '', s.sql]);
  const settings = [plan.schema, plan.tenantColumn, plan.defaultTenant, plan.ownerRole, plan.runtimeRole];
  return createHash('sha256')
    .update(JSON.stringify([settings, plan.legacyRoles, executed]))
    .digest('hex')
    .slice(0, 16);
}

const list = (items: readonly string[]) => (items.length ? items.join(', ') : '(none)');
const comment = (text: string, indent = '') => text.split('\n').map((l) => `-- ${indent}${l}`.trimEnd());

/**
 * The plan as an SQL file for review: a header with the decisions (tenant and global
 * tables, candidates to confirm, hazards with fixes), then each step with why it is
 * there, its estimate, how apply runs it, its rollback, and its SQL. `tenantry retrofit
 * apply` reads it back with {@link parsePlan}.
 */
export function renderPlan(plan: RetrofitPlan): string {
  const out = [
    TITLE,
    `-- plan id: ${planId(plan)}`,
    ...Object.entries(FIELDS).map(([label, key]) => {
      const value = plan[key];
      return `-- ${label}: ${Array.isArray(value) ? list(value) : value}`;
    }),
    '--',
    `-- Tenant tables (${plan.tenantTables.length}): ${list(plan.tenantTables)}`,
    `-- Global tables: ${list(plan.globalTables.map((g) => `${g.table} (${g.reason})`))}`,
    `-- Look like reference data, kept as tenant tables until named with --global: ${list(plan.candidates)}`,
    `-- Already have ${plan.tenantColumn}, left as they are (see tenantry doctor): ${list(plan.skipped)}`,
    '--',
    `-- Hazards (${plan.hazards.length}); this plan changes none of them:`,
    ...plan.hazards.flatMap((h) => [
      ...comment(`[${h.code}] ${h.object}: ${h.message}`),
      ...comment(h.fix, '    fix: '),
    ]),
    '--',
    "-- :'default_tenant_id' is the default tenant's id (psql variable syntax); apply fills it in.",
    '-- Steps of phase retrofit are safe while the old application runs; phase cutover steps run with',
    '-- `tenantry retrofit apply --cutover` once the application works through the runtime role.',
    '',
  ];
  for (const s of plan.steps) {
    out.push(
      `-- ==== step ${s.n}/${plan.steps.length}: ${s.action} ${s.target} ====`,
      `-- mode: ${s.mode} · phase: ${s.phase}${s.relation ? ` · on: ${s.relation}` : ''} · weight: ${s.weight}`,
      `-- estimate: ${s.estimate}`,
      ...comment(s.why.replaceAll('\n', ' '), '').map((l, i) => (i === 0 ? l.replace('-- ', '-- why: ') : l)),
      ...(s.rollback ? ['-- rollback:', ...comment(s.rollback, '  ')] : ['-- rollback: none']),
      ...(s.sql ? [s.sql] : []),
      '',
    );
  }
  return out.join('\n');
}

function invalid(line: number, why: string): TenantryError {
  return new TenantryError('RETROFIT_PLAN_INVALID', `line ${line}: ${why}`);
}

/** Reads a plan written by {@link renderPlan} (hazards and table lists are for the reader and not read back). */
export function parsePlan(text: string): RetrofitPlan {
  const lines = text.split('\n');
  if (lines[0]?.trim() !== TITLE) throw invalid(1, `not a Tenantry retrofit plan (expected "${TITLE}")`);
  const header: Record<string, string> = {};
  let i = 1;
  for (; i < lines.length && !STEP.test(lines[i] as string); i++) {
    const m = /^-- ([a-z ]+): (.*)$/.exec(lines[i] as string);
    if (m && (m[1] as string) in FIELDS) header[FIELDS[m[1] as keyof typeof FIELDS]] = m[2] as string;
  }
  for (const key of Object.values(FIELDS)) if (!(key in header)) throw invalid(i, `the header has no ${key}`);
  const steps: RetrofitStep[] = [];
  while (i < lines.length) {
    const head = STEP.exec(lines[i] as string) as RegExpExecArray;
    const at = i + 1;
    const meta = /^-- mode: (\S+) · phase: (\S+)(?: · on: (.+?))? · weight: (\d+)$/.exec(lines[++i] ?? '');
    if (!meta || !MODES.includes(meta[1] as StepMode) || !['retrofit', 'cutover'].includes(meta[2] as string)) {
      throw invalid(i + 1, 'expected "-- mode: … · phase: … · weight: …" after the step line');
    }
    const estimate = (lines[++i] ?? '').replace(/^-- estimate: /, '');
    const why: string[] = [];
    const rollback: string[] = [];
    let inRollback = false;
    for (i++; i < lines.length && (lines[i] as string).startsWith('--') && !STEP.test(lines[i] as string); i++) {
      const l = lines[i] as string;
      if (l === '-- rollback: none') inRollback = false;
      else if (l === '-- rollback:') inRollback = true;
      else if (inRollback) rollback.push(l.replace(/^-- {3}/, ''));
      else why.push(l.replace(/^-- (why: )?/, ''));
    }
    const body: string[] = [];
    for (; i < lines.length && !STEP.test(lines[i] as string); i++) body.push(lines[i] as string);
    const n = Number(head[1]);
    if (n !== steps.length + 1) throw invalid(at, `step ${n} out of order (expected ${steps.length + 1})`);
    steps.push(
      Object.freeze({
        n,
        action: head[3] as string,
        target: head[4] as string,
        mode: meta[1] as StepMode,
        phase: meta[2] as StepPhase,
        why: why.join(' '),
        estimate,
        sql: body.join('\n').trim(),
        rollback: rollback.length ? rollback.join('\n') : null,
        ...(meta[3] ? { relation: meta[3] } : {}),
        weight: Number(meta[4]),
      }),
    );
  }
  const roles = header.legacyRoles === '(none)' ? [] : (header.legacyRoles as string).split(', ');
  return Object.freeze({
    format: 1,
    schema: header.schema as string,
    tenantColumn: header.tenantColumn as string,
    defaultTenant: header.defaultTenant as string,
    ownerRole: header.ownerRole as string,
    runtimeRole: header.runtimeRole as string,
    legacyRoles: roles,
    tenantTables: [],
    globalTables: [],
    candidates: [],
    skipped: [],
    hazards: [],
    steps,
  });
}
