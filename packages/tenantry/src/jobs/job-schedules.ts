import type { Pool } from 'pg';
import { inTransaction } from '../control/admin-transaction.ts';
import { TenantryError } from '../errors/catalog.ts';
import { UUID_PATTERN } from '../uuid.ts';
import type { JobRegistry } from './job-registry.ts';
import { checkJobType } from './job-types.ts';

/** A cron schedule of a tenant: enqueues a job of `type` at every tick. */
export interface JobSchedule {
  readonly tenantId: string;
  readonly name: string;
  readonly type: string;
  /** Five fields (minute precision) or six (seconds first), as `croner` reads them. */
  readonly cron: string;
  /** IANA time zone the cron is read in (default `UTC`). */
  readonly timezone: string;
  readonly payload: Record<string, unknown>;
  readonly nextRunAt: Date;
}

/** What {@link JobSchedules.set} takes. */
export interface ScheduleInput {
  readonly type: string;
  readonly cron: string;
  readonly timezone?: string;
  readonly payload?: Record<string, unknown>;
}

const NAME = /^[a-z0-9][a-z0-9_.:-]{0,99}$/;

/**
 * The next tick of `cron` after `after`, in `timezone`; `USAGE_ERROR` for a pattern or
 * zone `croner` does not accept, or one that never fires again.
 */
async function nextTick(cron: string, timezone: string, after: Date): Promise<Date> {
  const { Cron } = await import('croner'); // loaded by the first schedule, not by the package root
  let next: Date | null;
  try {
    next = new Cron(cron, { timezone, paused: true }).nextRun(after);
  } catch (error) {
    throw new TenantryError('USAGE_ERROR', `invalid cron schedule: ${(error as Error).message}`, { cause: error });
  }
  if (!next) throw new TenantryError('USAGE_ERROR', 'this cron schedule never fires again');
  return next;
}

interface ScheduleRow {
  tenant_id: string;
  name: string;
  type: string;
  cron: string;
  timezone: string;
  payload: Record<string, unknown>;
  next_run_at: Date;
}

function toSchedule(r: ScheduleRow): JobSchedule {
  return {
    tenantId: r.tenant_id,
    name: r.name,
    type: r.type,
    cron: r.cron,
    timezone: r.timezone,
    payload: r.payload,
    nextRunAt: r.next_run_at,
  };
}

/**
 * Cron schedules per tenant, in the control plane. Workers fire the due ones
 * ({@link fireDue}): each tick becomes one job, made once whatever the number of workers
 * (the schedule's row is locked while firing, and the job's key is the tick). A suspended
 * tenant's schedules do not fire; after a resume, the ticks missed meanwhile fire once.
 *
 * @example
 * ```ts
 * await tenantry.jobs.schedule('acme', 'nightly-report', { type: 'report.build', cron: '0 3 * * *', timezone: 'Europe/Paris' });
 * ```
 */
export class JobSchedules {
  readonly #pool: Pool;
  readonly #registry: JobRegistry;

  constructor(pool: Pool, registry: JobRegistry) {
    this.#pool = pool;
    this.#registry = registry;
  }

  /** Creates or replaces the tenant's schedule `name`. */
  async set(tenantId: string, name: string, input: ScheduleInput): Promise<JobSchedule> {
    if (!UUID_PATTERN.test(String(tenantId))) throw new TenantryError('TENANT_NOT_FOUND');
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new TenantryError('USAGE_ERROR', 'a schedule name is lower case letters, digits and _.:- (1–100)');
    }
    checkJobType(input.type);
    const payload = this.#registry.validate(input.type, input.payload ?? {});
    const timezone = input.timezone ?? 'UTC';
    if (typeof input.cron !== 'string' || input.cron.length > 200) {
      throw new TenantryError('USAGE_ERROR', 'a cron schedule is a string');
    }
    const next = await nextTick(input.cron, timezone, new Date());
    const { rows } = await this.#pool.query<ScheduleRow>(
      `INSERT INTO tenantry.job_schedules (tenant_id, name, type, cron, timezone, payload, next_run_at)
       SELECT t.id, $2, $3, $4, $5, $6::jsonb, $7 FROM tenantry.tenants t WHERE t.id = $1 AND t.status <> 'deleted'
       ON CONFLICT (tenant_id, name) DO UPDATE SET type = EXCLUDED.type, cron = EXCLUDED.cron,
         timezone = EXCLUDED.timezone, payload = EXCLUDED.payload, next_run_at = EXCLUDED.next_run_at, updated_at = now()
       RETURNING *`,
      [tenantId, name, input.type, input.cron, timezone, JSON.stringify(payload), next],
    );
    const row = rows[0];
    if (!row) throw new TenantryError('TENANT_NOT_FOUND');
    return toSchedule(row);
  }

  /** Removes the tenant's schedule `name`; false when there was none. */
  async remove(tenantId: string, name: string): Promise<boolean> {
    if (!UUID_PATTERN.test(String(tenantId))) return false;
    const { rowCount } = await this.#pool.query(
      'DELETE FROM tenantry.job_schedules WHERE tenant_id = $1 AND name = $2',
      [tenantId, name],
    );
    return (rowCount ?? 0) > 0;
  }

  /** The tenant's schedules (or every tenant's), by name. */
  async list(tenantId?: string): Promise<JobSchedule[]> {
    if (tenantId !== undefined && !UUID_PATTERN.test(String(tenantId))) return [];
    const { rows } = await this.#pool.query<ScheduleRow>(
      `SELECT * FROM tenantry.job_schedules WHERE ($1::uuid IS NULL OR tenant_id = $1) ORDER BY tenant_id, name LIMIT 10000`,
      [tenantId ?? null],
    );
    return rows.map(toSchedule);
  }

  /**
   * Enqueues a job for each due schedule of an active tenant and moves it to its next
   * tick; returns how many fired. Run by every worker's poll; safe to run concurrently.
   */
  async fireDue(limit = 100): Promise<number> {
    return inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<ScheduleRow>(
        `SELECT s.* FROM tenantry.job_schedules s JOIN tenantry.tenants t ON t.id = s.tenant_id
          WHERE s.next_run_at <= now() AND t.status = 'active'
          ORDER BY s.next_run_at LIMIT $1 FOR UPDATE OF s SKIP LOCKED`,
        [limit],
      );
      const now = new Date();
      for (const s of rows) {
        const tick = s.next_run_at.toISOString();
        await client.query('SELECT tenantry.job_insert($1, $2, $3::jsonb, NULL, NULL, NULL, NULL, $4, $5, NULL)', [
          s.tenant_id,
          s.type,
          JSON.stringify(s.payload),
          `schedule:${s.name}:${tick}`,
          `schedule:${s.name}`,
        ]);
        let next: Date;
        try {
          next = await nextTick(s.cron, s.timezone, now);
        } catch {
          next = new Date(now.getTime() + 365 * 86_400_000); // a zone that vanished: park it, visibly
        }
        await client.query('UPDATE tenantry.job_schedules SET next_run_at = $3 WHERE tenant_id = $1 AND name = $2', [
          s.tenant_id,
          s.name,
          next,
        ]);
      }
      return rows.length;
    });
  }
}
