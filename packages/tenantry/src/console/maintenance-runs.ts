import { randomUUID } from 'node:crypto';
import type { MaintenanceReport, MaintenanceRequest } from '../dbops/maintenance.ts';
import type { MaintenanceProgress } from '../dbops/maintenance-progress.ts';
import { TenantryError } from '../errors/catalog.ts';

/** A maintenance run started from the console, as its progress panel shows it. */
export interface MaintenanceRunState {
  readonly id: string;
  readonly operation: 'analyze' | 'vacuum';
  /** The tenant's slug, or `undefined` for the shared tables. */
  readonly tenant: string | undefined;
  readonly actor: string;
  readonly startedAt: Date;
  /** What PostgreSQL reported last (`pg_stat_progress_vacuum` / `_analyze`), while a statement runs. */
  progress?: MaintenanceProgress;
  finishedAt?: Date;
  report?: MaintenanceReport;
  /** Why it failed: the error's code and message. */
  error?: { code: string; message: string };
}

/** Finished runs kept for their panels (the oldest go first); running ones are always kept. */
const KEEP = 20;

/**
 * The `ANALYZE` / `VACUUM` runs this server started for the console, in the background: a
 * form post starts one and returns at once; `tenantry.dbops.maintain` runs it (the API's and
 * CLI's runner: advisory lock per target, audit entry) and reports PostgreSQL's progress about
 * once a second, kept here for the panel htmx polls. One run at a time per target here;
 * another server's run on the same target is refused by the runner's lock and shows as failed.
 *
 * @example
 * ```ts
 * const runs = new MaintenanceRuns();
 * const run = runs.start({ operation: 'vacuum', tenant: 'acme', actor: 'admin-console:ab12cd34' }, (r) =>
 *   tenantry.dbops.maintain(r),
 * );
 * runs.get(run.id)?.progress?.phase;
 * ```
 */
export class MaintenanceRuns {
  readonly #runs = new Map<string, MaintenanceRunState>();

  /** The run with this id, if this server started it and still keeps it. */
  get(id: string): Readonly<MaintenanceRunState> | undefined {
    return this.#runs.get(id);
  }

  /** The latest run, if any. */
  get latest(): Readonly<MaintenanceRunState> | undefined {
    let last: MaintenanceRunState | undefined;
    for (const run of this.#runs.values()) last = run;
    return last;
  }

  /** Starts a run unless one on the same target is under way (`MAINTENANCE_IN_PROGRESS`); returns at once. */
  start(
    request: { operation: 'analyze' | 'vacuum'; tenant: string | undefined; actor: string },
    maintain: (request: MaintenanceRequest & { tenant?: string }) => Promise<MaintenanceReport>,
  ): Readonly<MaintenanceRunState> {
    for (const run of this.#runs.values()) {
      if (run.finishedAt === undefined && run.tenant === request.tenant) {
        throw new TenantryError('MAINTENANCE_IN_PROGRESS', request.tenant ?? 'shared');
      }
    }
    const state: MaintenanceRunState = { id: randomUUID(), ...request, startedAt: new Date() };
    this.#runs.set(state.id, state);
    this.#trim();
    maintain({
      operation: request.operation,
      actor: request.actor,
      ...(request.tenant !== undefined ? { tenant: request.tenant } : {}),
      onProgress: (progress) => {
        state.progress = progress;
      },
    }).then(
      (report) => {
        state.report = report;
        state.finishedAt = new Date();
      },
      (error: unknown) => {
        state.error =
          error instanceof TenantryError
            ? { code: error.code, message: error.message }
            : { code: 'MAINTENANCE_FAILED', message: error instanceof Error ? error.message : String(error) };
        state.finishedAt = new Date();
      },
    );
    return state;
  }

  #trim(): void {
    let finished = [...this.#runs.values()].filter((r) => r.finishedAt !== undefined).length;
    for (const [id, run] of this.#runs) {
      if (finished <= KEEP) return;
      if (run.finishedAt === undefined) continue;
      this.#runs.delete(id);
      finished--;
    }
  }
}
