import type { Readable, Writable } from 'node:stream';
import type { Pool, PoolClient } from 'pg';
import { inTransaction } from '../control/admin-transaction.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { writeAudit } from '../effects/audit.ts';
import { isTenantryError, TenantryError } from '../errors/catalog.ts';
import type { ExportManifest } from './archive-format.ts';
import { ChunkWriter, readChunks } from './export-chunks.ts';
import type { ExportOptions, ExportProgress } from './tenant-export.ts';

/** What export jobs need of Tenantry: the control plane, and the export itself (`tenantry.exportTenant`). */
export interface ExportSource {
  readonly adminPool: Pool;
  exportTenant(tenant: string, out: Writable, options?: ExportOptions): Promise<ExportManifest>;
}

/** Options of {@link ExportJobs}. */
export interface ExportJobsOptions {
  /** How long a finished job (and its archive) is kept, ms (default 24 h); then it is gone (404). */
  readonly retentionMs?: number;
  /** How often a running job writes its progress and heartbeat, ms (default 1,000). */
  readonly heartbeatMs?: number;
  /** A running job whose heartbeat is older than this is taken as dead (its instance stopped), ms (default 2 min). */
  readonly staleAfterMs?: number;
  /** Called when writing a job's state fails in the background (default: ignored). */
  readonly onError?: (error: unknown) => void;
}

/** Status of an export job. */
export type ExportJobStatus = 'running' | 'done' | 'failed';

/** An export job as any instance reports it. */
export interface ExportJob {
  readonly id: string;
  readonly tenantId: string;
  readonly status: ExportJobStatus;
  /** Totals are `null` until the export has counted them in its snapshot. */
  readonly progress: {
    readonly tablesDone: number;
    readonly tablesTotal: number | null;
    readonly rowsDone: number;
    readonly rowsTotal: number | null;
  };
  /** Size and SHA-256 of the archive, once done. */
  readonly bytes: number | null;
  readonly sha256: string | null;
  /** Error code of a failed job (a code of the catalog; `EXPORT_INTERRUPTED` when its instance stopped). */
  readonly errorCode: string | null;
  readonly createdAt: Date;
  readonly finishedAt: Date | null;
  /** When a finished job and its archive are removed. */
  readonly expiresAt: Date | null;
}

interface JobRow {
  id: string;
  tenant_id: string;
  status: ExportJobStatus;
  tables_done: number;
  tables_total: number | null;
  rows_done: string;
  rows_total: string | null;
  chunks: number | null;
  bytes: string | null;
  sha256: string | null;
  error_code: string | null;
  created_at: Date;
  finished_at: Date | null;
  expires_at: Date | null;
}

function toJob(row: JobRow): ExportJob {
  return Object.freeze({
    id: row.id,
    tenantId: row.tenant_id,
    status: row.status,
    progress: {
      tablesDone: row.tables_done,
      tablesTotal: row.tables_total,
      rowsDone: Number(row.rows_done),
      rowsTotal: row.rows_total === null ? null : Number(row.rows_total),
    },
    bytes: row.bytes === null ? null : Number(row.bytes),
    sha256: row.sha256,
    errorCode: row.error_code,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    expiresAt: row.expires_at,
  });
}

/** Jobs past their retention are as gone as removed ones, swept or not. */
const LIVE = '(expires_at IS NULL OR expires_at > now())';

/**
 * Tenant exports as asynchronous jobs, what `POST /v1/tenants/{id}/exports` runs. The job's
 * state is a row of `tenantry.export_jobs` (any instance reports it); the archive is the
 * one `tenantry.exportTenant` writes, stored as it is written in `tenantry.export_chunks`
 * (1 MiB rows, so memory stays at one chunk and any instance can stream it back). One
 * export runs per tenant at a time (`EXPORT_IN_PROGRESS` for a second, on any instance).
 * Finished jobs are kept `retentionMs` (24 h), then removed by {@link sweep}; a job whose
 * instance died is marked failed (`EXPORT_INTERRUPTED`) once its heartbeat is stale.
 * Archives go with their tenant when it is erased (the rows cascade, and the erasure's
 * verification counts them).
 *
 * @example
 * ```ts
 * const jobs = new ExportJobs(tenantry);
 * const job = await jobs.start(await tenantry.tenants.get('acme'), { actor: 'ops' });
 * // later, from any instance:
 * const { status, progress } = await jobs.get(job.tenantId, job.id);
 * if (status === 'done') (await jobs.download(job.tenantId, job.id)).pipe(createWriteStream('acme.tar'));
 * ```
 */
export class ExportJobs {
  readonly #source: ExportSource;
  readonly #pool: Pool;
  readonly #retentionMs: number;
  readonly #heartbeatMs: number;
  readonly #staleAfterMs: number;
  readonly #onError: (error: unknown) => void;
  readonly #running = new Map<string, { done: Promise<void>; abort: AbortController }>();

  constructor(source: ExportSource, options: ExportJobsOptions = {}) {
    this.#source = source;
    this.#pool = source.adminPool;
    this.#retentionMs = options.retentionMs ?? 24 * 3600_000;
    this.#heartbeatMs = options.heartbeatMs ?? 1000;
    this.#staleAfterMs = options.staleAfterMs ?? 120_000;
    this.#onError = options.onError ?? (() => {});
  }

  /**
   * Starts an export of `tenant` in the background and returns the job (`running`). Audited
   * (`tenant.export_started`). `EXPORT_IN_PROGRESS` when one is already running for it.
   */
  async start(tenant: TenantRecord, options: { actor?: string } = {}): Promise<ExportJob> {
    const actor = options.actor ?? 'system';
    const job = await inTransaction(this.#pool, async (client) => {
      await this.#failStale(client, tenant.id);
      const { rows } = await client.query<JobRow>(
        `INSERT INTO tenantry.export_jobs (tenant_id, actor) VALUES ($1, $2)
         ON CONFLICT (tenant_id) WHERE status = 'running' DO NOTHING RETURNING *`,
        [tenant.id, actor],
      );
      if (!rows[0]) throw new TenantryError('EXPORT_IN_PROGRESS');
      await writeAudit(client, {
        actor,
        tenantId: tenant.id,
        action: 'tenant.export_started',
        details: { jobId: rows[0].id },
      });
      return toJob(rows[0]);
    });
    const abort = new AbortController();
    const done = this.#run(job, abort.signal).finally(() => this.#running.delete(job.id));
    this.#running.set(job.id, { done, abort });
    return job;
  }

  /** The job `jobId` of `tenantId`; `NOT_FOUND` when it is another tenant's, expired or unknown. */
  async get(tenantId: string, jobId: string): Promise<ExportJob> {
    const { rows } = await this.#pool.query<JobRow>(
      `SELECT * FROM tenantry.export_jobs WHERE id = $1 AND tenant_id = $2 AND ${LIVE}`,
      [jobId, tenantId],
    );
    if (!rows[0]) throw new TenantryError('NOT_FOUND', 'export job');
    return toJob(rows[0]);
  }

  /** The archive of a done job, streamed from its chunks; `EXPORT_NOT_READY` while running or when failed. */
  async download(tenantId: string, jobId: string): Promise<{ job: ExportJob; archive: Readable }> {
    const { rows } = await this.#pool.query<JobRow>(
      `SELECT * FROM tenantry.export_jobs WHERE id = $1 AND tenant_id = $2 AND ${LIVE}`,
      [jobId, tenantId],
    );
    const row = rows[0];
    if (!row) throw new TenantryError('NOT_FOUND', 'export job');
    if (row.status !== 'done') {
      throw new TenantryError('EXPORT_NOT_READY', `the job is ${row.status}`, {
        details: { status: row.status, ...(row.error_code ? { errorCode: row.error_code } : {}) },
      });
    }
    return { job: toJob(row), archive: readChunks(this.#pool, row.id, row.chunks ?? 0) };
  }

  /**
   * Removes jobs past their retention (their archives cascade) and marks running jobs
   * whose heartbeat stopped as failed. Any instance may run it; {@link startSweeping} runs it
   * periodically.
   */
  async sweep(): Promise<{ expired: number; interrupted: number }> {
    const interrupted = await inTransaction(this.#pool, (client) => this.#failStale(client, null));
    const expired = await this.#pool.query('DELETE FROM tenantry.export_jobs WHERE expires_at <= now()');
    return { expired: expired.rowCount ?? 0, interrupted };
  }

  /** Runs {@link sweep} every `intervalMs` (default 10 min) until the returned function is called. */
  startSweeping(intervalMs = 600_000): () => void {
    const timer = setInterval(() => void this.sweep().catch(this.#onError), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Stops this instance's running jobs (they end `failed`, `EXPORT_INTERRUPTED`) and waits for them. */
  async close(): Promise<void> {
    const running = [...this.#running.values()];
    for (const job of running) job.abort.abort(new TenantryError('EXPORT_INTERRUPTED'));
    await Promise.all(running.map((job) => job.done));
  }

  async #run(job: ExportJob, signal: AbortSignal): Promise<void> {
    const sink = new ChunkWriter(this.#pool, job.id, job.tenantId);
    let progress: ExportProgress | undefined;
    let beating = false;
    const beat = setInterval(() => {
      if (beating) return;
      beating = true;
      this.#beat(job.id, progress)
        .catch(this.#onError)
        .finally(() => {
          beating = false;
        });
    }, this.#heartbeatMs);
    beat.unref();
    try {
      await this.#source.exportTenant(job.tenantId, sink, {
        signal,
        onProgress: (p) => {
          progress = p;
        },
      });
      const stored = sink.stored();
      const { rowCount } = await this.#pool.query(
        `UPDATE tenantry.export_jobs SET status = 'done', chunks = $2, bytes = $3, sha256 = $4,
           tables_done = coalesce($5, tables_done), tables_total = coalesce($6, tables_total),
           rows_done = coalesce($7, rows_done), rows_total = coalesce($8, rows_total),
           heartbeat_at = now(), finished_at = now(), expires_at = now() + $9 * interval '1 millisecond'
         WHERE id = $1 AND status = 'running'`,
        [
          job.id,
          stored.chunks,
          stored.bytes,
          stored.sha256,
          progress?.tablesDone ?? null,
          progress?.tablesTotal ?? null,
          progress?.rowsDone ?? null,
          progress?.rowsTotal ?? null,
          this.#retentionMs,
        ],
      );
      // Marked interrupted meanwhile (a heartbeat was late): the archive is not handed out.
      if (rowCount === 0) await this.#dropChunks(job.id);
    } catch (error) {
      sink.destroy();
      const code = signal.aborted ? 'EXPORT_INTERRUPTED' : isTenantryError(error) ? error.code : 'INTERNAL';
      if (!isTenantryError(error)) this.#onError(error);
      await this.#pool
        .query(
          `UPDATE tenantry.export_jobs SET status = 'failed', error_code = $2, finished_at = now(),
             expires_at = now() + $3 * interval '1 millisecond' WHERE id = $1 AND status = 'running'`,
          [job.id, code, this.#retentionMs],
        )
        .catch(this.#onError);
      await this.#dropChunks(job.id).catch(this.#onError);
    } finally {
      clearInterval(beat);
    }
  }

  async #beat(jobId: string, p: ExportProgress | undefined): Promise<void> {
    await this.#pool.query(
      `UPDATE tenantry.export_jobs SET heartbeat_at = now(),
         tables_done = coalesce($2, tables_done), tables_total = coalesce($3, tables_total),
         rows_done = coalesce($4, rows_done), rows_total = coalesce($5, rows_total)
       WHERE id = $1 AND status = 'running'`,
      [jobId, p?.tablesDone ?? null, p?.tablesTotal ?? null, p?.rowsDone ?? null, p?.rowsTotal ?? null],
    );
  }

  async #dropChunks(jobId: string): Promise<void> {
    await this.#pool.query('DELETE FROM tenantry.export_chunks WHERE job_id = $1', [jobId]);
  }

  /** Marks running jobs (of one tenant, or all) whose heartbeat stopped as failed, and drops their chunks. */
  async #failStale(client: PoolClient, tenantId: string | null): Promise<number> {
    const { rows } = await client.query<{ id: string }>(
      `UPDATE tenantry.export_jobs SET status = 'failed', error_code = 'EXPORT_INTERRUPTED', finished_at = now(),
         expires_at = now() + $3 * interval '1 millisecond'
       WHERE status = 'running' AND heartbeat_at < now() - $2 * interval '1 millisecond'
         AND ($1::uuid IS NULL OR tenant_id = $1) RETURNING id`,
      [tenantId, this.#staleAfterMs, this.#retentionMs],
    );
    if (rows.length > 0) {
      await client.query('DELETE FROM tenantry.export_chunks WHERE job_id = ANY($1::uuid[])', [rows.map((r) => r.id)]);
    }
    return rows.length;
  }
}
