import type { ClientBase } from 'pg';
import { qualified, quoteIdent } from '../sql.ts';
import { primaryKey } from '../tiers/tenant-copy.ts';

/** The control-plane schema. */
const CONTROL_SCHEMA = 'tenantry';

/**
 * Control-plane tables with a `tenant_id` that are not the tenant's data: `targets` records
 * where this installation keeps the rows (a schema or database name), which means nothing
 * anywhere else; `export_jobs` and `export_chunks` are earlier exports (an archive must not
 * carry the archives before it); `outbox` and `outbox_heads` are events of this
 * installation, delivered or not; `webhook_endpoints` cannot be re-created without their
 * signing secrets (never exported), and `webhook_deliveries` is their history; usage and
 * metrics are this installation's metering of the tenant; `jobs`, `job_queues` and
 * `job_schedules` are this installation's background work. Erasure still
 * counts them: they go with the tenant.
 */
const BOOKKEEPING = new Set([
  'targets',
  'export_jobs',
  'export_chunks',
  'outbox',
  'outbox_heads',
  'webhook_endpoints',
  'webhook_deliveries',
  // Usage and metrics: this installation's metering of the tenant, not its data.
  'tenant_usage_minutes',
  'tenant_usage_window_totals',
  'tenant_usage_daily',
  'tenant_active_users',
  'tenant_metrics',
  'tenant_storage_latest',
  'jobs',
  'job_queues',
  'job_schedules',
]);

/**
 * Columns never exported, by name: password and key hashes, refresh-token hashes, sealed
 * credentials, secrets. A control-plane column holding a secret must be named so.
 */
export const SECRET_COLUMN = /(^|_)(hash|secret|password|credentials?|token|ipad|opad)(_|$)/;

/** The tenant's rows of one control-plane table, as an export reads them. */
export interface ControlTable {
  readonly table: string;
  /** Columns exported (secrets and generated columns left out). */
  readonly columns: readonly string[];
  /** `SELECT row_to_json(r)::text AS j FROM (…) r`, with the tenant id as `$1`. */
  readonly select: string;
}

/**
 * The control-plane tables holding rows of a tenant, found in the catalog rather than kept
 * by hand: every table of schema `tenantry` with a `tenant_id` column (memberships, API
 * keys, roles, refresh tokens, audit entries, and whatever a later migration adds), the
 * tenant's own row, and the accounts of its members (`users`, through `memberships`).
 * Secret columns ({@link SECRET_COLUMN}) are never selected.
 *
 * @example
 * ```ts
 * for (const t of await controlTables(client)) console.log(t.table, t.columns);
 * ```
 */
export async function controlTables(client: ClientBase): Promise<ControlTable[]> {
  const { rows } = await client.query<{ table: string; columns: string[] }>(
    `SELECT c.relname AS table, array_agg(a.attname::text ORDER BY a.attnum) AS columns
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND (c.relname IN ('tenants', 'users')
             OR EXISTS (SELECT 1 FROM pg_attribute t
                         WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped))
      GROUP BY c.relname ORDER BY c.relname`,
    [CONTROL_SCHEMA],
  );
  const out: ControlTable[] = [];
  for (const { table, columns: all } of rows) {
    if (BOOKKEEPING.has(table)) continue;
    const columns = all.filter((c) => !SECRET_COLUMN.test(c));
    const list = columns.map((c) => `x.${quoteIdent(c)}`).join(', ');
    const from = qualified(CONTROL_SCHEMA, table);
    const where =
      table === 'tenants'
        ? 'x.id = $1'
        : table === 'users'
          ? `x.id IN (SELECT m.user_id FROM ${qualified(CONTROL_SCHEMA, 'memberships')} m WHERE m.tenant_id = $1)`
          : 'x.tenant_id = $1';
    const order = await primaryKey(client, { schema: CONTROL_SCHEMA, table });
    out.push({
      table,
      columns,
      select: `SELECT row_to_json(r)::text AS j FROM (SELECT ${list} FROM ${from} x WHERE ${where} ORDER BY ${order}) r`,
    });
  }
  return out;
}

/**
 * What erasure must find empty afterwards: every control-plane table with a `tenant_id`
 * (the audit log aside, which keeps the tombstone) and the tenant's row, with the statement
 * that counts the tenant's rows in each (`$1` the tenant id).
 *
 * @example
 * ```ts
 * for (const [table, sql] of await controlCounts(client)) console.log(table, (await client.query(sql, [id])).rows);
 * ```
 */
export async function controlCounts(client: ClientBase): Promise<[string, string][]> {
  const { rows } = await client.query<{ table: string }>(
    `SELECT c.relname AS table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        -- The audit log (its partitions, detached months) keeps the tombstone.
        AND c.relname <> 'audit_log' AND c.relname NOT LIKE 'audit\\_archive\\_%'
        AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped)
      ORDER BY c.relname`,
    [CONTROL_SCHEMA],
  );
  return [
    ['tenantry.tenants', `SELECT count(*)::int AS n FROM ${qualified(CONTROL_SCHEMA, 'tenants')} WHERE id = $1`],
    ...rows.map(({ table }): [string, string] => [
      `${CONTROL_SCHEMA}.${table}`,
      `SELECT count(*)::int AS n FROM ${qualified(CONTROL_SCHEMA, table)} WHERE tenant_id = $1`,
    ]),
  ];
}

/**
 * Deletes the accounts among `userIds` that belong to no tenant any more (run after their
 * memberships went): a user shared with another tenant keeps the account. Returns the ids
 * of the accounts deleted. Tenant erasure and per-user erasure apply this one rule.
 *
 * @example
 * ```ts
 * const gone = await removeOrphanAccounts(client, [userId]); // [] when they belong elsewhere too
 * ```
 */
export async function removeOrphanAccounts(client: ClientBase, userIds: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ id: string }>(
    `DELETE FROM tenantry.users u WHERE u.id = ANY($1::uuid[])
        AND NOT EXISTS (SELECT 1 FROM tenantry.memberships m WHERE m.user_id = u.id) RETURNING u.id`,
    [[...userIds]],
  );
  return rows.map((r) => r.id);
}
