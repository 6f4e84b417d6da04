import { quoteIdent } from '../sql.ts';
import type { Hazard } from './hazards.ts';

/**
 * How apply runs a step: `transaction` in one transaction with the ledger row (so it is
 * applied once or not at all); `concurrent` alone, outside any transaction (`CREATE INDEX
 * CONCURRENTLY` cannot run in one), recorded after it succeeds; `batched` as short
 * transactions over ranges of pages, then one sweep; `registry` through Tenantry's API.
 */
export type StepMode = 'registry' | 'transaction' | 'concurrent' | 'batched';

/**
 * `retrofit` steps are safe while the old application keeps running; `cutover` steps run
 * once the application works through Tenantry's runtime role (`apply --cutover`).
 */
export type StepPhase = 'retrofit' | 'cutover';

/** One step of a retrofit plan. */
export interface RetrofitStep {
  /** Position in the plan, from 1: the ledger records steps by it. */
  readonly n: number;
  /** What the step does (`add-column`, `backfill`, `unique-index`, `secure`…). */
  readonly action: string;
  /** The table, index or object it acts on (`schema.name`). */
  readonly target: string;
  readonly mode: StepMode;
  readonly phase: StepPhase;
  /** Why the step exists and why it is safe while the old application runs. */
  readonly why: string;
  /** Rows and sizes involved, and the lock it takes. */
  readonly estimate: string;
  /**
   * The SQL. `:'default_tenant_id'` stands for the default tenant's id (psql's variable
   * syntax). A `batched` step holds two statements: the batch, over
   * `ctid >= :'batch_start'::tid AND ctid < :'batch_end'::tid`, then the sweep.
   */
  readonly sql: string;
  /** SQL that undoes the step, when there is such a thing. */
  readonly rollback: string | null;
  /**
   * Quoted name of the relation apply needs to know about: for a `concurrent` index build,
   * the index a killed run may have left invalid; for a `batched` step, the table it walks.
   */
  readonly relation?: string;
  /** Rows the step touches or indexes (for progress and ETA). */
  readonly weight: number;
}

/** A step before numbering. */
export type StepDraft = Omit<RetrofitStep, 'n' | 'phase'> & { readonly phase?: StepPhase };

/** A retrofit plan: what was decided about each table, the hazards, and the ordered steps. */
export interface RetrofitPlan {
  readonly format: 1;
  readonly schema: string;
  readonly tenantColumn: string;
  /** Slug of the tenant every existing row lands in (created through the registry). */
  readonly defaultTenant: string;
  readonly ownerRole: string;
  readonly runtimeRole: string;
  /** Roles the running application writes through; they keep access to the default tenant's rows until cutover. */
  readonly legacyRoles: readonly string[];
  readonly tenantTables: readonly string[];
  readonly globalTables: readonly { readonly table: string; readonly reason: string }[];
  /** Tables that look global (reference data) but were not named so: kept as tenant tables. */
  readonly candidates: readonly string[];
  /** Tables that already had the tenant column. */
  readonly skipped: readonly string[];
  readonly hazards: readonly Hazard[];
  readonly steps: readonly RetrofitStep[];
}

/** The placeholder of the default tenant's id in plan SQL. */
export const DEFAULT_TENANT_ID = `:'default_tenant_id'`;

/** Name of the policy that keeps the old application on the default tenant's rows until cutover. */
export const LEGACY_POLICY = 'tenantry_retrofit_legacy';

/** `base` + `suffix`, cut to PostgreSQL's 63 bytes (which would silently truncate it). */
export function shortName(base: string, suffix: string): string {
  let head = base;
  while (Buffer.byteLength(head + suffix) > 63) head = head.slice(0, -1);
  return head + suffix;
}

/** {@link shortName}, quoted. */
export function derivedName(base: string, suffix: string): string {
  return quoteIdent(shortName(base, suffix));
}

export function formatRows(rows: number | null): string {
  return rows === null ? 'rows unknown (never analyzed)' : `~${Math.round(rows).toLocaleString('en-US')} rows`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
