import { TenantryError } from '../errors/catalog.ts';
import type { FleetOptions, FleetReport } from '../fleet/fleet-run.ts';

/** A fleet migration started from the console, as its progress panel shows it. */
export interface FleetRunState {
  readonly startedAt: Date;
  readonly actor: string;
  readonly canary: FleetOptions['canary'] | undefined;
  done: number;
  total: number;
  failed: number;
  finishedAt?: Date;
  report?: FleetReport;
  /** Why the run stopped before it began on any target (a bad option, the database away). */
  error?: string;
}

/**
 * The fleet migration this server runs for the console, one at a time: started by a form
 * post, carried on in the background by `tenantry.migrateFleet`, its `onProgress` counts
 * kept here for the progress panel that htmx polls. The runner itself is the CLI's, so a
 * console run and `tenantry migrate` behave alike (locks per target, resumable).
 *
 * @example
 * ```ts
 * const runs = new FleetRuns();
 * runs.start('admin-console:ab12cd34', { canary: 2 }, (o) => tenantry.migrateFleet(o));
 * runs.current?.done;
 * ```
 */
export class FleetRuns {
  #current: FleetRunState | undefined;

  /** The latest run (running or finished), if this server started one. */
  get current(): Readonly<FleetRunState> | undefined {
    return this.#current;
  }

  /** Whether a run is under way. */
  get running(): boolean {
    return this.#current !== undefined && this.#current.finishedAt === undefined;
  }

  /** Starts a run unless one is under way (`LOCK_BUSY`); returns at once. */
  start(
    actor: string,
    options: Omit<FleetOptions, 'onProgress'>,
    migrate: (options: FleetOptions) => Promise<FleetReport>,
  ): Readonly<FleetRunState> {
    if (this.running)
      throw new TenantryError('LOCK_BUSY', 'a fleet migration started from the console is still running');
    const state: FleetRunState = { startedAt: new Date(), actor, canary: options.canary, done: 0, total: 0, failed: 0 };
    this.#current = state;
    migrate({
      ...options,
      onProgress: (done, total, failed) => {
        state.done = done;
        state.total = total;
        state.failed = failed;
      },
    }).then(
      (report) => {
        state.report = report;
        state.finishedAt = new Date();
      },
      (error: unknown) => {
        state.error = error instanceof Error ? error.message : String(error);
        state.finishedAt = new Date();
      },
    );
    return state;
  }
}
