import type { Pool } from 'pg';
import type { Logger } from '../config.ts';
import { AUDIT_MONTHS_AHEAD } from '../migrate/audit-migration.ts';

/** What {@link AuditPartitions.retain} does with a month past retention. */
export type AuditRetentionMode = 'drop' | 'detach';

/**
 * The monthly partitions of the audit log: created ahead of need, and removed by
 * retention. Both run as the owner (`SECURITY DEFINER` functions) under one advisory lock.
 *
 * @example
 * ```ts
 * const partitions = new AuditPartitions(tenantry.adminPool);
 * await partitions.ensure();                             // this month and the next three
 * await partitions.retain({ months: 24, mode: 'detach' }); // older months kept aside for a dump
 * ```
 */
export class AuditPartitions {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  /**
   * Creates the current month's partition and the next `monthsAhead` (default 3) that are
   * missing; returns how many it created.
   *
   * @example
   * ```ts
   * await new AuditPartitions(pool).ensure(6);
   * ```
   */
  async ensure(monthsAhead = AUDIT_MONTHS_AHEAD): Promise<number> {
    const { rows } = await this.#pool.query<{ n: number }>('SELECT tenantry.audit_ensure_partitions($1) AS n', [
      monthsAhead,
    ]);
    return rows[0]?.n ?? 0;
  }

  /**
   * Removes the months that ended more than `months` months ago (whole partitions: rows are
   * never deleted one by one). `detach` keeps each as a plain table `audit_archive_YYYY_MM`
   * to export (`pg_dump -t`) and drop later; `drop` drops it. Each chain's anchor moves to
   * its last removed entry first, so the rest still verifies. Returns the partitions
   * removed.
   *
   * @example
   * ```ts
   * const removed = await new AuditPartitions(pool).retain({ months: 12 });
   * ```
   */
  async retain(options: { months: number; mode?: AuditRetentionMode }): Promise<string[]> {
    if (!Number.isInteger(options.months) || options.months < 1) {
      throw new RangeError('retention is a whole number of months, at least 1');
    }
    const { rows } = await this.#pool.query<{ name: string }>(
      `SELECT tenantry.audit_drop_partitions(
         date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => $1), $2) AS name`,
      [options.months, options.mode === 'detach'],
    );
    return rows.map((r) => r.name);
  }
}

/**
 * Runs `task` every `intervalMs` (default hourly) until the returned stop function is
 * called; failures are logged and retried at the next tick. Used for partitions ahead of
 * need and expired idempotency keys.
 *
 * @example
 * ```ts
 * const stop = everyInterval(() => partitions.ensure(), { logger });
 * ```
 */
export function everyInterval(
  task: () => Promise<unknown>,
  options: { intervalMs?: number; logger?: Logger | undefined; name?: string } = {},
): () => void {
  const run = () =>
    task().catch((error: unknown) =>
      options.logger?.warn({ err: (error as Error).message }, `${options.name ?? 'maintenance'} failed; will retry`),
    );
  const timer = setInterval(run, options.intervalMs ?? 3_600_000);
  timer.unref();
  return () => clearInterval(timer);
}
