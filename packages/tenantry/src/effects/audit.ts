import type { ClientBase } from 'pg';

/** One audit entry; written in the same transaction as the change it records. */
export interface AuditEntry {
  /** Who did it: `user:<id>`, `api-key:<id>`, `cli:<name>`, `system`, … */
  readonly actor: string;
  /** The tenant it affects; `null` for control-plane actions on no tenant (a placement). */
  readonly tenantId: string | null;
  /** What happened, `resource.verb`: `tenant.suspended`, `api_key.created`, … */
  readonly action: string;
  /** What it happened to, when not the tenant itself: `api_key:<id>`, `item:<id>`. */
  readonly target?: string | undefined;
  /** The request or job that did it (the tenant context's `requestId`). */
  readonly requestId?: string | undefined;
  /** The entry's metadata (JSON object; indexed for containment queries). */
  readonly details?: Record<string, unknown>;
}

/**
 * Appends an audit entry on `client`, which must be inside the transaction of the change
 * (control-plane work on the admin connection; tenant code uses `audit(tx, …)`). The
 * database chains it to the tenant's previous entry (see docs/events.md): the entry's
 * position and hash are set by PostgreSQL, and the tenant's chain stays locked until this
 * transaction ends, so keep the transaction short after writing it.
 *
 * @example
 * ```ts
 * await inTransaction(pool, async (client) => {
 *   await client.query('UPDATE tenantry.tenants SET plan = $2 WHERE id = $1', [id, 'pro']);
 *   await writeAudit(client, { actor: 'admin:ops', tenantId: id, action: 'tenant.updated', details: { plan: 'pro' } });
 * });
 * ```
 */
export async function writeAudit(client: ClientBase, entry: AuditEntry): Promise<void> {
  const { text, values } = auditStatement(entry);
  await client.query(text, values);
}

/**
 * {@link writeAudit}'s statement, for a caller that sends it with others in one round trip
 * (`runPipelined`).
 *
 * @example
 * ```ts
 * await runPipelined(client, [change, auditStatement({ actor: 'system', tenantId: id, action: 'tenant.created' })]);
 * ```
 */
export function auditStatement(entry: AuditEntry): { text: string; values: unknown[] } {
  return {
    text: `INSERT INTO tenantry.audit_log (actor, tenant_id, action, target, request_id, details)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    values: [
      entry.actor,
      entry.tenantId,
      entry.action,
      entry.target ?? null,
      entry.requestId ?? null,
      JSON.stringify(entry.details ?? {}),
    ],
  };
}
