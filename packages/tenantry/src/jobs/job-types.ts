import type { TenantContext } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { TenantTransaction } from '../transaction/tenant-transaction.ts';

/** `resource.verb` in lower case, like event types: `email.send`, `report.build`. */
export const JOB_TYPE = /^[a-z][a-z0-9_]{0,48}(\.[a-z][a-z0-9_]{0,48}){1,3}$/;

/** Throws `USAGE_ERROR` unless `type` is a job type name. */
export function checkJobType(type: unknown): asserts type is string {
  if (typeof type !== 'string' || !JOB_TYPE.test(type)) {
    throw new TenantryError('USAGE_ERROR', 'a job type is `resource.verb` in lower case, e.g. email.send');
  }
}

/**
 * What validates a payload: anything with `parse` that returns the value or throws —
 * a zod schema is one. Declared here so the jobs module does not load a validator.
 */
export interface PayloadSchema<P> {
  parse(input: unknown): P;
}

/** The states of a job. `failed` is the dead letter: it used up its attempts. */
export type JobState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';

/** What the code of a job gets besides its payload. */
export interface JobContext<DB = unknown> {
  /** The job's id. */
  readonly id: string;
  /** Its tenant (also `getTenant()`). */
  readonly tenant: TenantContext;
  /** This run's number, from 1. */
  readonly attempt: number;
  /**
   * The verified tenant transaction the job runs in: it commits when the code returns
   * (with the job marked completed, when the tenant's rows are in the main database) and
   * rolls back when it throws, times out or is cancelled.
   */
  readonly tx: TenantTransaction<DB>;
  /** Aborted when the job times out, is cancelled, or the worker shuts down. */
  readonly signal: AbortSignal;
  /** Records how far a long job is (a JSON object, visible at once in `/v1/jobs`). */
  progress(value: Record<string, unknown>): Promise<void>;
}

/** The code of a job type. */
export type JobHandler<P, DB = unknown> = (payload: P, job: JobContext<DB>) => Promise<unknown> | unknown;

/** Retry and timing defaults of a job type; each enqueue may override them. */
export interface JobTypeOptions {
  /** Runs before the job is dead-lettered (default 5). */
  readonly maxAttempts?: number;
  /** How long one run may take (default 5 minutes). */
  readonly timeoutMs?: number;
  /** Inside its tenant, higher goes first (default 0, -1000…1000). */
  readonly priority?: number;
  /** First retry delay (default 1 s); doubled per attempt, with full jitter. */
  readonly backoffMs?: number;
  /** Longest retry delay (default 1 hour). */
  readonly maxBackoffMs?: number;
}

/** A job type: its name, payload schema, code and defaults. */
export interface JobDefinition<P = unknown, DB = unknown> extends JobTypeOptions {
  readonly type: string;
  readonly schema?: PayloadSchema<P> | undefined;
  readonly run: JobHandler<P, DB>;
}

/**
 * A defined job type: what `enqueue` takes to type the payload. Returned by
 * `tenantry.jobs.define`.
 */
export interface JobType<P = unknown> {
  readonly type: string;
  /** Phantom: carries the payload type. */
  readonly __payload?: P;
}

/** A job as the queue reports it. */
export interface JobRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly type: string;
  readonly payload: Record<string, unknown>;
  readonly state: JobState;
  readonly priority: number;
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly runAt: Date;
  readonly uniqueKey: string | null;
  readonly progress: Record<string, unknown> | null;
  readonly lastError: string | null;
  readonly cancelRequested: boolean;
  readonly createdAt: Date;
  readonly startedAt: Date | null;
  readonly finishedAt: Date | null;
}

/** Checks a positive integer option, or returns the fallback. */
export function intOption(value: number | undefined, fallback: number, name: string, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new TenantryError('USAGE_ERROR', `${name} is an integer from ${min} to ${max}`);
  }
  return value;
}
