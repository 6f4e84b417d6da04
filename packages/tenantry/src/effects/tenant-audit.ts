import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import type { TenantContext } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';

/**
 * What the audit helpers need of a tenant transaction (`TenantTransaction` is one): its
 * tenant, raw SQL, and a statement deferred to its `COMMIT`. Declared here so the side
 * effects do not depend on the transaction runner.
 */
export interface AuditTransaction {
  readonly tenant: TenantContext;
  /** Whether the transaction runs in the main database (the outbox is there). */
  readonly inMainDatabase: boolean;
  query(text: string, values?: readonly unknown[]): Promise<{ readonly rows: readonly unknown[] }>;
  defer(text: string, values?: readonly unknown[]): void;
}

/** `resource.verb`, lower case: `item.created`, `invoice.paid`. */
const ACTION = /^[a-z][a-z0-9_]{0,48}(\.[a-z][a-z0-9_]{0,48}){1,3}$/;

/** The append, prepared as text once: the tenant is the verified context's, not a parameter. */
const APPEND_SQL = `SELECT ${CONTEXT_SCHEMA}.audit_append($1, $2, $3::jsonb, $4, $5)`;

/**
 * Records a data-plane audit entry in the tenant transaction `tx`, so it commits with the
 * change it describes or not at all (step 6 of the request path). The entry is written by
 * a `SECURITY DEFINER` function that takes the tenant from the session's verified context:
 * code running as one tenant (even injected SQL) cannot write an entry for another. Actor
 * and request id come from the tenant context (the Fastify plugin sets both).
 *
 * The entry travels with `COMMIT` in the same round trip (see `TenantTransaction.defer`),
 * so it costs no extra round trip and holds the tenant's chain only while committing.
 *
 * @param action - `resource.verb`, e.g. `item.created`.
 * @param target - what it happened to, e.g. `item:<id>`.
 * @param metadata - a JSON object, stored as JSONB (GIN-indexed).
 *
 * @example
 * ```ts
 * await req.tenantTransaction(async (tx) => {
 *   const item = await items.create(tx, req.body);
 *   audit(tx, 'item.created', `item:${item.id}`, { title: item.title });
 *   return item;
 * });
 * ```
 */
export function audit(
  tx: AuditTransaction,
  action: string,
  target?: string | null,
  metadata: Record<string, unknown> = {},
): void {
  if (typeof action !== 'string' || !ACTION.test(action)) {
    throw new TenantryError('USAGE_ERROR', 'an audit action is `resource.verb` in lower case, e.g. item.created');
  }
  if (target != null && (typeof target !== 'string' || target.length > 500)) {
    throw new TenantryError('USAGE_ERROR', 'an audit target is a string of at most 500 characters');
  }
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new TenantryError('USAGE_ERROR', 'audit metadata is a JSON object');
  }
  tx.defer(APPEND_SQL, [
    action,
    target ?? null,
    JSON.stringify(metadata),
    tx.tenant.actor ?? null,
    tx.tenant.requestId ?? null,
  ]);
}
