import type { Pool } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import type { PlacementRegistry } from '../control/placements.ts';
import type { Provisioner } from '../tiers/provisioner.ts';
import type { TargetKind, TargetState } from '../tiers/targets.ts';

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
