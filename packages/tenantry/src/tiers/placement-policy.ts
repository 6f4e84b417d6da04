import type { IsolationTier } from '../context/tenant-context.ts';
import type { PlacementRegistry } from '../control/placements.ts';
import type { TenantPlacement, TenantPlacer } from '../control/tenant-placer.ts';
import { TenantryError } from '../errors/catalog.ts';
import { runPipelined } from '../wire/statement-pipeline.ts';
import type { Provisioner } from './provisioner.ts';
import type { Placed } from './tier-deps.ts';

/** The placement a tier uses when a new tenant names none. */
const DEFAULT_PLACEMENTS = { pool: 'shared', schema: 'schemas', database: 'databases' } as const;

interface Prepared {
  readonly tier: IsolationTier;
  readonly placementId: string;
  /** The database created ahead of the tenant's transaction (database tier). */
  readonly placed?: Placed;
}

function badPlacement(message: string): TenantryError {
  return new TenantryError('INVALID_INPUT', `placement: ${message}`, {
    details: { problems: [{ path: 'placement', message }] },
  });
}

/**
 * Where a new tenant's rows go, by tier: the shared tables (`pool`), a schema claimed from
 * the warm pool or created (`schema`), or a database copied from the placement's template
 * (`database`, created before the registry's transaction, since PostgreSQL cannot create a
 * database inside one, and dropped again if that transaction fails).
 */
export class PlacementPolicy implements TenantPlacer {
  readonly #placements: PlacementRegistry;
  readonly #provisioner: Provisioner;

  constructor(placements: PlacementRegistry, provisioner: Provisioner) {
    this.#placements = placements;
    this.#provisioner = provisioner;
  }

  async prepare({
    id,
    tier,
    placement,
    statementTimeoutMs,
  }: Parameters<TenantPlacer['prepare']>[0]): Promise<Prepared> {
    const name = placement ?? DEFAULT_PLACEMENTS[tier];
    const resolved = await this.#placements.resolveByName(name).catch(() => {
      throw badPlacement(`no placement named ${name}`);
    });
    if (resolved.tier !== tier) throw badPlacement(`${resolved.name} is a ${resolved.tier}-tier placement`);
    if (tier === 'pool' && resolved.url !== undefined)
      throw badPlacement('pool-tier tenants live in the main database');
    if (tier !== 'database') return { tier, placementId: resolved.id };
    return {
      tier,
      placementId: resolved.id,
      placed: await this.#provisioner.createDatabase(id, resolved, statementTimeoutMs),
    };
  }

  placeAtOnce(prepared: unknown): TenantPlacement | undefined {
    const p = prepared as Prepared;
    if (p.tier !== 'pool') return undefined;
    return { placementId: p.placementId, schemaName: null, databaseName: null, inMainDatabase: true };
  }

  async place(...[client, tenantId, prepared, begin]: Parameters<TenantPlacer['place']>): Promise<TenantPlacement> {
    const p = prepared as Prepared;
    if (p.tier === 'schema') {
      const placement = await this.#placements.resolve(p.placementId);
      return this.#provisioner.placeSchema(client, tenantId, placement, begin);
    }
    await runPipelined(client, begin);
    const atOnce = this.placeAtOnce(p);
    if (atOnce) return atOnce;
    const placed = p.placed as Placed;
    await this.#provisioner.activate(client, placed.targetId, tenantId);
    return placed;
  }

  async abort(prepared: unknown): Promise<void> {
    const placed = (prepared as Prepared | undefined)?.placed;
    if (placed) await this.#provisioner.dropTarget(placed.targetId);
  }

  changed(tenant: Parameters<NonNullable<TenantPlacer['changed']>>[0]): Promise<void> {
    return this.#provisioner.syncMirror(tenant);
  }
}
