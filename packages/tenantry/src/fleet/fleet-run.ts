import pg from 'pg';
import { integerOption } from '../config.ts';
import { TenantryError } from '../errors/catalog.ts';
import { recordFailure } from '../tiers/targets.ts';
import { type FleetDeps, type FleetTarget, planFleet } from './fleet-plan.ts';
import { migrateTarget, type TargetRun } from './fleet-target.ts';

/**
 * Most targets a fleet run migrates at once: each holds a connection to the main database
 * (and one to its own database, for the database tier).
 *
 * @example
 * ```ts
 * await tenantry.migrateFleet({ concurrency: Math.min(16, FLEET_MAX_CONCURRENCY) });
 * ```
 */
export const FLEET_MAX_CONCURRENCY = 64;

/**
 * Targets a fleet run migrates at once unless told otherwise. A target's time is mostly
 * waiting — three round trips, its locks, its commit's flush — so a server keeps busy with
 * several per core: measured on 2 vCPUs (BENCHMARKS.md, 1,000 and 10,000 schemas), 1 and 2
 * at a time were slower than a one-connection loop (0.6×, 0.8–1.0×), 8 faster (1.1–1.6×),
 * 16 faster still (2.1–2.3×, but partly by taking CPU from the other work on that shared
 * machine, and with 16 connections held). 8 keeps most of the gain with half the connections.
 *
 * @example
 * ```ts
 * await tenantry.migrateFleet({ concurrency: FLEET_DEFAULT_CONCURRENCY * 2 });
 * ```
 */
export const FLEET_DEFAULT_CONCURRENCY = 8;

/**
 * Options of {@link migrateFleet}.
 *
 * @example
 * ```ts
 * await tenantry.migrateFleet({ concurrency: 8, canary: ['acme', 'globex'], onProgress: (done, total) => log(done, total) });
 * ```
 */
export interface FleetOptions {
  /** Targets migrated at once, each on a connection of its own (default {@link FLEET_DEFAULT_CONCURRENCY}: 8; at most {@link FLEET_MAX_CONCURRENCY}). */
  concurrency?: number;
  /**
   * Migrate a first cohort alone, and stop if any of it fails: the first N targets of the
   * plan, or the targets of the tenants with these slugs.
   */
  canary?: number | readonly string[];
  /**
   * How long a target waits for a lock (its row, its migration lock, or a table a tenant
   * transaction holds) before it fails and the run moves on (default 10 s; 0: forever).
   * An `ALTER TABLE` waiting on a long tenant transaction would otherwise queue every later
   * query on that table behind it: the tenant stalls instead of one target being retried.
   */
  lockTimeoutMs?: number;
  /** Called after each target (and once before the first) with counts so far. */
  onProgress?: (done: number, total: number, failed: number) => void;
}

/** A target the run could not migrate: rolled back, and its error recorded in `last_error`. */
export interface FleetFailure {
  readonly target: string;
  /** Slug of the target's tenant, when it has one. */
  readonly tenant?: string;
  readonly error: string;
}

/**
 * What {@link migrateFleet} did.
 *
 * @example
 * ```ts
 * const report = await tenantry.migrateFleet();
 * for (const f of report.failed) console.error(`${f.target} (${f.tenant ?? '-'}): ${f.error}`);
 * ```
 */
export interface FleetReport {
  /** Targets in the plan. */
  readonly total: number;
  readonly migrated: number;
  readonly failed: readonly FleetFailure[];
  /** Left alone: after a failed canary, or found at head (or gone) when their turn came. */
  readonly skipped: number;
  readonly durationMs: number;
  /** The canary cohort, when one ran first; when it did not pass, the rest was not touched. */
  readonly canary: { readonly size: number; readonly passed: boolean } | null;
}

/**
 * Brings every target of {@link planFleet} to head, `concurrency` at a time. Each target
 * is migrated in one transaction under its own lock, so a killed run leaves each one
 * either untouched or at head, and running again finishes the job:
 *
 * - in the main database (shared tables, tenant schemas, warm schemas) the migrations and
 *   the new `applied_count` commit together;
 * - in a tenant database or template, the migrations commit there (with that database's
 *   ledger), then the count in the main database; a run killed between the two finds
 *   nothing left to apply there next time, and only records it.
 *
 * A failing target is rolled back, its error recorded in `last_error`, and the run goes on.
 *
 * @example
 * ```ts
 * const report = await migrateFleet(deps, { concurrency: 8, canary: 10 });
 * if (report.failed.length > 0) console.error(report.failed);
 * ```
 */
export async function migrateFleet(deps: FleetDeps, options: FleetOptions = {}): Promise<FleetReport> {
  const started = performance.now();
  const concurrency = integerOption(
    options.concurrency,
    FLEET_DEFAULT_CONCURRENCY,
    1,
    FLEET_MAX_CONCURRENCY,
    'concurrency',
    'INVALID_INPUT',
  );
  const lockTimeoutMs = integerOption(options.lockTimeoutMs, 10_000, 0, 86_400_000, 'lockTimeoutMs', 'INVALID_INPUT');
  const plan = await planFleet(deps);
  const [cohort, rest] = await splitCanary(deps, plan.targets, options.canary);
  const total = plan.targets.length;
  const failed: FleetFailure[] = [];
  let migrated = 0;
  let skipped = 0;
  const report = (canary: FleetReport['canary']): FleetReport =>
    Object.freeze({
      total,
      migrated,
      failed: Object.freeze(failed),
      skipped,
      durationMs: Math.round(performance.now() - started),
      canary,
    });
  options.onProgress?.(0, total, 0);
  if (total === 0) return report(null);

  // A pool of the run's own, sized to it: the admin pool serves the application meanwhile.
  const pool = new pg.Pool({
    connectionString: deps.config.databaseUrl,
    max: concurrency,
    application_name: 'tenantry fleet',
  });
  pool.on('error', () => {}); // an idle connection lost: the next target reconnects
  pool.on('connect', (client) => client.on('error', () => {})); // its query fails, and that target with it
  const run: TargetRun = { deps, pool, plan, lockTimeoutMs };
  const migrate = (targets: readonly FleetTarget[]) =>
    eachLimited(targets, concurrency, async (entry) => {
      try {
        if ((await migrateTarget(run, entry)) === 'migrated') migrated++;
        else skipped++;
      } catch (error) {
        const message = describe(error);
        failed.push({
          target: entry.target,
          ...(entry.tenantSlug ? { tenant: entry.tenantSlug } : {}),
          error: message,
        });
        await recordFailure(pool, entry.target, message).catch(() => {});
      }
      options.onProgress?.(migrated + skipped + failed.length, total, failed.length);
    });
  try {
    if (cohort) {
      await migrate(cohort);
      if (failed.length > 0) {
        skipped += rest.length;
        options.onProgress?.(total, total, failed.length);
        return report({ size: cohort.length, passed: false });
      }
    }
    await migrate(rest);
    return report(cohort ? { size: cohort.length, passed: true } : null);
  } finally {
    await pool.end();
  }
}

/** Splits the plan into the canary cohort (`undefined` without one) and the rest. */
async function splitCanary(
  deps: FleetDeps,
  targets: readonly FleetTarget[],
  canary: FleetOptions['canary'],
): Promise<[readonly FleetTarget[] | undefined, readonly FleetTarget[]]> {
  if (canary === undefined) return [undefined, targets];
  if (typeof canary === 'number') {
    const n = integerOption(canary, 1, 1, Number.MAX_SAFE_INTEGER, 'canary', 'INVALID_INPUT');
    return [targets.slice(0, n), targets.slice(n)];
  }
  const slugs = new Set(canary);
  if (slugs.size === 0) throw new TenantryError('INVALID_INPUT', 'canary: name at least one tenant slug');
  const { rows } = await deps.admin.query<{ slug: string }>('SELECT slug FROM tenantry.tenants WHERE slug = ANY($1)', [
    [...slugs],
  ]);
  const known = new Set(rows.map((r) => r.slug));
  const unknown = [...slugs].filter((s) => !known.has(s));
  if (unknown.length > 0) throw new TenantryError('INVALID_INPUT', `canary: no tenant with slug ${unknown.join(', ')}`);
  const inCohort = (t: FleetTarget) => t.tenantSlug !== null && slugs.has(t.tenantSlug);
  return [targets.filter(inCohort), targets.filter((t) => !inCohort(t))];
}

/**
 * Runs `fn` on every item, at most `limit` at once; `fn` must not throw. The fleet's one
 * concurrency model: fleet migrations and fleet maintenance (`dbops/`) both use it.
 */
export async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The error and its causes in one line: MIGRATION_FAILED's own message names the target, its cause says why. */
function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && parts.length < 5; e = (e as { cause?: unknown }).cause) {
    const message = e instanceof Error ? e.message : String(e);
    if (!parts.includes(message)) parts.push(message);
    if (!(e instanceof Error)) break;
  }
  return parts.join(': ');
}
