import type { ClientBase } from 'pg';
import type { TenantRecord } from '../control/tenant-record.ts';
import type { DataDeps } from './tenant-place.ts';

/**
 * A part of a tenant's data that lives outside Tenantry's tables (a cache namespace, an
 * outbox or job queue, files): erasure calls `erase` after the rows are gone and
 * `remaining` during verification, which must then be 0. Register one with
 * `tenantry.addErasureHook(hook)`; none is registered by default.
 *
 * @example
 * ```ts
 * tenantry.addErasureHook({
 *   name: 'cache',
 *   erase: (tenantId) => cache.clearNamespace(tenantId),
 *   remaining: (tenantId) => cache.countKeys(tenantId),
 * });
 * ```
 */
export interface ErasureHook {
  /** Shown in the report and the audit entry (`hook:<name>`). */
  readonly name: string;
  erase(tenantId: string): Promise<void>;
  /** How many items of the tenant are left. */
  remaining(tenantId: string): Promise<number>;
}

/**
 * Whether the tenant's own schema or database still exists (`schema <name>` /
 * `database <name>` → `true` when it does), asked of the catalog of the server it was on.
 * A pool-tier tenant has neither.
 *
 * @example
 * ```ts
 * const places = await placesStanding(deps, client, tenant); // { 'schema t_1a2b': false }
 * ```
 */
export async function placesStanding(
  deps: DataDeps,
  client: ClientBase,
  tenant: TenantRecord,
): Promise<Record<string, boolean>> {
  const places: Record<string, boolean> = {};
  const checks = [
    ['schema', tenant.schemaName, 'SELECT 1 FROM pg_namespace WHERE nspname = $1'],
    ['database', tenant.databaseName, 'SELECT 1 FROM pg_database WHERE datname = $1'],
  ] as const;
  if (checks.every(([, name]) => name === null)) return places;
  // The catalog of the server the schema or database was on.
  const placement = await deps.placements.resolve(tenant.placementId);
  const conn = placement.url === undefined ? undefined : await deps.connect(placement, null);
  try {
    for (const [kind, name, sql] of checks) {
      if (name !== null) places[`${kind} ${name}`] = (await (conn?.client ?? client).query(sql, [name])).rowCount === 1;
    }
  } finally {
    await conn?.release();
  }
  return places;
}
