import { hostname } from 'node:os';
import type { Pool } from 'pg';
import type { Logger } from '../config.ts';
import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { type TenantContext, withTenant } from '../context/tenant-context.ts';
import { isTenantryError, TenantryError } from '../errors/catalog.ts';
import type { TenantTransaction } from '../transaction/tenant-transaction.ts';
import {
  type ClaimedRow,
  COMPLETE_SQL,
  FAIR_CLAIM_SQL,
  FAIR_CLAIM_WAIT_SQL,
  FIFO_CLAIM_SQL,
  HEARTBEAT_SQL,
  PROGRESS_SQL,
  REAP_SQL,
  SETTLE_SQL,
  SYNC_PLANS_SQL,
} from './job-claim.ts';
import type { JobRegistry } from './job-registry.ts';
import type { JobSchedules } from './job-schedules.ts';
import { intOption, type JobContext } from './job-types.ts';
import { retryDelayMs } from './retry-policy.ts';

/** Fair-scheduling parameters of a plan. */
export interface PlanJobLimits {
  /** Share of the workers relative to other plans' tenants (1…1000, default 1). */
  readonly weight?: number;
  /** Jobs of one tenant running at once (default `defaultConcurrency`). */
  readonly concurrency?: number;
}

/** Options of {@link JobWorker}. */
export interface WorkerOptions {
  /** Jobs run at once by this worker (default 4). */
  readonly concurrency?: number;
  /** Poll interval in ms when nothing wakes it (default 1000). */
  readonly pollIntervalMs?: number;
  /** Lease of a claimed job in ms, renewed every third of it (default 30 s). */
  readonly leaseMs?: number;
  /** `fair` (default): across tenants by weight; `fifo`: by arrival (a baseline). */
  readonly order?: 'fair' | 'fifo';
  /** Weights and caps per plan name. */
  readonly plans?: Readonly<Record<string, PlanJobLimits>>;
  /** Jobs of one tenant running at once when its plan sets none (default 4). */
  readonly defaultConcurrency?: number;
  /** Whether this worker fires due cron schedules (default true). */
  readonly schedules?: boolean;
  /** How long {@link JobWorker.close} waits for running jobs (default 10 s). */
  readonly shutdownTimeoutMs?: number;
  readonly logger?: Logger | undefined;
}

/** What a worker needs, from the composition root. */
export interface WorkerDeps {
  /** The admin pool (control plane). */
  readonly pool: Pool;
  readonly registry: JobRegistry;
  readonly schedules: JobSchedules;
  /** The tenant context a job runs in. */
  readonly context: (tenantId: string) => Promise<TenantContext>;
  /** A verified tenant transaction of `tenant` (work purpose). */
  readonly transaction: <T>(tenant: TenantContext, fn: (tx: TenantTransaction) => Promise<T>) => Promise<T>;
  /** Calls `wake` when a job may have been enqueued; resolves to what stops listening. */
  readonly listen?: ((wake: () => void) => Promise<() => Promise<void>>) | undefined;
}

/** The completion inside the job's own transaction (tenant rows in the main database). */
const COMPLETE_IN_TX_SQL = `SELECT ${CONTEXT_SCHEMA}.job_complete($1::bigint, $2::uuid)`;

/**
 * The queue's statements as named prepared statements: the claim is planned once per
 * connection instead of at every call (its plan costs more than its execution).
 */
function prepared(name: string, text: string, values: unknown[]): { name: string; text: string; values: unknown[] } {
  return { name: `tenantry_jobs_${name}`, text, values };
}

/** Errors that say the run was not the job's fault: the attempt is given back. */
const NOT_THE_JOBS_FAULT = new Set(['TENANT_SUSPENDED', 'TENANT_NOT_ACTIVE', 'TENANT_MOVING', 'DATABASE_UNAVAILABLE']);

interface Running {
  readonly row: ClaimedRow;
  readonly controller: AbortController;
  readonly done: Promise<void>;
}

/**
 * Runs jobs: claims the next one fairly across tenants (see `job-claim.ts`), runs its code
 * in a verified tenant transaction of its tenant inside `withTenant`, and records the
 * outcome. Completion commits with the job's own writes when the tenant's rows are in the
 * main database; otherwise it is recorded right after the commit (at least once).
 * A failed run is retried after an exponential backoff with jitter, and dead-lettered
 * (`failed`) after its last attempt. A worker that dies leaves its jobs leased; another
 * worker takes them back when the lease expires.
 *
 * @example
 * ```ts
 * const worker = tenantry.jobs.worker({ concurrency: 8, plans: { pro: { weight: 4, concurrency: 16 } } });
 * await worker.start();
 * process.on('SIGTERM', () => worker.close());
 * ```
 */
export class JobWorker {
  readonly #deps: WorkerDeps;
  readonly #concurrency: number;
  readonly #pollMs: number;
  readonly #leaseMs: number;
  readonly #fifo: boolean;
  readonly #plans: string;
  readonly #defaultConcurrency: number;
  readonly #fireSchedules: boolean;
  readonly #shutdownMs: number;
  readonly #logger: Logger | undefined;
  readonly #name = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  readonly #running = new Map<string, Running>();
  #slots = new Set<Promise<void>>();
  #started = false;
  #stopping = false;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #unlisten: (() => Promise<void>) | undefined;
  #lastHousekeeping = 0;
  #lastSync = 0;
  /** Jobs this worker finished (completed, failed, retried or released), since start. */
  processed = 0;

  constructor(deps: WorkerDeps, options: WorkerOptions = {}) {
    this.#deps = deps;
    this.#concurrency = intOption(options.concurrency, 4, 'concurrency', 1, 1000);
    this.#pollMs = intOption(options.pollIntervalMs, 1000, 'pollIntervalMs', 1, 3_600_000);
    this.#leaseMs = intOption(options.leaseMs, 30_000, 'leaseMs', 300, 3_600_000);
    this.#fifo = options.order === 'fifo';
    this.#defaultConcurrency = intOption(options.defaultConcurrency, 4, 'defaultConcurrency', 1, 100_000);
    this.#plans = JSON.stringify(
      Object.entries(options.plans ?? {}).map(([plan, limits]) => ({
        plan,
        weight: intOption(limits.weight, 1, `plans.${plan}.weight`, 1, 1000),
        concurrency: intOption(limits.concurrency, this.#defaultConcurrency, `plans.${plan}.concurrency`, 1, 100_000),
      })),
    );
    this.#fireSchedules = options.schedules ?? true;
    this.#shutdownMs = intOption(options.shutdownTimeoutMs, 10_000, 'shutdownTimeoutMs', 0, 3_600_000);
    this.#logger = options.logger;
  }

  /** Starts claiming jobs (listens for enqueues, polls, renews leases). Idempotent. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#stopping = false;
    await this.#housekeeping(true);
    this.#timer = setInterval(() => {
      this.#housekeeping(false).catch((error: Error) =>
        this.#logger?.warn({ err: error.message }, 'jobs: poll failed'),
      );
      this.#wake();
    }, this.#pollMs);
    this.#timer.unref();
    this.#heartbeat = setInterval(() => this.#renewLeases(), Math.max(100, Math.floor(this.#leaseMs / 3)));
    this.#heartbeat.unref();
    if (this.#deps.listen) {
      try {
        this.#unlisten = await this.#deps.listen(() => this.#wake());
      } catch (error) {
        this.#logger?.warn({ err: (error as Error).message }, 'jobs: cannot listen; polling only');
      }
    }
    this.#wake();
  }

  /** Jobs running in this worker now. */
  get active(): number {
    return this.#running.size;
  }

  /**
   * Runs every job that is due now, one at a time, then resolves (whether or not
   * started): for tests and scripts. Returns how many runs it made.
   */
  async drain(): Promise<number> {
    await this.#housekeeping(true);
    let n = 0;
    while (await this.#runOne()) n++;
    return n;
  }

  #wake(): void {
    if (!this.#started || this.#stopping) return;
    if (this.#slots.size >= this.#concurrency) {
      this.#again = true;
      return;
    }
    const slot = this.#work().finally(() => this.#slots.delete(slot));
    this.#slots.add(slot);
  }

  async #work(): Promise<void> {
    try {
      for (;;) {
        this.#again = false;
        while (!this.#stopping && (await this.#runOne())) {
          if (this.#slots.size < this.#concurrency) this.#wake();
        }
        if (this.#stopping || !this.#again) return;
      }
    } catch (error) {
      if (!this.#stopping) this.#logger?.error({ err: (error as Error).message }, 'jobs: worker slot failed');
    }
  }

  /** Reaps expired leases, syncs plan limits and fires schedules (at most once per poll). */
  async #housekeeping(force: boolean): Promise<void> {
    const now = Date.now();
    if (!force && now - this.#lastHousekeeping < this.#pollMs) return;
    this.#lastHousekeeping = now;
    const pool = this.#deps.pool;
    // Plan limits change rarely and the sync reads every queue: every 10 s, not every poll.
    if (force || now - this.#lastSync >= 10_000) {
      this.#lastSync = now;
      await pool.query(SYNC_PLANS_SQL, [this.#plans, 1, this.#defaultConcurrency]);
    }
    const { rows } = await pool.query<{ n: number }>(REAP_SQL);
    if (rows[0]?.n) this.#logger?.warn({ jobs: rows[0].n }, 'jobs: took back jobs whose lease expired');
    if (this.#fireSchedules) await this.#deps.schedules.fireDue();
  }

  async #claim(): Promise<ClaimedRow | undefined> {
    const types = this.#deps.registry.types();
    if (types.length === 0) return undefined;
    const values = [this.#name, types, this.#leaseMs];
    const pool = this.#deps.pool;
    if (this.#fifo) return (await pool.query<ClaimedRow>(prepared('fifo', FIFO_CLAIM_SQL, values))).rows[0];
    const first = (await pool.query<ClaimedRow>(prepared('fair', FAIR_CLAIM_SQL, values))).rows[0];
    if (first) return first;
    // Every candidate may have been locked by another worker's claim for an instant.
    return (await pool.query<ClaimedRow>(prepared('fair_wait', FAIR_CLAIM_WAIT_SQL, values))).rows[0];
  }

  async #runOne(): Promise<boolean> {
    const row = await this.#claim();
    if (!row) return false;
    const controller = new AbortController();
    let finish!: () => void;
    const done = new Promise<void>((resolve) => {
      finish = resolve;
    });
    this.#running.set(row.id, { row, controller, done });
    try {
      await this.#execute(row, controller);
    } finally {
      this.#running.delete(row.id);
      this.processed++;
      finish();
    }
    return true;
  }

  async #execute(row: ClaimedRow, controller: AbortController): Promise<void> {
    const definition = this.#deps.registry.get(row.type);
    const timer = setTimeout(() => controller.abort(new TenantryError('JOB_TIMEOUT')), row.timeout_ms);
    let inMain = false;
    try {
      if (!definition) throw new TenantryError('USAGE_ERROR', `job type ${row.type} is not defined in this worker`);
      // A payload its schema refuses now (the schema changed) is a dead letter, not a retry.
      const payload = this.#deps.registry.validate(row.type, row.payload);
      const context: TenantContext = { ...(await this.#deps.context(row.tenant_id)), requestId: `job:${row.id}` };
      await withTenant(context, () =>
        this.#deps.transaction(context, async (tx) => {
          inMain = tx.inMainDatabase;
          const job: JobContext = {
            id: row.id,
            tenant: context,
            attempt: row.attempts,
            tx,
            signal: controller.signal,
            progress: async (value) => {
              await this.#deps.pool.query(PROGRESS_SQL, [row.id, row.lease_id, JSON.stringify(value)]);
            },
          };
          const result = await abortable(
            Promise.resolve().then(() => definition.run(payload as never, job)),
            controller.signal,
          );
          if (inMain) tx.defer(COMPLETE_IN_TX_SQL, [row.id, row.lease_id]);
          return result;
        }),
      );
      if (!inMain) await this.#deps.pool.query(prepared('complete', COMPLETE_SQL, [row.id, row.lease_id]));
    } catch (error) {
      await this.#settle(row, error, controller.signal.reason);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Records a run that did not complete. */
  async #settle(row: ClaimedRow, error: unknown, reason: unknown): Promise<void> {
    const message = (error instanceof Error ? error.message || error.name : String(error)).slice(0, 2000);
    const definition = this.#deps.registry.get(row.type);
    let state: 'pending' | 'failed' | 'cancelled' = 'pending';
    let refund = false;
    let delayMs = 0;
    if (isTenantryError(reason, 'JOB_CANCELLED')) {
      state = 'cancelled';
    } else if (reason === SHUTDOWN) {
      refund = true;
    } else if (isTenantryError(error) && NOT_THE_JOBS_FAULT.has(error.code)) {
      refund = true;
      delayMs = this.#pollMs;
    } else if (!definition || isTenantryError(error, 'JOB_PAYLOAD_INVALID') || row.attempts >= row.max_attempts) {
      state = 'failed';
    } else {
      delayMs = retryDelayMs(row.attempts, {
        baseMs: definition.backoffMs ?? 1000,
        maxMs: definition.maxBackoffMs ?? 3_600_000,
      });
    }
    await this.#deps.pool
      .query(prepared('settle', SETTLE_SQL, [row.id, row.lease_id, state, delayMs, message, refund]))
      .catch((e: Error) => this.#logger?.error({ jobId: row.id, err: e.message }, 'jobs: cannot record the outcome'));
    this.#logger?.warn(
      { jobId: row.id, tenantId: row.tenant_id, type: row.type, attempt: row.attempts, state, err: message },
      state === 'failed'
        ? 'jobs: job dead-lettered'
        : state === 'cancelled'
          ? 'jobs: job cancelled'
          : 'jobs: job will run again',
    );
  }

  /** Extends the leases of running jobs; aborts those cancelled or whose lease was lost. */
  #renewLeases(): void {
    for (const { row, controller } of this.#running.values()) {
      this.#deps.pool
        .query<{ cancel_requested: boolean }>(
          prepared('heartbeat', HEARTBEAT_SQL, [row.id, row.lease_id, this.#leaseMs]),
        )
        .then(({ rows }) => {
          if (rows.length === 0) controller.abort(new TenantryError('JOB_CANCELLED', 'the lease was lost'));
          else if (rows[0]?.cancel_requested) controller.abort(new TenantryError('JOB_CANCELLED'));
        })
        .catch((error: Error) => this.#logger?.warn({ err: error.message }, 'jobs: lease renewal failed'));
    }
  }

  /**
   * Stops claiming and waits up to `shutdownTimeoutMs` for the jobs running; the ones
   * still running then are aborted (their transactions roll back) and released, so
   * another worker runs them, their attempt given back. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#started) return;
    this.#stopping = true;
    clearInterval(this.#timer);
    clearInterval(this.#heartbeat);
    const unlisten = this.#unlisten;
    this.#unlisten = undefined;
    await unlisten?.().catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#shutdownMs);
    });
    const outcome = await Promise.race([Promise.allSettled([...this.#slots]), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      for (const { controller } of this.#running.values()) controller.abort(SHUTDOWN);
      await Promise.allSettled([...this.#slots]);
    }
    this.#started = false;
  }
}

/** The abort reason of a shutdown. */
const SHUTDOWN = new Error('worker shutting down');

/** `promise`, or a rejection with the signal's reason once it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
