import type { ClientBase, Pool } from 'pg';
import { inTransaction } from '../control/admin-transaction.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { quoteIdent } from '../sql.ts';
import type { AdminConnection } from '../tiers/admin-connection.ts';
import { type MaintenanceProgress, watchProgress } from './maintenance-progress.ts';

/**
 * What a maintenance run does:
 * - `analyze`: `ANALYZE` (fresh planner statistics);
 * - `vacuum`: `VACUUM (ANALYZE)` — never `FULL` (which locks the table out) unless `full: true`;
 * - `reindex`: `REINDEX TABLE CONCURRENTLY` (or one index): rebuilds without blocking writes;
 * - `create-indexes`: the tenant-leading indexes `doctor` finds missing (`NO_TENANT_INDEX`), `CREATE INDEX CONCURRENTLY`;
 * - `partitions`: the audit log's upcoming monthly partitions (main database only).
 */
export type MaintenanceOperation = 'analyze' | 'vacuum' | 'reindex' | 'create-indexes' | 'partitions';

/** The operations {@link MaintenanceOperation} names, for validation. */
export const MAINTENANCE_OPERATIONS: readonly MaintenanceOperation[] = Object.freeze([
  'analyze',
  'vacuum',
  'reindex',
  'create-indexes',
  'partitions',
]);

/**
 * One maintenance request.
 *
 * @example
 * ```ts
 * const request: MaintenanceRequest = { operation: 'vacuum', tables: ['items'], actor: 'cli:ops' };
 * ```
 */
export interface MaintenanceRequest {
  readonly operation: MaintenanceOperation;
  /** Tables of the target's schema (bare names); default every table of it. */
  readonly tables?: readonly string[];
  /** `reindex` only: one index of the target's schema (bare name) instead of whole tables. */
  readonly index?: string;
  /** `vacuum` only: `VACUUM FULL` — rewrites the table under an exclusive lock. Default false. */
  readonly full?: boolean;
  /** Who asks, for the audit entry: `admin-api:<request id>`, `cli:<user>`. */
  readonly actor: string;
  /** Aborting cancels the running statement (`pg_cancel_backend` of the run's own backend). */
  readonly signal?: AbortSignal;
  /** Called about once a second with the progress PostgreSQL reports (vacuum, index builds). */
  readonly onProgress?: (progress: MaintenanceProgress) => void;
}

/** Where a run happens: one copy of the tenant tables (`tenantry.targets`). */
export interface MaintenanceTarget {
  /** Target id: `shared`, `schema/<placement>/<schema>`, `database/<placement>/<db>`. */
  readonly id: string;
  readonly schema: string;
  /** The tenant the target belongs to (`null` for the shared tables). */
  readonly tenantId: string | null;
  /** True for the main database (audit partitions live there). */
  readonly main: boolean;
}

/** What a run needs: the main admin pool (audit), connections to the target, the owner role. */
export interface MaintenanceDeps {
  readonly admin: Pool;
  /** An admin connection to the target's database; a second one is opened to cancel. */
  readonly connect: () => Promise<AdminConnection>;
  readonly ownerRole: string;
  readonly runtimeRole: string;
}

/** What one run did. */
export interface MaintenanceReport {
  readonly target: string;
  readonly operation: MaintenanceOperation;
  /** The statements run, in order. */
  readonly statements: readonly string[];
  readonly durationMs: number;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/**
 * Runs one maintenance operation on one target, as the owner role, on a connection of its
 * own outside any transaction (VACUUM and the CONCURRENTLY forms refuse to run in one):
 *
 * - one at a time per target: a session advisory lock, taken without waiting — a second
 *   run gets `MAINTENANCE_IN_PROGRESS`;
 * - cancellable: aborting `signal` runs `pg_cancel_backend` on the run's backend (from a
 *   second connection); the run ends with `MAINTENANCE_CANCELLED`. A cancelled
 *   `REINDEX CONCURRENTLY` or `CREATE INDEX CONCURRENTLY` leaves an INVALID index
 *   (`…_ccnew`, or the new index): `databaseStats().invalidIndexes` lists it; drop it and run again;
 * - audited: one control-plane entry (`db.<operation>`) with the statements, the outcome
 *   (`completed`, `cancelled`, `failed`) and the duration, for the target's tenant. A run
 *   refused before any statement (busy target, unknown or foreign table) leaves none.
 *
 * @example
 * ```ts
 * const controller = new AbortController();
 * process.once('SIGINT', () => controller.abort());
 * await runMaintenance(deps, target, { operation: 'reindex', tables: ['items'], actor: 'cli:ops', signal: controller.signal });
 * ```
 */
export async function runMaintenance(
  deps: MaintenanceDeps,
  target: MaintenanceTarget,
  request: MaintenanceRequest,
): Promise<MaintenanceReport> {
  validate(request, target);
  const started = performance.now();
  const conn = await deps.connect();
  const client = conn.client;
  const statements: string[] = [];
  let outcome: 'completed' | 'cancelled' | 'failed' = 'failed';
  let failure: unknown;
  let locked = false;
  let stopProgress = () => {};
  let cancelled = false;
  const onAbort = () => {
    cancelled = true;
    void cancelBackend(deps, pid);
  };
  let pid = 0;
  try {
    const { rows } = await client.query<{ pid: number; locked: boolean }>(
      'SELECT pg_backend_pid() AS pid, pg_try_advisory_lock(hashtext($1)) AS locked',
      [`tenantry:maintenance:${target.id}`],
    );
    pid = rows[0]?.pid ?? 0;
    locked = rows[0]?.locked ?? false;
    if (!locked) {
      throw new TenantryError('MAINTENANCE_IN_PROGRESS', target.id);
    }
    request.signal?.throwIfAborted();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    if (request.onProgress) stopProgress = watchProgress(deps, pid, request.onProgress);
    await client.query(`SET ROLE ${quoteIdent(deps.ownerRole)}`);
    for (const statement of await plan(client, target, request, deps.runtimeRole)) {
      if (cancelled) break;
      statements.push(statement);
      await client.query(statement);
    }
    if (cancelled) throw new TenantryError('MAINTENANCE_CANCELLED', target.id);
    outcome = 'completed';
  } catch (error) {
    const canceled = cancelled || (error as { code?: string }).code === '57014';
    if (canceled) outcome = 'cancelled';
    failure =
      canceled && !(error instanceof TenantryError)
        ? new TenantryError('MAINTENANCE_CANCELLED', target.id, { cause: error })
        : error;
  } finally {
    request.signal?.removeEventListener('abort', onAbort);
    stopProgress();
    await client.query('RESET ROLE').catch(() => {});
    if (locked)
      await client
        .query('SELECT pg_advisory_unlock(hashtext($1))', [`tenantry:maintenance:${target.id}`])
        .catch(() => {});
    await conn.release();
  }
  const durationMs = Math.round(performance.now() - started);
  // Refused before anything ran (busy target, unknown or foreign table): bad input changes nothing.
  const refused =
    failure instanceof TenantryError &&
    ['MAINTENANCE_IN_PROGRESS', 'INVALID_INPUT', 'NOT_FOUND'].includes(failure.code) &&
    statements.length === 0;
  if (!refused) {
    await inTransaction(deps.admin, (c) =>
      writeAudit(c, {
        actor: request.actor,
        tenantId: target.tenantId,
        action: `db.${request.operation}`,
        target: `db:${target.id}`,
        details: {
          outcome,
          statements,
          durationMs,
          ...(request.full ? { full: true } : {}),
          ...(outcome === 'failed' && failure ? { error: (failure as Error).message.slice(0, 500) } : {}),
        },
      }),
    );
  }
  if (failure !== undefined) {
    if (failure instanceof TenantryError) throw failure;
    throw new TenantryError(
      'MAINTENANCE_FAILED',
      `${request.operation} on ${target.id}: ${(failure as Error).message}`,
      {
        cause: failure,
      },
    );
  }
  return Object.freeze({
    target: target.id,
    operation: request.operation,
    statements: Object.freeze(statements),
    durationMs,
  });
}

function validate(request: MaintenanceRequest, target: MaintenanceTarget): void {
  if (!MAINTENANCE_OPERATIONS.includes(request?.operation)) {
    throw new TenantryError('INVALID_INPUT', `operation is one of ${MAINTENANCE_OPERATIONS.join(', ')}`);
  }
  for (const name of [...(request.tables ?? []), ...(request.index ? [request.index] : [])]) {
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new TenantryError('INVALID_INPUT', `not a table or index name: ${JSON.stringify(name).slice(0, 80)}`);
    }
  }
  if (request.index && request.operation !== 'reindex') {
    throw new TenantryError('INVALID_INPUT', 'index: only with reindex');
  }
  if (request.full && request.operation !== 'vacuum')
    throw new TenantryError('INVALID_INPUT', 'full: only with vacuum');
  if (request.operation === 'partitions' && !target.main) {
    throw new TenantryError('INVALID_INPUT', 'partitions: the audit log lives in the main database');
  }
}

/** The statements of a run, resolved against the target's catalog (names checked, quoted once). */
async function plan(
  client: ClientBase,
  target: MaintenanceTarget,
  request: MaintenanceRequest,
  runtimeRole: string,
): Promise<string[]> {
  const schema = quoteIdent(target.schema);
  if (request.operation === 'partitions') return ['SELECT tenantry.audit_ensure_partitions(3)'];
  if (request.operation === 'create-indexes') return missingTenantIndexes(client, target.schema, runtimeRole);
  if (request.index) {
    await exists(client, target.schema, [request.index], 'i');
    return [`REINDEX INDEX CONCURRENTLY ${schema}.${quoteIdent(request.index)}`];
  }
  const tables = request.tables?.length ? [...request.tables] : await allTables(client, target.schema);
  if (request.tables?.length) await exists(client, target.schema, tables, 'rp');
  return tables.map((t) => {
    const q = `${schema}.${quoteIdent(t)}`;
    switch (request.operation) {
      case 'analyze':
        return `ANALYZE ${q}`;
      case 'vacuum':
        return request.full ? `VACUUM (FULL, ANALYZE) ${q}` : `VACUUM (ANALYZE) ${q}`;
      default:
        return `REINDEX TABLE CONCURRENTLY ${q}`;
    }
  });
}

async function allTables(client: ClientBase, schema: string): Promise<string[]> {
  const { rows } = await client.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND pg_has_role(c.relowner, 'USAGE') ORDER BY c.relname`,
    [schema],
  );
  return rows.map((r) => r.relname);
}

async function exists(client: ClientBase, schema: string, names: readonly string[], kinds: string): Promise<void> {
  // VACUUM and ANALYZE skip a table the role does not own with a mere WARNING: check first,
  // or a run would report success having done nothing.
  const { rows } = await client.query<{ relname: string; owned: boolean }>(
    `SELECT c.relname, pg_has_role(coalesce(t.relowner, c.relowner), 'USAGE') AS owned
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid
      WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind = ANY(string_to_array($3, NULL))`,
    [schema, [...names], kinds],
  );
  const found = new Set(rows.map((r) => r.relname));
  const missing = names.filter((n) => !found.has(n));
  if (missing.length > 0) {
    throw new TenantryError(
      'NOT_FOUND',
      `no ${kinds === 'i' ? 'index' : 'table'} ${missing.join(', ')} in the target's schema`,
    );
  }
  const foreign = rows.filter((r) => !r.owned).map((r) => r.relname);
  if (foreign.length > 0) {
    throw new TenantryError(
      'INVALID_INPUT',
      `${foreign.join(', ')}: not owned by the owner role, which maintenance runs as (ALTER TABLE … OWNER TO it)`,
    );
  }
}

/**
 * `CREATE INDEX CONCURRENTLY` for every `NO_TENANT_INDEX` finding of `doctor` on the
 * schema. An INVALID index left by an earlier failed build of the same index is dropped first.
 */
async function missingTenantIndexes(client: ClientBase, schema: string, runtimeRole: string): Promise<string[]> {
  const { runDoctor } = await import('../doctor/doctor.ts');
  const report = await runDoctor(client, { schemas: [schema], runtimeRole });
  const statements: string[] = [];
  for (const f of report.findings) {
    if (f.code !== 'NO_TENANT_INDEX' || !f.table) continue;
    const table = f.table.slice(f.table.indexOf('.') + 1);
    const name = `${table}_tenant_id_idx`.slice(0, 63);
    const { rowCount } = await client.query(
      `SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND NOT i.indisvalid`,
      [schema, name],
    );
    if (rowCount) statements.push(`DROP INDEX CONCURRENTLY ${quoteIdent(schema)}.${quoteIdent(name)}`);
    statements.push(f.fix.replace(/^CREATE INDEX ON /, `CREATE INDEX CONCURRENTLY ${quoteIdent(name)} ON `));
  }
  return statements;
}

async function cancelBackend(deps: MaintenanceDeps, pid: number): Promise<void> {
  if (pid === 0) return;
  const conn = await deps.connect().catch(() => undefined);
  if (!conn) return;
  try {
    await conn.client.query('SELECT pg_cancel_backend($1)', [pid]);
  } catch {
    // the statement may have just finished
  } finally {
    await conn.release();
  }
}
