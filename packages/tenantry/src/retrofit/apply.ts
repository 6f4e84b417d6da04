import type { Pool } from 'pg';
import type { ContextDialect } from '../context/context-dialect.ts';
import type { CreateTenantInput } from '../control/tenant-input.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { runDoctor } from '../doctor/doctor.ts';
import type { DoctorReport } from '../doctor/finding.ts';
import { TenantryError } from '../errors/catalog.ts';
import { quoteLiteral } from '../sql.ts';
import { appliedSteps, ensureLedger, recordStep } from './ledger.ts';
import { parsePlan, planId } from './plan-file.ts';
import { DEFAULT_TENANT_ID, type RetrofitPlan, type RetrofitStep, type StepPhase } from './plan-step.ts';
import { runStep } from './step-runner.ts';

/** What apply needs of Tenantry: the admin pool, the registry and the roles (a `Tenantry` instance fits). */
export interface RetrofitHost {
  readonly adminPool: Pool;
  readonly tenants: {
    find(idOrSlug: string): Promise<TenantRecord | undefined>;
    create(input: CreateTenantInput): Promise<TenantRecord>;
  };
  readonly config: {
    readonly roles: { readonly owner: string; readonly runtime: string };
    readonly dialect: ContextDialect;
  };
}

/** One thing apply reports while it works. */
export interface ApplyProgress {
  readonly step: RetrofitStep;
  /** Steps of the phase, and this one's position among them (from 1). */
  readonly total: number;
  readonly position: number;
  readonly state: 'start' | 'done' | 'skipped' | 'retry' | 'batch';
  /** Share of a backfill done (`batch`), or the retry number (`retry`). */
  readonly fraction?: number;
  readonly attempt?: number;
  /** Weight (rows) of the steps this run has to do, and of those done so far: for an ETA. */
  readonly weightTotal: number;
  readonly weightDone: number;
}

/** Options of {@link applyRetrofit}. */
export interface ApplyOptions {
  /** `retrofit` (default; safe while the old application runs) or `cutover`. */
  readonly phase?: StepPhase;
  /** Print nothing, change nothing: report what would run (and the rollback of what already ran). */
  readonly dryRun?: boolean;
  /** Longest wait for a lock the old application holds; default 2000 ms. Its writes wait at most this long. */
  readonly lockTimeoutMs?: number;
  /** Retries of a step whose lock was not granted (backoff up to 5 s); default 20. */
  readonly lockRetries?: number;
  /** Rows per backfill transaction; default 5000. */
  readonly batchRows?: number;
  /** Name of the default tenant when apply creates it; default its slug. */
  readonly defaultTenantName?: string;
  /** Stops between steps (and between backfill batches); rerun apply to continue. */
  readonly signal?: AbortSignal;
  onProgress?(progress: ApplyProgress): void;
}

/** What {@link applyRetrofit} did. */
export interface ApplyReport {
  readonly planId: string;
  readonly phase: StepPhase;
  readonly dryRun: boolean;
  /** Null in a dry run before the default tenant exists. */
  readonly defaultTenantId: string | null;
  /** Steps run now (in a dry run: that would run). */
  readonly applied: readonly RetrofitStep[];
  /** Steps found in the ledger and skipped. */
  readonly skipped: number;
  /** SQL undoing the phase's applied steps that can be undone, last step first. */
  readonly rollback: string;
  /** `doctor` on the schema after the phase; null in a dry run. */
  readonly doctor: DoctorReport | null;
}

/** The rollback of `steps`, newest first, each under a comment naming its step. */
export function rollbackPlan(steps: readonly RetrofitStep[]): string {
  return [...steps]
    .reverse()
    .filter((s) => s.rollback)
    .map((s) => `-- undo step ${s.n}: ${s.action} ${s.target}\n${s.rollback}`)
    .join('\n\n');
}

/**
 * Applies a retrofit plan (a {@link RetrofitPlan} or the text of its file) on the admin
 * connection, one step at a time, recording each in the ledger: a rerun after a failure or
 * a kill skips what was done and continues. Transactional steps wait at most
 * `lockTimeoutMs` for their lock and retry with backoff, so the old application's writes
 * wait, never fail; `CREATE INDEX CONCURRENTLY` runs outside any transaction; backfills
 * run in batches. The default tenant is created through the registry. Ends with `doctor`
 * on the schema.
 *
 * @example
 * ```ts
 * const report = await applyRetrofit(tenantry, await readFile('plan.sql', 'utf8'), {
 *   onProgress: (p) => console.error(`${p.position}/${p.total} ${p.step.action} ${p.step.target} ${p.state}`),
 * });
 * if (!report.doctor?.ok) process.exitCode = 1;
 * ```
 */
export async function applyRetrofit(
  host: RetrofitHost,
  input: RetrofitPlan | string,
  options: ApplyOptions = {},
): Promise<ApplyReport> {
  const plan = typeof input === 'string' ? parsePlan(input) : input;
  const { roles, dialect } = host.config;
  if (plan.ownerRole !== roles.owner || plan.runtimeRole !== roles.runtime) {
    throw new TenantryError(
      'RETROFIT_PLAN_INVALID',
      `the plan was made for roles ${plan.ownerRole}/${plan.runtimeRole}, this setup uses ${roles.owner}/${roles.runtime}: plan again`,
    );
  }
  const phase = options.phase ?? 'retrofit';
  const id = planId(plan);
  const steps = plan.steps.filter((s) => s.phase === phase);
  const client = await host.adminPool.connect();
  let broken: Error | undefined;
  try {
    // One apply per schema at a time; a killed run's session, and with it the lock, is gone.
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [`tenantry:retrofit:${plan.schema}`]);
    await ensureLedger(client, roles.owner);
    const done = await appliedSteps(client, id);
    if (phase === 'cutover') {
      const left = plan.steps.filter((s) => s.phase === 'retrofit' && !done.has(s.n)).length;
      if (left > 0)
        throw new TenantryError('INVALID_INPUT', `cutover needs the retrofit phase finished: ${left} steps left`);
    }
    let tenant = await host.tenants.find(plan.defaultTenant);
    const { rows } = await client.query<{ su: boolean }>(
      'SELECT rolsuper AS su FROM pg_roles WHERE rolname = current_user',
    );
    const applied: RetrofitStep[] = [];
    let skipped = 0;
    const weightTotal = steps.filter((s) => !done.has(s.n)).reduce((sum, s) => sum + s.weight, 0);
    let weightDone = 0;
    for (const [i, step] of steps.entries()) {
      const report = (state: ApplyProgress['state'], extra: { fraction?: number; attempt?: number } = {}) =>
        options.onProgress?.({
          step,
          total: steps.length,
          position: i + 1,
          state,
          weightTotal,
          weightDone: weightDone + (extra.fraction ?? 0) * step.weight,
          ...extra,
        });
      if (done.has(step.n)) {
        skipped++;
        report('skipped');
        continue;
      }
      if (options.dryRun) {
        applied.push(step);
        continue;
      }
      if (options.signal?.aborted) throw new TenantryError('RETROFIT_INTERRUPTED', `before step ${step.n}`);
      report('start');
      if (step.mode === 'registry') {
        tenant ??= await host.tenants.create({
          slug: plan.defaultTenant,
          name: options.defaultTenantName ?? plan.defaultTenant,
        });
        await recordStep(client, id, step);
      } else {
        if (!tenant) throw new TenantryError('RETROFIT_PLAN_INVALID', `tenant ${plan.defaultTenant} does not exist`);
        await runStep(client, step, step.sql.replaceAll(DEFAULT_TENANT_ID, quoteLiteral(tenant.id)), {
          planId: id,
          lockTimeoutMs: options.lockTimeoutMs ?? 2_000,
          lockRetries: options.lockRetries ?? 20,
          batchRows: options.batchRows ?? 5_000,
          quietTriggers: rows[0]?.su === true,
          ...(options.signal ? { signal: options.signal } : {}),
          onEvent: (e) =>
            e.kind === 'retry' ? report('retry', { attempt: e.attempt }) : report('batch', { fraction: e.fraction }),
        });
      }
      done.add(step.n);
      applied.push(step);
      weightDone += step.weight;
      report('done');
    }
    const doctor = options.dryRun
      ? null
      : await runDoctor(host.adminPool, {
          schemas: [plan.schema],
          runtimeRole: roles.runtime,
          dialect,
          tenantColumn: plan.tenantColumn,
        });
    return Object.freeze({
      planId: id,
      phase,
      dryRun: options.dryRun === true,
      defaultTenantId: tenant?.id ?? null,
      applied: Object.freeze(applied),
      skipped,
      rollback: rollbackPlan(steps.filter((s) => done.has(s.n))),
      doctor,
    });
  } catch (error) {
    broken = error as Error;
    throw error;
  } finally {
    // After a failure the session may be gone or mid-transaction: close it rather than pool it.
    if (!broken) await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`tenantry:retrofit:${plan.schema}`]);
    client.release(broken);
  }
}
