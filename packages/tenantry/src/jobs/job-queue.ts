import type { Pool } from 'pg';
import type { Logger } from '../config.ts';
import type { TenantContext } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { TenantTransaction } from '../transaction/tenant-transaction.ts';
import { ENQUEUE_IN_TX_SQL, ENQUEUE_SQL, type EnqueueOptions, enqueueValues } from './job-enqueue.ts';
import { JobRegistry } from './job-registry.ts';
import { type JobSchedule, JobSchedules, type ScheduleInput } from './job-schedules.ts';
import { type JobListOptions, JobStore, type PlanJobStats, type TenantJobStats } from './job-store.ts';
import type { JobHandler, JobRecord, JobType, JobTypeOptions, PayloadSchema } from './job-types.ts';
import { JobWorker, type WorkerDeps, type WorkerOptions } from './job-worker.ts';

/** What the queue needs, from the composition root. */
export interface JobQueueDeps extends Omit<WorkerDeps, 'registry' | 'schedules'> {
  readonly pool: Pool;
  /** A tenant named by id or slug, or given as its context or record, as a context. */
  readonly resolve: (tenant: string | TenantContext) => Promise<TenantContext>;
  /** The workers' logger unless their options give one. */
  readonly logger?: Logger | undefined;
}

/** What `define` takes: the payload's schema, the code, and retry defaults. */
export interface DefineJobOptions<P, DB> extends JobTypeOptions {
  /** Validates (and may transform) the payload at enqueue and before each run; a zod schema fits. */
  readonly schema?: PayloadSchema<P>;
  readonly run: JobHandler<P, DB>;
}

function isTransaction(value: unknown): value is TenantTransaction {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as TenantTransaction).defer === 'function' &&
    typeof (value as TenantTransaction).inMainDatabase === 'boolean'
  );
}

/**
 * Background jobs of tenants (`tenantry.jobs`; see docs/jobs.md): define job types with a
 * schema-validated payload, enqueue them from a tenant transaction (visible only if it
 * commits) or for an explicit tenant, run them with {@link worker} — fairly across
 * tenants, each in a verified tenant transaction of its own tenant — and operate the
 * queue (list, cancel, retry, stats, cron schedules).
 *
 * @typeParam DB - the Kysely database interface of the tenant tables (for `job.tx.db`).
 * @example
 * ```ts
 * const welcome = tenantry.jobs.define('email.welcome', {
 *   schema: z.object({ userId: z.uuid() }),
 *   run: async ({ userId }, job) => {
 *     const user = await job.tx.db.selectFrom('members').selectAll().where('id', '=', userId).executeTakeFirst();
 *     await mailer.send(user.email, 'Welcome!');
 *   },
 * });
 * await tenantry.transaction(acme, async (tx) => {
 *   const member = await addMember(tx, input);
 *   await tenantry.jobs.enqueue(tx, welcome, { userId: member.id }); // only if this commits
 * });
 * await tenantry.jobs.worker({ concurrency: 8 }).start();
 * ```
 */
export class JobQueue<DB = unknown> {
  readonly #deps: JobQueueDeps;
  readonly #registry = new JobRegistry();
  readonly #schedules: JobSchedules;
  readonly #store: JobStore;
  readonly #workers = new Set<JobWorker>();

  constructor(deps: JobQueueDeps) {
    this.#deps = deps;
    this.#schedules = new JobSchedules(deps.pool, this.#registry);
    this.#store = new JobStore(deps.pool);
  }

  /**
   * Defines a job type (`resource.verb`); its code runs in the job's tenant transaction.
   * Returns the handle `enqueue` takes to type the payload.
   *
   * @example
   * ```ts
   * const report = tenantry.jobs.define('report.build', { schema: z.object({ month: z.string() }), timeoutMs: 600_000, run: build });
   * ```
   */
  define<P>(type: string, options: DefineJobOptions<P, DB>): JobType<P> {
    return this.#registry.define<P, DB>({ ...options, type });
  }

  /**
   * Enqueues a job and returns its id. With a tenant transaction `tx` as target, the job
   * is written in that transaction (it exists only if `tx` commits) through a function
   * that takes the tenant from the verified context; that needs the tenant's rows in the
   * main database (`JOBS_UNAVAILABLE` for the database tier: enqueue with the tenant
   * instead). With a tenant (id, slug, context or record), it is written at once, for any
   * tier. With `key`, a live job of the same type and key is returned instead of a new one.
   *
   * @example
   * ```ts
   * await tenantry.jobs.enqueue(tx, welcome, { userId });                            // in the transaction
   * await tenantry.jobs.enqueue('acme', 'report.build', { month: '2026-11' }, { key: '2026-11' });
   * ```
   */
  async enqueue<P>(
    target: TenantTransaction<DB> | string | TenantContext,
    type: JobType<P> | string,
    payload: P,
    options: EnqueueOptions = {},
  ): Promise<string> {
    const name = typeof type === 'string' ? type : type?.type;
    const [jobType, json, priority, runAt, maxAttempts, timeoutMs, key] = enqueueValues(
      this.#registry,
      name as string,
      payload,
      options,
    );
    if (isTransaction(target)) {
      if (!target.inMainDatabase) {
        throw new TenantryError('JOBS_UNAVAILABLE', `tenant ${target.tenant.slug} does not live in the main database`);
      }
      const { rows } = await target.query<{ id: string }>(ENQUEUE_IN_TX_SQL, [
        jobType,
        json,
        priority,
        runAt,
        maxAttempts,
        timeoutMs,
        key,
        target.tenant.actor ?? null,
        target.tenant.requestId ?? null,
      ]);
      return rows[0]?.id as string;
    }
    const tenant = await this.#deps.resolve(target as string | TenantContext);
    if (tenant.status === 'deleted') throw new TenantryError('TENANT_NOT_ACTIVE');
    const { rows } = await this.#deps.pool.query<{ id: string }>(ENQUEUE_SQL, [
      tenant.id,
      jobType,
      json,
      priority,
      runAt,
      maxAttempts,
      timeoutMs,
      key,
      tenant.actor ?? null,
      tenant.requestId ?? null,
    ]);
    return rows[0]?.id as string;
  }

  /**
   * A worker running the job types defined here; call `start()` on it (and `close()` to
   * stop). `tenantry.close()` closes the workers made here.
   *
   * @example
   * ```ts
   * const worker = tenantry.jobs.worker({ concurrency: 4, plans: { pro: { weight: 4 } } });
   * await worker.start();
   * ```
   */
  worker(options: WorkerOptions = {}): JobWorker {
    const worker = new JobWorker(
      { ...this.#deps, registry: this.#registry, schedules: this.#schedules },
      { logger: this.#deps.logger, ...options },
    );
    this.#workers.add(worker);
    return worker;
  }

  /**
   * Jobs, newest first: of one tenant (`tenantId`) or all.
   *
   * @example
   * ```ts
   * const dead = await tenantry.jobs.list({ tenantId: acme.id, state: 'failed' });
   * ```
   */
  list(options: JobListOptions = {}): Promise<JobRecord[]> {
    return this.#store.list(options);
  }

  /**
   * One job; with `tenantId`, `NOT_FOUND` for another tenant's.
   *
   * @example
   * ```ts
   * const job = await tenantry.jobs.get(id, { tenantId: acme.id });
   * ```
   */
  get(id: string, options: { tenantId?: string } = {}): Promise<JobRecord> {
    return this.#store.get(id, options);
  }

  /**
   * Cancels a pending job, or asks a running one to stop (see `JobStore.cancel`).
   *
   * @example
   * ```ts
   * await tenantry.jobs.cancel(id, { tenantId: acme.id });
   * ```
   */
  cancel(id: string, options: { tenantId?: string } = {}): Promise<JobRecord> {
    return this.#store.cancel(id, options);
  }

  /**
   * Runs a dead-lettered or cancelled job again.
   *
   * @example
   * ```ts
   * await tenantry.jobs.retry(id);
   * ```
   */
  retry(id: string, options: { tenantId?: string } = {}): Promise<JobRecord> {
    return this.#store.retry(id, options);
  }

  /**
   * Backlog, running jobs, dead letters and oldest age per tenant.
   *
   * @example
   * ```ts
   * for (const s of await tenantry.jobs.stats()) console.log(s.slug, s.backlog, s.oldestAgeSeconds);
   * ```
   */
  stats(options: { tenantId?: string; limit?: number } = {}): Promise<TenantJobStats[]> {
    return this.#store.stats(options);
  }

  /**
   * Backlog, running jobs, dead letters and oldest age per plan (the metrics' view).
   *
   * @example
   * ```ts
   * for (const p of await tenantry.jobs.planStats()) console.log(p.plan, p.backlog);
   * ```
   */
  planStats(): Promise<PlanJobStats[]> {
    return this.#store.planStats();
  }

  /**
   * Deletes finished jobs older than `olderThanMs` (default a day).
   *
   * @example
   * ```ts
   * await tenantry.jobs.purgeFinished(7 * 86_400_000);
   * ```
   */
  purgeFinished(olderThanMs?: number): Promise<number> {
    return this.#store.purgeFinished(olderThanMs);
  }

  /**
   * Creates or replaces a cron schedule of a tenant: a job of `input.type` at each tick.
   *
   * @example
   * ```ts
   * await tenantry.jobs.schedule('acme', 'nightly', { type: 'report.build', cron: '0 3 * * *', timezone: 'Europe/Paris' });
   * ```
   */
  async schedule(tenant: string | TenantContext, name: string, input: ScheduleInput): Promise<JobSchedule> {
    return this.#schedules.set((await this.#deps.resolve(tenant)).id, name, input);
  }

  /**
   * Removes a tenant's cron schedule; false when there was none.
   *
   * @example
   * ```ts
   * await tenantry.jobs.unschedule('acme', 'nightly');
   * ```
   */
  async unschedule(tenant: string | TenantContext, name: string): Promise<boolean> {
    return this.#schedules.remove((await this.#deps.resolve(tenant)).id, name);
  }

  /**
   * A tenant's cron schedules, or every tenant's.
   *
   * @example
   * ```ts
   * const schedules = await tenantry.jobs.schedules('acme');
   * ```
   */
  async schedules(tenant?: string | TenantContext): Promise<JobSchedule[]> {
    return this.#schedules.list(tenant === undefined ? undefined : (await this.#deps.resolve(tenant)).id);
  }

  /** Closes every worker made by {@link worker}. */
  async close(): Promise<void> {
    await Promise.all([...this.#workers].map((w) => w.close()));
    this.#workers.clear();
  }
}
