import type { ClientBase, Pool } from 'pg';
import { TenantryError } from '../errors/catalog.ts';
import { quoteLiteral } from '../sql.ts';

/** What a migration target holds. */
export type TargetKind = 'shared' | 'schema' | 'database' | 'template';

/** Where a target is in its life: being created, ready to claim, in use, being removed. */
export type TargetState = 'provisioning' | 'warm' | 'active' | 'retiring';

/**
 * One place holding a copy of the tenant tables, and how far the tenant-table chain has
 * been applied to it (`tenantry.targets`): the shared tables, a tenant schema, a tenant
 * database, a warm schema waiting to be claimed, or a placement's database template.
 */
export interface TargetRecord {
  readonly id: string;
  readonly kind: TargetKind;
  readonly placementId: string;
  /** `null`: the placement's own database (the main one for placements without a URL). */
  readonly databaseName: string | null;
  readonly schemaName: string;
  readonly state: TargetState;
  readonly tenantId: string | null;
  /** How many tenant migrations are applied (they apply in order). */
  readonly appliedCount: number;
  /** Id of the last applied migration. */
  readonly version: string | null;
  readonly lastError: string | null;
  readonly failedAt: Date | null;
  readonly updatedAt: Date;
}

/** The row as PostgreSQL returns it. */
export interface TargetRow {
  id: string;
  kind: TargetKind;
  placement_id: string;
  database_name: string | null;
  schema_name: string;
  state: TargetState;
  tenant_id: string | null;
  applied_count: number;
  version: string | null;
  last_error: string | null;
  failed_at: Date | null;
  updated_at: Date;
}

export function toTarget(row: TargetRow): TargetRecord {
  return Object.freeze({
    id: row.id,
    kind: row.kind,
    placementId: row.placement_id,
    databaseName: row.database_name,
    schemaName: row.schema_name,
    state: row.state,
    tenantId: row.tenant_id,
    appliedCount: row.applied_count,
    version: row.version,
    lastError: row.last_error,
    failedAt: row.failed_at,
    updatedAt: row.updated_at,
  });
}

/** Target ids: readable in logs and `--plan` output, unique across placements. */
export const targetId = {
  shared: () => 'shared',
  schema: (placementName: string, schema: string) => `schema/${placementName}/${schema}`,
  database: (placementName: string, database: string) => `database/${placementName}/${database}`,
  template: (placementName: string, database: string) => `template/${placementName}/${database}`,
};

/**
 * Records that `count` migrations (the last one `version`) are applied to `id`, and clears
 * any recorded failure. Called in the same transaction as the migrations when the target
 * lives in the main database.
 */
export async function recordProgress(
  client: ClientBase | Pool,
  id: string,
  count: number,
  version: string | null,
): Promise<void> {
  await client.query(recordProgressSql(id, count, version));
}

/**
 * {@link recordProgress} as SQL text, for a caller that sends it in one batch with other
 * statements (the fleet runner's epilogue: progress and `COMMIT` in one round trip).
 *
 * @example
 * ```ts
 * await client.query(`RESET ROLE; ${recordProgressSql(target.id, 3, '003_items_note')}; COMMIT`);
 * ```
 */
export function recordProgressSql(id: string, count: number, version: string | null): string {
  return `UPDATE tenantry.targets SET applied_count = ${integer(count)}, version = ${nullableLiteral(version)},
       last_error = NULL, failed_at = NULL, updated_at = now() WHERE id = ${quoteLiteral(id)}`;
}

/** Records a failed migration of `id` (the others go on; `--plan` and the report show it). */
export async function recordFailure(client: ClientBase | Pool, id: string, message: string): Promise<void> {
  await client.query(
    'UPDATE tenantry.targets SET last_error = $2, failed_at = now(), updated_at = now() WHERE id = $1',
    [id, message.slice(0, 2000)],
  );
}

/** The `shared` target (pool tier), created on first use; its ledger is the pool tier's. */
export async function ensureSharedTarget(
  client: ClientBase,
  schema: string,
  appliedCount: number,
  version: string | null,
): Promise<void> {
  await client.query(sharedTargetSql(schema, appliedCount, version));
}

/**
 * {@link ensureSharedTarget} as SQL text, to send in one batch with other statements.
 *
 * @example
 * ```ts
 * await client.query(`${sharedTargetSql('public', 3, '003_items_note')}; COMMIT`);
 * ```
 */
export function sharedTargetSql(schema: string, appliedCount: number, version: string | null): string {
  return `INSERT INTO tenantry.targets (id, kind, placement_id, schema_name, state, applied_count, version)
     SELECT 'shared', 'shared', p.id, ${quoteLiteral(schema)}, 'active', ${integer(appliedCount)}, ${nullableLiteral(version)}
       FROM tenantry.placements p WHERE p.name = 'shared'
     ON CONFLICT (id) DO UPDATE SET applied_count = EXCLUDED.applied_count, version = EXCLUDED.version,
       schema_name = EXCLUDED.schema_name, last_error = NULL, failed_at = NULL, updated_at = now()`;
}

const nullableLiteral = (value: string | null) => (value === null ? 'NULL' : quoteLiteral(value));

function integer(n: number): string {
  if (!Number.isSafeInteger(n)) throw new TenantryError('USAGE_ERROR', `not an integer: ${n}`);
  return String(n);
}

/** Marks a provisioned target as the tenant's, inside the transaction that records the tenant. */
export async function activateTarget(client: ClientBase, id: string, tenantId: string): Promise<void> {
  await client.query(`UPDATE tenantry.targets SET state = 'active', tenant_id = $2, updated_at = now() WHERE id = $1`, [
    id,
    tenantId,
  ]);
}
