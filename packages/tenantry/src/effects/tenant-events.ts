import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { checkEventType, eventPayloadJson } from './outbox.ts';
import type { AuditTransaction } from './tenant-audit.ts';

/** The append, prepared as text once: the tenant is the verified context's, not a parameter. */
const APPEND_SQL = `SELECT ${CONTEXT_SCHEMA}.outbox_append($1, $2::jsonb, $3, $4)`;

/**
 * Writes an application event of the tenant in the tenant transaction `tx` (step 6 of the
 * request path): it is delivered to the subscribers of `tenantry.events` only if the
 * transaction commits, and after the tenant's earlier events. Like `audit()`, it runs no
 * statement of its own: the append is sent with `COMMIT` in the same round trip, through a
 * `SECURITY DEFINER` function that takes the tenant from the session's verified context,
 * so code running as one tenant cannot write another's event. Actor and request id come
 * from the tenant context.
 *
 * Events live in the main database's outbox: a transaction elsewhere (a tenant database,
 * or a schema on another placement's server; see `tx.inMainDatabase`) gets
 * `OUTBOX_UNAVAILABLE`, at once rather than at `COMMIT`.
 *
 * @param type - `resource.verb`, e.g. `item.created`.
 * @param payload - a JSON object, delivered as `event.payload`.
 *
 * @example
 * ```ts
 * await req.tenantTransaction(async (tx) => {
 *   const item = await items.create(tx, req.body);
 *   emit(tx, 'item.created', { id: item.id, title: item.title });
 *   return item;
 * });
 * ```
 */
export function emit(tx: AuditTransaction, type: string, payload: Record<string, unknown> = {}): void {
  checkEventType(type);
  const json = eventPayloadJson(payload);
  if (!tx.inMainDatabase) {
    throw new TenantryError('OUTBOX_UNAVAILABLE', `tenant ${tx.tenant.slug} does not live in the main database`);
  }
  tx.defer(APPEND_SQL, [type, json, tx.tenant.actor ?? null, tx.tenant.requestId ?? null]);
}
