import type { ClientBase, Pool } from 'pg';
import type { PlacementRegistry, ResolvedPlacement } from '../control/placements.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { AdminConnection, AdminConnector } from '../tiers/admin-connection.ts';

/** Enters a tenant's verified maintenance context on a connection, inside its open transaction. */
export type MaintenanceEntry = (client: ClientBase, tenantId: string) => Promise<void>;

/** What export, import and erasure need to reach a tenant's rows and the control plane. */
export interface DataDeps {
  /** The admin pool of the main database (control plane). */
  readonly admin: Pool;
  readonly placements: PlacementRegistry;
  /** Admin connections to any database of any placement. */
  readonly connect: AdminConnector;
  readonly enter: MaintenanceEntry;
  /** Schema of the shared tables (pool tier). */
  readonly sharedSchema: string;
}

/** Where a tenant's rows are: a database of a placement, and a schema in it. */
export interface TenantPlace {
  readonly placement: ResolvedPlacement;
  /** Its own database (database tier); `null` for the placement's database. */
  readonly database: string | null;
  readonly schema: string;
  /** True when the rows are in the main database, with the control plane: one snapshot covers both. */
  readonly inMainDatabase: boolean;
  /** How far its tables are migrated: migrations applied and the last one's id. */
  readonly migrations: { readonly count: number; readonly version: string | null };
}

/**
 * Where `tenant`'s rows are, from its record and its target row (a tenant schema or
 * database); the shared schema of the main database for the pool tier.
 *
 * @example
 * ```ts
 * const place = await placeOf(deps, await tenantry.tenants.get('acme'));
 * console.log(place.schema, place.database ?? '(main database)');
 * ```
 */
export async function placeOf(deps: DataDeps, tenant: TenantRecord): Promise<TenantPlace> {
  const placement = await deps.placements.resolve(tenant.placementId);
  const { rows } = await deps.admin.query<{
    database_name: string | null;
    schema_name: string;
    applied_count: number;
    version: string | null;
  }>(
    `SELECT database_name, schema_name, applied_count, version FROM tenantry.targets
      WHERE CASE WHEN $2 THEN id = 'shared' ELSE tenant_id = $1 END`,
    [tenant.id, tenant.tier === 'pool'],
  );
  const target = rows[0];
  if (!target) throw new TenantryError('INTERNAL', 'the tenant has no target row');
  const migrations = { count: target.applied_count, version: target.version };
  if (tenant.tier === 'pool') {
    const inMainDatabase = placement.url === undefined;
    return { placement, database: null, schema: deps.sharedSchema, inMainDatabase, migrations };
  }
  return {
    placement,
    database: target.database_name,
    schema: target.schema_name,
    inMainDatabase: placement.url === undefined && target.database_name === null,
    migrations,
  };
}

/**
 * Opens an admin connection to where `tenant`'s rows are and begins a transaction in the
 * tenant's maintenance context: `REPEATABLE READ` and read-only for a snapshot, or a plain
 * transaction to write. The caller commits or rolls back, then releases.
 *
 * @example
 * ```ts
 * const conn = await openTenantTransaction(deps, tenant, place, 'snapshot');
 * try { … await conn.client.query('COMMIT'); } finally { await conn.release(); }
 * ```
 */
export async function openTenantTransaction(
  deps: DataDeps,
  tenantId: string,
  place: TenantPlace,
  mode: 'snapshot' | 'write',
): Promise<AdminConnection> {
  const conn = await deps.connect(place.placement, place.database);
  try {
    await conn.client.query(mode === 'snapshot' ? 'BEGIN ISOLATION LEVEL REPEATABLE READ' : 'BEGIN');
    await deps.enter(conn.client, tenantId);
    // Read-only only once the context is entered: a session's first enter() creates its
    // context registers, which a read-only transaction could not.
    if (mode === 'snapshot') await conn.client.query('SET TRANSACTION READ ONLY');
    return conn;
  } catch (error) {
    await conn.client.query('ROLLBACK').catch(() => {});
    await conn.release();
    throw error;
  }
}
