import type { ClientBase } from 'pg';

/** One audit entry; written in the same transaction as the change it records. */
export interface AuditEntry {
  readonly actor: string;
  readonly tenantId: string | null;
  readonly action: string;
  readonly details?: Record<string, unknown>;
}

/** Appends an audit entry on `client`, which must be inside the transaction of the change. */
export async function writeAudit(client: ClientBase, entry: AuditEntry): Promise<void> {
  await client.query('INSERT INTO tenantry.audit_log (actor, tenant_id, action, details) VALUES ($1, $2, $3, $4)', [
    entry.actor,
    entry.tenantId,
    entry.action,
    JSON.stringify(entry.details ?? {}),
  ]);
}
