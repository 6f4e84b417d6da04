import type { Pool } from 'pg';
import { TenantryError } from '../errors/catalog.ts';
import { UUID_PATTERN } from '../uuid.ts';
import type { JobRecord, JobState } from './job-types.ts';

interface JobRow {
  id: string;
  tenant_id: string;
  type: string;
  payload: Record<string, unknown>;
  state: JobState;
  priority: number;
  attempts: number;
  max_attempts: number;
  run_at: Date;
  unique_key: string | null;
  progress: Record<string, unknown> | null;
  last_error: string | null;
  cancel_requested: boolean;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

const COLUMNS = `id::text, tenant_id, type, payload, state, priority, attempts, max_attempts, run_at, unique_key,
  progress, last_error, cancel_requested, created_at, started_at, finished_at`;

const STATES: readonly JobState[] = ['pending', 'running', 'completed', 'failed', 'cancelled'];
const JOB_ID = /^\d{1,18}$/;

function toRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    type: row.type,
    payload: row.payload,
    state: row.state,
    priority: row.priority,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    runAt: row.run_at,
    uniqueKey: row.unique_key,
    progress: row.progress,
    lastError: row.last_error,
    cancelRequested: row.cancel_requested,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

/** Filters of {@link JobStore.list}. */
export interface JobListOptions {
  /** Only this tenant's jobs (id). Always set for a tenant's own view. */
  readonly tenantId?: string | undefined;
  readonly state?: JobState | undefined;
  readonly type?: string | undefined;
  /** Jobs with a smaller id than this (paging, newest first). */
  readonly before?: string | undefined;
  /** 1…500, default 50. */
  readonly limit?: number | undefined;
}

/** A tenant's queue at a glance. */
export interface TenantJobStats {
  readonly tenantId: string;
  readonly slug: string;
  readonly plan: string;
  /** Pending jobs due now. */
  readonly backlog: number;
  /** Pending jobs due later (scheduled, or waiting for a retry). */
  readonly scheduled: number;
  readonly running: number;
  /** Dead letters. */
  readonly failed: number;
  /** Age in seconds of the oldest job due now; 0 when none. */
  readonly oldestAgeSeconds: number;
}

/** A plan's queue at a glance (see {@link JobStore.planStats}). */
export interface PlanJobStats {
  readonly plan: string;
  readonly backlog: number;
  readonly running: number;
  readonly failed: number;
  readonly oldestAgeSeconds: number;
}

/**
 * Reads and operator actions on the queue, on the admin connection. Every method that
 * takes a `tenantId` acts on that tenant's jobs only: a job of another tenant is
 * `NOT_FOUND`, like one that does not exist.
 *
 * @example
 * ```ts
 * const dead = await tenantry.jobs.list({ tenantId: acme.id, state: 'failed' });
 * await tenantry.jobs.retry(dead[0].id, { tenantId: acme.id });
 * ```
 */
export class JobStore {
  readonly #pool: Pool;
  readonly #wake: () => void;

  constructor(pool: Pool, wake: () => void = () => {}) {
    this.#pool = pool;
    this.#wake = wake;
  }

  /** Jobs, newest first. */
  async list(options: JobListOptions = {}): Promise<JobRecord[]> {
    if (options.tenantId !== undefined && !UUID_PATTERN.test(String(options.tenantId))) return [];
    if (options.state !== undefined && !STATES.includes(options.state)) {
      throw new TenantryError('INVALID_INPUT', `a job state is one of ${STATES.join(', ')}`);
    }
    if (options.before !== undefined && !JOB_ID.test(String(options.before))) {
      throw new TenantryError('INVALID_INPUT', 'before is a job id');
    }
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 50), 1), 500);
    const { rows } = await this.#pool.query<JobRow>(
      `SELECT ${COLUMNS} FROM tenantry.jobs
        WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR state = $2)
          AND ($3::text IS NULL OR type = $3) AND ($4::bigint IS NULL OR id < $4)
        ORDER BY id DESC LIMIT $5`,
      [options.tenantId ?? null, options.state ?? null, options.type ?? null, options.before ?? null, limit],
    );
    return rows.map(toRecord);
  }

  /** One job; `NOT_FOUND` when absent or (with `tenantId`) another tenant's. */
  async get(id: string, options: { tenantId?: string | undefined } = {}): Promise<JobRecord> {
    const row = await this.#one(
      `SELECT ${COLUMNS} FROM tenantry.jobs WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)`,
      id,
      options.tenantId,
    );
    return toRecord(row);
  }

  /**
   * Cancels a job: a pending one at once; a running one is asked to stop (its signal
   * aborts within a third of the lease, its transaction rolls back, it is not retried).
   * `NOT_FOUND` unless the job is pending or running.
   */
  async cancel(id: string, options: { tenantId?: string | undefined } = {}): Promise<JobRecord> {
    const row = await this.#one(
      `UPDATE tenantry.jobs SET
              state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END,
              finished_at = CASE WHEN state = 'pending' THEN clock_timestamp() ELSE finished_at END,
              cancel_requested = (state = 'running')
        WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND state IN ('pending', 'running')
        RETURNING ${COLUMNS}`,
      id,
      options.tenantId,
    );
    return toRecord(row);
  }

  /**
   * Runs a dead-lettered or cancelled job again, attempts reset. `NOT_FOUND` unless the
   * job is failed or cancelled.
   */
  async retry(id: string, options: { tenantId?: string | undefined } = {}): Promise<JobRecord> {
    const row = await this.#one(
      `UPDATE tenantry.jobs SET state = 'pending', attempts = 0, run_at = clock_timestamp(), finished_at = NULL,
              cancel_requested = false, last_error = NULL
        WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND state IN ('failed', 'cancelled')
        RETURNING ${COLUMNS}`,
      id,
      options.tenantId,
    );
    this.#wake();
    return toRecord(row);
  }

  /**
   * Per-tenant backlog and age: of one tenant, or of every tenant that has jobs
   * (largest backlog first, at most `limit`, default 100).
   */
  async stats(options: { tenantId?: string | undefined; limit?: number } = {}): Promise<TenantJobStats[]> {
    if (options.tenantId !== undefined && !UUID_PATTERN.test(String(options.tenantId))) return [];
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 100), 1), 10_000);
    const { rows } = await this.#pool.query<{
      tenant_id: string;
      slug: string;
      plan: string;
      backlog: number;
      scheduled: number;
      running: number;
      failed: number;
      oldest: number;
    }>(
      `SELECT t.id AS tenant_id, t.slug, t.plan,
              count(*) FILTER (WHERE j.state = 'pending' AND j.run_at <= now())::int AS backlog,
              count(*) FILTER (WHERE j.state = 'pending' AND j.run_at > now())::int AS scheduled,
              count(*) FILTER (WHERE j.state = 'running')::int AS running,
              count(*) FILTER (WHERE j.state = 'failed')::int AS failed,
              coalesce(extract(epoch FROM now() - min(j.run_at) FILTER (WHERE j.state = 'pending' AND j.run_at <= now())), 0)::float8 AS oldest
         FROM tenantry.jobs j JOIN tenantry.tenants t ON t.id = j.tenant_id
        WHERE j.state IN ('pending', 'running', 'failed') AND ($1::uuid IS NULL OR j.tenant_id = $1)
        GROUP BY t.id, t.slug, t.plan
        ORDER BY backlog DESC, t.slug LIMIT $2`,
      [options.tenantId ?? null, limit],
    );
    return rows.map((r) => ({
      tenantId: r.tenant_id,
      slug: r.slug,
      plan: r.plan,
      backlog: r.backlog,
      scheduled: r.scheduled,
      running: r.running,
      failed: r.failed,
      oldestAgeSeconds: Math.max(0, Math.round(r.oldest * 1000) / 1000),
    }));
  }

  /**
   * Backlog, running jobs, dead letters and oldest waiting age per plan: what the
   * Prometheus gauges show (plans are few; tenants are never a label).
   */
  async planStats(): Promise<PlanJobStats[]> {
    const { rows } = await this.#pool.query<PlanJobStats>(
      `SELECT t.plan,
              count(*) FILTER (WHERE j.state = 'pending' AND j.run_at <= now())::int AS backlog,
              count(*) FILTER (WHERE j.state = 'running')::int AS running,
              count(*) FILTER (WHERE j.state = 'failed')::int AS failed,
              coalesce(extract(epoch FROM now() - min(j.run_at) FILTER (WHERE j.state = 'pending' AND j.run_at <= now())), 0)::float8
                AS "oldestAgeSeconds"
         FROM tenantry.jobs j JOIN tenantry.tenants t ON t.id = j.tenant_id
        WHERE j.state IN ('pending', 'running', 'failed')
        GROUP BY t.plan ORDER BY t.plan`,
    );
    return rows;
  }

  /**
   * Deletes completed and cancelled jobs that finished more than `olderThanMs` ago
   * (default a day), in batches; returns how many. Dead letters stay until retried.
   */
  async purgeFinished(olderThanMs = 24 * 3600_000): Promise<number> {
    let total = 0;
    for (;;) {
      const { rowCount } = await this.#pool.query(
        `DELETE FROM tenantry.jobs WHERE id IN (SELECT id FROM tenantry.jobs
          WHERE state IN ('completed', 'cancelled') AND finished_at < now() - make_interval(secs => $1::double precision / 1000)
          LIMIT 5000)`,
        [olderThanMs],
      );
      total += rowCount ?? 0;
      if (!rowCount || rowCount < 5000) return total;
    }
  }

  async #one(sql: string, id: string, tenantId: string | undefined): Promise<JobRow> {
    if (!JOB_ID.test(String(id))) throw new TenantryError('NOT_FOUND', 'no such job');
    if (tenantId !== undefined && !UUID_PATTERN.test(String(tenantId))) {
      throw new TenantryError('NOT_FOUND', 'no such job');
    }
    const { rows } = await this.#pool.query<JobRow>(sql, [id, tenantId ?? null]);
    const row = rows[0];
    if (!row) throw new TenantryError('NOT_FOUND', 'no such job');
    return row;
  }
}
