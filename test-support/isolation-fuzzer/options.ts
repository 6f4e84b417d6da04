import type { IsolationTier, Tenantry } from '../../packages/tenantry/src/index.ts';
import type { IsolationFinding } from './report.ts';

/** Options of `runIsolationFuzz` (`fuzzer.ts`). */
export interface IsolationFuzzOptions {
  /** Set up and migrated with the example application's migrations (`itemsMigrations`); fresh. */
  readonly tenantry: Tenantry<unknown>;
  /** Base URL of a reference server on the same Tenantry, created with `plans: fuzzPlans()`. */
  readonly baseUrl: string;
  /** Superuser URL of the main database, for the final sweep (default: `tenantry.config.databaseUrl`). */
  readonly adminUrl?: string;
  readonly ops: number;
  readonly seed: number;
  /** Operations in flight at once (default 16). */
  readonly concurrency?: number;
  /** Slugs of the run's tenants start with it (default `iso-fuzz`): two runs can share a database. */
  readonly slugPrefix?: string;
  /** Tenants per tier (default 6 pool, 4 schema, 2 database). */
  readonly tenants?: Readonly<Record<IsolationTier, number>>;
  /**
   * Share of drawn operations sent over HTTP (default 0.1). Library reads bring more reads
   * into their transaction, so requests end up a smaller share of the operations run (~4%).
   */
  readonly httpShare?: number;
  /** Kinds left out of the run (to separate a known finding from the rest; see the docs). */
  readonly exclude?: readonly string[];
  /** Live items a tenant may have before inserts turn into deletes (default 24; ≤ 90, one HTTP page). */
  readonly maxItemsPerTenant?: number;
  /** Called about every `progressEveryMs` (default 10 s) while operations run. */
  readonly onProgress?: (progress: IsolationFuzzProgress) => void;
  readonly progressEveryMs?: number;
  /** Called once for the first occurrence of each distinct finding, as it happens. */
  readonly onFinding?: (finding: IsolationFinding) => void;
}

export interface IsolationFuzzProgress {
  readonly done: number;
  readonly transactions: number;
  readonly total: number;
  readonly elapsedMs: number;
  readonly checks: number;
  readonly leaks: number;
  readonly anomalies: number;
}

/** A run that cannot start: bad options or setup. */
export class RunError extends Error {}
