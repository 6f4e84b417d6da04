import pg, { type ClientBase, type Pool, type PoolClient } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import type { PlacementRegistry } from '../control/placements.ts';
import { TenantryError } from '../errors/catalog.ts';
import { applyPendingMigrations, type MigrationTarget } from '../migrate/runner.ts';
import type { Provisioner } from '../tiers/provisioner.ts';
import { recordFailure, recordProgress, type TargetKind, type TargetState } from '../tiers/targets.ts';

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

/** One target behind head, as the control plane records it (`tenantry.targets`). */
export interface FleetTarget {
  /** Target id: `shared`, `schema/<placement>/<schema>`, `database/…` or `template/…`. */
  readonly target: string;
  readonly kind: TargetKind;
  readonly state: TargetState;
  /** `null` for the shared tables, warm schemas and templates. */
  readonly tenantId: string | null;
  readonly tenantSlug: string | null;
  readonly placementId: string;
  /** `null`: the placement's own database (the main one for placements without a URL). */
  readonly databaseName: string | null;
  readonly schemaName: string;
  readonly appliedCount: number;
  /** Ids of the migrations a run would apply, in order. */
  readonly pending: readonly string[];
  /** Why the last run on this target failed, if it did (cleared when one succeeds). */
  readonly lastError: string | null;
}

/**
 * What {@link planFleet} found: every target behind head, the shared tables first, warm
 * schemas and templates last.
 *
 * @example
 * ```ts
 * const { targets, version } = await tenantry.planFleet();
 * const stuck = targets.filter((t) => t.lastError !== null);
 * ```
 */
export interface FleetPlan {
  /** Number of tenant migrations: a target with this many applied is at head. */
  readonly head: number;
  /** Id of the last migration (`null` without migrations). */
  readonly version: string | null;
  readonly targets: readonly FleetTarget[];
}

/**
 * Options of {@link migrateFleet}.
 *
 * @example
 * ```ts
 * await tenantry.migrateFleet({ concurrency: 8, canary: ['acme', 'globex'], onProgress: (done, total) => log(done, total) });
 * ```
 */
export interface FleetOptions {
  /** Targets migrated at once, each on a connection of its own (default 4, at most {@link FLEET_MAX_CONCURRENCY}). */
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
 * What the fleet runner needs from a `Tenantry` (its config, pools and registries);
 * `tenantry.planFleet()` and `tenantry.migrateFleet()` pass their own.
 *
 * @example
 * ```ts
 * const deps = { config: tenantry.config, admin: tenantry.adminPool, placements: tenantry.placements, provisioner: tenantry.provisioner };
 * ```
 */
export interface FleetDeps {
  readonly config: ResolvedConfig;
  /** Admin pool of the main database: plans and control-plane lookups. */
  readonly admin: Pool;
  readonly placements: PlacementRegistry;
  readonly provisioner: Provisioner;
}

interface PlanRow {
  id: string;
  kind: TargetKind;
  state: TargetState;
  tenant_id: string | null;
  slug: string | null;
  placement_id: string;
  database_name: string | null;
  schema_name: string;
  applied_count: number;
  last_error: string | null;
}

/**
 * Every target behind head, from the control plane alone: one indexed query on
 * `tenantry.targets`, never a visit to a schema or database, so a fleet that is at head
 * costs milliseconds whatever its size. Warm schemas and templates are included: they are
 * copied into tenants later and must be at head when they are.
 *
 * @example
 * ```ts
 * const plan = await planFleet(deps);
 * for (const t of plan.targets) console.log(t.target, t.tenantSlug, t.pending.join(', '));
 * ```
 */
export async function planFleet(deps: FleetDeps): Promise<FleetPlan> {
  const { migrations } = deps.config;
  const head = migrations.length;
  const ids = migrations.map((m) => m.id);
  const { rows } = await deps.admin.query<PlanRow>(
    `SELECT t.id, t.kind, t.state, t.tenant_id, n.slug, t.placement_id, t.database_name, t.schema_name,
            t.applied_count, t.last_error
       FROM tenantry.targets t LEFT JOIN tenantry.tenants n ON n.id = t.tenant_id
      WHERE t.state IN ('warm', 'active') AND t.applied_count < $1
      ORDER BY t.kind = 'shared' DESC, t.state = 'warm' OR t.kind = 'template', t.id`,
    [head],
  );
  if (head > 0 && rows[0]?.kind !== 'shared') {
    // No `shared` row: `migrate()` never ran on this version. Its ledger says how far the
    // shared tables are; the run creates the row.
    const shared = await deps.admin.query<PlanRow>(
      `SELECT 'shared' AS id, 'shared' AS kind, 'active' AS state, NULL AS tenant_id, NULL AS slug,
              p.id AS placement_id, NULL AS database_name, $1::text AS schema_name, NULL AS last_error,
              (SELECT count(*)::int FROM tenantry.migrations m WHERE m.chain = 'tenant' AND m.target = 'shared')
                AS applied_count
         FROM tenantry.placements p
        WHERE p.name = 'shared' AND NOT EXISTS (SELECT 1 FROM tenantry.targets WHERE id = 'shared')`,
      [deps.config.tenantSchema],
    );
    const row = shared.rows[0];
    if (row && row.applied_count < head) rows.unshift(row);
  }
  const targets = rows.map((r) =>
    Object.freeze({
      target: r.id,
      kind: r.kind,
      state: r.state,
      tenantId: r.tenant_id,
      tenantSlug: r.slug,
      placementId: r.placement_id,
      databaseName: r.database_name,
      schemaName: r.schema_name,
      appliedCount: r.applied_count,
      pending: Object.freeze(ids.slice(r.applied_count)),
      lastError: r.last_error,
    }),
  );
  return Object.freeze({ head, version: ids.at(-1) ?? null, targets: Object.freeze(targets) });
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
  const concurrency = integerOption(options.concurrency, 4, 1, FLEET_MAX_CONCURRENCY, 'concurrency');
  const lockTimeoutMs = integerOption(options.lockTimeoutMs, 10_000, 0, 86_400_000, 'lockTimeoutMs');
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

interface TargetRun {
  readonly deps: FleetDeps;
  readonly pool: Pool;
  readonly plan: FleetPlan;
  readonly lockTimeoutMs: number;
}

/** Migrates one target; 'skipped' when it turned out to be at head, gone or retiring. */
async function migrateTarget(run: TargetRun, entry: FleetTarget): Promise<'migrated' | 'skipped'> {
  const { config, placements, provisioner } = run.deps;
  const { head, version } = run.plan;
  const placement = await placements.resolve(entry.placementId);
  const main: PoolClient = await run.pool.connect();
  let failure: unknown;
  try {
    // The row lock first, then the migration lock: the order placeSchema() takes them in
    // when it claims a warm schema (its SKIP LOCKED then passes over this one). One round
    // trip for the three statements: a run's time is mostly round trips (bench/fleet.ts).
    const opened = (await main.query(
      `BEGIN; SET LOCAL lock_timeout = ${run.lockTimeoutMs};
       SELECT applied_count, state FROM tenantry.targets WHERE id = ${main.escapeLiteral(entry.target)} FOR UPDATE`,
    )) as unknown as pg.QueryResult<{ applied_count: number; state: TargetState }>[];
    const row = opened[2]?.rows[0];
    const stale = row
      ? (row.state !== 'active' && row.state !== 'warm') || row.applied_count >= head
      : entry.kind !== 'shared';
    if (stale) {
      await main.query('ROLLBACK');
      return 'skipped';
    }
    // Progress is recorded before the migrations run, in the same uncommitted transaction:
    // it commits with them or not at all, and it runs as the admin (the control plane is
    // not the owner role's, which the migrations switch to until COMMIT).
    if (entry.kind === 'shared') await provisioner.ensureSharedTarget(main, head, version);
    else await recordProgress(main, entry.target, head, version);
    const target: MigrationTarget = {
      chain: 'tenant',
      target: entry.target,
      schema: entry.schemaName,
      ownerRole: config.roles.owner,
      runtimeRole: config.roles.runtime,
      dialect: config.dialect,
      migrations: config.migrations,
      // A schema-tier copy's policies accept only its own tenant; the shared tables and a
      // tenant database's accept tenants outside the schema tier.
      place: entry.kind === 'schema' ? entry.schemaName : '',
    };
    if (placement.url === undefined && entry.databaseName === null) {
      await applyPendingMigrations(main, target);
    } else {
      // A connection of its own, closed at once: CREATE DATABASE … TEMPLATE refuses to
      // copy a template anyone is connected to. Its commit comes first; a kill before ours
      // leaves the count behind, and the next run finds nothing to apply there.
      const conn = await provisioner.adminConnection(placement, entry.databaseName);
      try {
        await migrateElsewhere(conn.client, target, entry.kind === 'database', run.lockTimeoutMs);
      } finally {
        await conn.release();
      }
    }
    await main.query('COMMIT');
    return 'migrated';
  } catch (error) {
    failure = error;
    await main.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    // After an error the connection may be broken or mid-protocol: drop it, not reuse it.
    main.release(failure === undefined ? undefined : true);
  }
}

/**
 * Migrates a target in a database of its own (tenant database, template) in one
 * transaction there. A tenant database copied from a template starts with the template's
 * ledger rows, recorded under the template's target id: they are adopted first (in the
 * same transaction), or the copy would look unmigrated and replay its first migration.
 */
async function migrateElsewhere(
  client: ClientBase,
  target: MigrationTarget,
  copiedFromTemplate: boolean,
  lockTimeoutMs: number,
): Promise<void> {
  await client.query(`SET lock_timeout = ${lockTimeoutMs}; BEGIN`); // a connection of this run's own
  try {
    if (copiedFromTemplate) {
      await client.query(
        `UPDATE tenantry.migrations l SET target = $1
          WHERE l.chain = 'tenant' AND l.target LIKE 'template/%'
            AND NOT EXISTS (SELECT 1 FROM tenantry.migrations o WHERE o.chain = 'tenant' AND o.target = $1 AND o.id = l.id)`,
        [target.target],
      );
    }
    await applyPendingMigrations(client, target);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
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
    const n = integerOption(canary, 1, 1, Number.MAX_SAFE_INTEGER, 'canary');
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

function integerOption(value: number | undefined, fallback: number, min: number, max: number, name: string): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new TenantryError('INVALID_INPUT', `${name} must be an integer from ${min} to ${max}`);
  }
  return n;
}

/** Runs `fn` on every item, at most `limit` at once; `fn` must not throw. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
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
