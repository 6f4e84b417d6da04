/**
 * `tenantry/retrofit`: turns an existing single-tenant schema into Tenantry tenant tables,
 * online. `planRetrofit` reads the catalog and writes a reviewable SQL plan (with hazards
 * and their fixes); `applyRetrofit` runs it step by step, resumably, and ends with doctor.
 *
 * @packageDocumentation
 */
export {
  type ApplyOptions,
  type ApplyProgress,
  type ApplyReport,
  applyRetrofit,
  type RetrofitHost,
  rollbackPlan,
} from './apply.ts';
export { HAZARDS, type Hazard, type HazardCode } from './hazards.ts';
export { LEDGER_TABLE } from './ledger.ts';
export { planRetrofit, type RetrofitPlanOptions } from './plan.ts';
export { parsePlan, planId, renderPlan } from './plan-file.ts';
export type { RetrofitPlan, RetrofitStep, StepMode, StepPhase } from './plan-step.ts';
