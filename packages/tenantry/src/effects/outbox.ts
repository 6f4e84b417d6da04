import type { ClientBase } from 'pg';
import { TenantryError } from '../errors/catalog.ts';

/** `resource.verb`, lower case: `tenant.created`, `item.created`, `invoice.paid`. */
/** `resource.verb` in lower case, as every event type is. */
export const EVENT_TYPE = /^[a-z][a-z0-9_]{0,48}(\.[a-z][a-z0-9_]{0,48}){1,3}$/;

/** Throws `USAGE_ERROR` unless `type` is `resource.verb` in lower case. */
export function checkEventType(type: unknown): asserts type is string {
  if (typeof type !== 'string' || !EVENT_TYPE.test(type)) {
    throw new TenantryError('USAGE_ERROR', 'an event type is `resource.verb` in lower case, e.g. item.created');
  }
}

/** Throws `USAGE_ERROR` unless `payload` is a JSON object; returns its JSON text. */
export function eventPayloadJson(payload: unknown): string {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new TenantryError('USAGE_ERROR', 'an event payload is a JSON object');
  }
  return JSON.stringify(payload);
}

/** An event to write in the outbox, in the transaction of the change it announces. */
export interface OutboxEventInput {
  /** The tenant it belongs to; its subscribers run in this tenant's context. */
  readonly tenantId: string;
  /** `resource.verb`: `tenant.created`, `api_key.revoked`, … */
  readonly type: string;
  /** A JSON object. */
  readonly payload?: Record<string, unknown>;
  /** Who caused it (`admin:ops`, `api-key:<id>`, `system`). */
  readonly actor?: string | undefined;
  /** The request or job that caused it. */
  readonly requestId?: string | undefined;
}

/**
 * Writes an event in the outbox on `client`, which must be inside the transaction of the
 * change (control-plane work on the admin connection; tenant code uses `emit(tx, …)`).
 * It is delivered only if that transaction commits, after the tenant's earlier events.
 * The tenant's order is taken here and held until the transaction ends, so keep the
 * transaction short after writing it.
 *
 * @example
 * ```ts
 * await inTransaction(pool, async (client) => {
 *   await client.query('UPDATE tenantry.tenants SET plan = $2 WHERE id = $1', [id, 'pro']);
 *   await writeEvent(client, { tenantId: id, type: 'tenant.plan_changed', payload: { plan: 'pro' } });
 * });
 * ```
 */
export async function writeEvent(client: Pick<ClientBase, 'query'>, event: OutboxEventInput): Promise<void> {
  const { text, values } = eventStatement(event);
  await client.query(text, values);
}

/**
 * {@link writeEvent}'s statement (the type and payload checked), for a caller that sends it
 * with others in one round trip (`runPipelined`).
 *
 * @example
 * ```ts
 * await runPipelined(client, [change, eventStatement({ tenantId: id, type: 'tenant.created' })]);
 * ```
 */
export function eventStatement(event: OutboxEventInput): { text: string; values: unknown[] } {
  checkEventType(event.type);
  return {
    text: 'INSERT INTO tenantry.outbox (tenant_id, type, payload, actor, request_id) VALUES ($1, $2, $3, $4, $5)',
    values: [
      event.tenantId,
      event.type,
      eventPayloadJson(event.payload ?? {}),
      event.actor ?? null,
      event.requestId ?? null,
    ],
  };
}
