import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import { TenantryError } from '../errors/catalog.ts';

/** Isolation tier of a tenant: where its rows live. See `docs/isolation-tiers.md`. */
export type IsolationTier = 'pool' | 'schema' | 'database';

/** Lifecycle status of a tenant. Only `active` tenants can do tenant work. */
export type TenantStatus = 'active' | 'suspended' | 'offboarding' | 'deleted';

/**
 * What the request path knows about the tenant it works for. It enters an
 * `AsyncLocalStorage` context (step 4 of the request path) and nothing reads tenant
 * data without it: there is never a default tenant.
 */
export interface TenantContext {
  /** The tenant's uuid: the value of `tenant_id` on its rows. */
  readonly id: string;
  readonly slug: string;
  readonly tier: IsolationTier;
  readonly plan: string;
  readonly status: TenantStatus;
  /** The placement holding its rows (routing); looked up when absent. */
  readonly placementId?: string | undefined;
  /** Its own database (database tier), on its placement's server. */
  readonly database?: string | null | undefined;
  /** Correlation id of the request or job doing the work, when there is one. */
  readonly requestId?: string | undefined;
  /** Who is doing the work (`api-key:<id>`, `user:<id>`), for audit entries; set by the Fastify plugin. */
  readonly actor?: string | undefined;
}

/**
 * The tenant transaction a piece of async work runs in (what the Kysely driver reads), kept
 * in the same store as its tenant: a statement can never meet a transaction of another
 * tenant than the context it runs under.
 */
export interface ContextTransaction {
  readonly tenant: TenantContext;
  /** False once the transaction ended: a late statement gets `NO_TENANT_TRANSACTION`. */
  open: boolean;
  /**
   * Runs one statement in this transaction; the first one also opens it. `shape` asks pg for
   * rows as arrays and for the caller's type parsers (what ORM drivers expect of pg).
   */
  execute(text: string, values?: readonly unknown[], shape?: ResultShape): Promise<pg.QueryResult>;
}

/**
 * How pg shapes a statement's result, as ORM drivers ask for it (Drizzle, Prisma's pg
 * adapter): rows as arrays rather than objects (columns of the same name survive), and
 * type parsers of their own (timestamps as text, for instance).
 *
 * @example
 * ```ts
 * const { rows } = await tenantry.query('acme', { sql: 'SELECT id, title FROM items', parameters: [], shape: { rowMode: 'array' } });
 * // rows: [['3f…', 'first'], …]
 * ```
 */
export interface ResultShape {
  readonly rowMode?: 'array' | undefined;
  readonly types?: pg.CustomTypesConfig | undefined;
}

/** What one async context knows: its tenant and, inside a tenant transaction, that transaction. */
interface Scope {
  readonly tenant: TenantContext;
  readonly transaction?: ContextTransaction | undefined;
}

/** The one store of the request path (step 4): tenant, then transaction, never one without the other's tenant. */
const storage = new AsyncLocalStorage<Scope>();

/**
 * Runs `fn` with `tenant` as the current tenant. Contexts nest: the innermost wins, and
 * the outer one is back when `fn` settles.
 *
 * @example
 * ```ts
 * await withTenant(tenant, async () => {
 *   getTenant().id; // tenant.id
 * });
 * ```
 */
export function withTenant<T>(tenant: TenantContext, fn: () => T): T {
  if (!tenant || typeof tenant.id !== 'string') {
    throw new TenantryError('USAGE_ERROR', 'withTenant() needs a tenant with an id');
  }
  return storage.run({ tenant: Object.freeze({ ...tenant }) }, () => started(fn()));
}

/**
 * `value`, or, for a lazy thenable (Prisma's queries start only when awaited), a promise that
 * starts it now: its `then` is called in a job queued inside the context, whereas awaiting
 * the thenable after `fn` returned would start the query outside it.
 */
function started<T>(value: T): T {
  if (value instanceof Promise || typeof (value as { then?: unknown } | null)?.then !== 'function') return value;
  return Promise.resolve(value) as T;
}

/**
 * @internal Runs `fn` inside `transaction`, under its tenant (the transaction runner's
 * half of the store; applications use `Tenantry.transaction`).
 */
export function runInTransaction<T>(transaction: ContextTransaction, fn: () => T): T {
  return storage.run({ tenant: transaction.tenant, transaction }, () => started(fn()));
}

/** The open tenant transaction of the current async context, if any. */
export function currentTransaction(): ContextTransaction | undefined {
  const transaction = storage.getStore()?.transaction;
  return transaction?.open ? transaction : undefined;
}

/**
 * The current tenant, or `undefined` outside any tenant context.
 *
 * @example
 * ```ts
 * const tenant = tryGetTenant();
 * if (!tenant) return reply.code(400).send(...);
 * ```
 */
export function tryGetTenant(): TenantContext | undefined {
  return storage.getStore()?.tenant;
}

/**
 * The current tenant; throws `NO_TENANT_CONTEXT` outside any tenant context.
 *
 * @example
 * ```ts
 * const { id } = getTenant();
 * ```
 */
export function getTenant(): TenantContext {
  const tenant = storage.getStore()?.tenant;
  if (!tenant) throw new TenantryError('NO_TENANT_CONTEXT');
  return tenant;
}
