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
 * `tenantry.targets` (one round trip, also when nothing is behind), never a visit to a schema or database, so a fleet that is at head
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
  // One query, whatever the fleet's size: the targets behind head (an index range on
  // `applied_count`), and, when there is no `shared` row (`migrate()` never ran on this
  // version), the shared tables as far as their ledger says; the run creates the row.
  const { rows } = await deps.admin.query<PlanRow>(
    `SELECT * FROM (
       SELECT t.id, t.kind, t.state, t.tenant_id, n.slug, t.placement_id, t.database_name, t.schema_name,
              t.applied_count, t.last_error
         FROM tenantry.targets t LEFT JOIN tenantry.tenants n ON n.id = t.tenant_id
        WHERE t.state IN ('warm', 'active') AND t.applied_count < $1
       UNION ALL
       SELECT 'shared', 'shared', 'active', NULL, NULL, p.id, NULL, $2::text, s.applied_count, NULL
         FROM tenantry.placements p,
              LATERAL (SELECT count(*)::int AS applied_count FROM tenantry.migrations m
                        WHERE m.chain = 'tenant' AND m.target = 'shared') s
        WHERE $1 > 0 AND p.name = 'shared' AND s.applied_count < $1
          AND NOT EXISTS (SELECT 1 FROM tenantry.targets WHERE id = 'shared')
     ) plan
     ORDER BY kind = 'shared' DESC, state = 'warm' OR kind = 'template', id`,
    [head, deps.config.tenantSchema],
  );
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
