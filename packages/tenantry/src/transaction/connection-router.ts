import type { TenantContext } from '../context/tenant-context.ts';
import { connectionConfig, type RoleCredentials } from '../control/connection-url.ts';
import type { PlacementRegistry, ResolvedPlacement } from '../control/placements.ts';
import type { AffineLender } from './affine-lender.ts';
import type { PoolMap } from './pool-map.ts';
import type { RuntimeRoleGuard } from './runtime-guard.ts';
import type { ConnectionSource, TenantConnection } from './tenant-transaction.ts';

/** Where a tenant's rows are, as far as routing needs to know. */
export interface TenantPlacementRef {
  readonly placementId: string;
  /** Its own database (database tier); `null` for the placement's database. */
  readonly database: string | null;
}

/** Where tenants are (the tenant registry), for contexts that do not say. */
export interface TenantLocator {
  locate(tenantId: string): Promise<TenantPlacementRef>;
}

/** What the router is built from. */
export interface TenantRouterDeps {
  /** The runtime connections of the main database (pool tier, and schemas on the main placement). */
  readonly main: AffineLender;
  /** Runtime connections to every other database, under one global budget. */
  readonly poolMap: PoolMap;
  readonly placements: PlacementRegistry;
  /** The main database's URL (`runtimeUrl` when set, else `databaseUrl`): the server of placements without one. */
  readonly mainUrl: string;
  readonly runtime: RoleCredentials;
  /** Where a tenant is, when its context does not say (a hand-built context). */
  readonly locator: TenantLocator;
  /** Checks each server's runtime role once: it must be unable to bypass RLS. */
  readonly guard: RuntimeRoleGuard;
}

/**
 * Step 5's "where does the connection come from": the shared runtime pool for tenants whose
 * rows are in the main database, the pool map (one small pool per database, one global
 * budget) for everything else. The schema a schema-tier tenant's statements run in is not
 * chosen here: PostgreSQL's `enter()` sets it from the verified tenant's row.
 */
export class TenantRouter implements ConnectionSource {
  readonly #deps: TenantRouterDeps;

  constructor(deps: TenantRouterDeps) {
    this.#deps = deps;
  }

  /** A runtime connection to the database holding `tenant`'s rows. */
  async connect(tenant: TenantContext): Promise<TenantConnection> {
    const deps = this.#deps;
    if (tenant.tier === 'pool') return this.#main(tenant);
    const location =
      tenant.placementId !== undefined
        ? { placementId: tenant.placementId, database: tenant.database ?? null }
        : await deps.locator.locate(tenant.id);
    const placement = await deps.placements.resolve(location.placementId);
    if (placement.url === undefined && location.database === null) return this.#main(tenant);
    return this.#other(placement, location.database);
  }

  /** Pool-map key of a database: its placement and name. */
  static key(placementId: string, database: string | null): string {
    return `${placementId}/${database ?? ''}`;
  }

  /** A main-database connection, tenant-affine for the schema tier (see {@link AffineLender}). */
  async #main(tenant: TenantContext): Promise<TenantConnection> {
    const lent = await this.#deps.main.acquire({ id: tenant.id, affine: tenant.tier === 'schema' });
    try {
      await this.#deps.guard.check('main', lent.client);
    } catch (error) {
      lent.release();
      throw error;
    }
    return { client: lent.client, inMainDatabase: true, release: (discard) => lent.release(discard) };
  }

  async #other(placement: ResolvedPlacement, database: string | null): Promise<TenantConnection> {
    const deps = this.#deps;
    const lent = await deps.poolMap.acquire(TenantRouter.key(placement.id, database), () =>
      connectionConfig(placement.url ?? deps.mainUrl, database ?? undefined, deps.runtime),
    );
    try {
      await deps.guard.check(placement.url === undefined ? 'main' : placement.id, lent.client);
    } catch (error) {
      lent.release();
      throw error;
    }
    return { client: lent.client, inMainDatabase: false, release: (discard) => lent.release(discard ?? false) };
  }
}
