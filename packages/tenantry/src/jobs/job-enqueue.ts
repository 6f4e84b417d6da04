import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { JobRegistry } from './job-registry.ts';
import { checkJobType, intOption } from './job-types.ts';

/** Options of one enqueue; unset ones come from the job type's definition, then the defaults. */
export interface EnqueueOptions {
  /** Inside its tenant, higher runs first (-1000…1000, default 0). */
  readonly priority?: number;
  /** Not before this time (a scheduled job). */
  readonly runAt?: Date;
  /** Not before this many ms from now. */
  readonly delayMs?: number;
  /** Runs before it is dead-lettered (default 5). */
  readonly maxAttempts?: number;
  /** How long one run may take (default 5 minutes). */
  readonly timeoutMs?: number;
  /**
   * Idempotency / singleton key: while a job of this type and tenant with this key is
   * pending or running, enqueueing it again returns that job's id and adds nothing.
   */
  readonly key?: string;
}

/** The tenant's enqueue from its own transaction: the tenant is the verified context's. */
export const ENQUEUE_IN_TX_SQL = `SELECT ${CONTEXT_SCHEMA}.job_enqueue($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9)::text AS id`;
/** The enqueue with an explicit tenant, on the admin connection (any tier). */
export const ENQUEUE_SQL = `SELECT tenantry.job_insert($1::uuid, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10)::text AS id`;

/**
 * The job's columns, checked: `[type, payload JSON, priority, runAt, maxAttempts,
 * timeoutMs, key]`. `JOB_PAYLOAD_INVALID` or `USAGE_ERROR` before anything is written.
 */
export function enqueueValues(
  registry: JobRegistry,
  type: string,
  payload: unknown,
  options: EnqueueOptions,
): [string, string, number, Date | null, number, number, string | null] {
  checkJobType(type);
  const value = registry.validate(type, payload);
  const definition = registry.get(type);
  const priority = intOption(options.priority ?? definition?.priority, 0, 'priority', -1000, 1000);
  const maxAttempts = intOption(options.maxAttempts ?? definition?.maxAttempts, 5, 'maxAttempts', 1, 1000);
  const timeoutMs = intOption(options.timeoutMs ?? definition?.timeoutMs, 300_000, 'timeoutMs', 1, 86_400_000);
  let runAt: Date | null = null;
  if (options.runAt !== undefined) {
    if (!(options.runAt instanceof Date) || Number.isNaN(options.runAt.getTime())) {
      throw new TenantryError('USAGE_ERROR', 'runAt is a valid Date');
    }
    runAt = options.runAt;
  } else if (options.delayMs !== undefined) {
    runAt = new Date(Date.now() + intOption(options.delayMs, 0, 'delayMs', 0, 366 * 86_400_000));
  }
  const key = options.key ?? null;
  if (key !== null && (typeof key !== 'string' || key.length < 1 || key.length > 200)) {
    throw new TenantryError('USAGE_ERROR', 'a job key is a string of 1 to 200 characters');
  }
  return [type, JSON.stringify(value), priority, runAt, maxAttempts, timeoutMs, key];
}
