import type { Pool } from 'pg';
import type { TenantStatus } from '../context/tenant-context.ts';
import { writeAudit } from '../effects/audit.ts';
import { writeEvent } from '../effects/outbox.ts';
import { TenantryError } from '../errors/catalog.ts';
import { inTransaction } from './admin-transaction.ts';
import { notifyTenantChanged } from './change-feed.ts';
import { type TenantRecord, type TenantRow, toRecord } from './tenant-record.ts';

/** Which statuses each transition may start from, and where it goes. */
const TRANSITIONS = {
  suspend: { from: ['active'], to: 'suspended', action: 'tenant.suspended' },
  resume: { from: ['suspended'], to: 'active', action: 'tenant.resumed' },
  offboard: { from: ['active', 'suspended'], to: 'offboarding', action: 'tenant.offboarding' },
  delete: { from: ['active', 'suspended', 'offboarding'], to: 'deleted', action: 'tenant.deleted' },
} as const satisfies Record<string, { from: readonly TenantStatus[]; to: TenantStatus; action: string }>;

/** A lifecycle transition: `suspend`, `resume`, `offboard` or `delete` (soft). */
export type TenantTransition = keyof typeof TRANSITIONS;

/**
 * Moves a tenant along one transition in one control-plane transaction: the status
 * changes only if it is still one the transition starts from (a concurrent change makes
 * it `INVALID_TENANT_STATE`, never a skipped state), and the change is announced and
 * audited with it.
 *
 * @example
 * ```ts
 * const suspended = await transitionTenant(pool, await registry.get('acme'), 'suspend', 'admin:ops');
 * ```
 */
export async function transitionTenant(
  pool: Pool,
  current: TenantRecord,
  kind: TenantTransition,
  actor: string,
): Promise<TenantRecord> {
  const rule = TRANSITIONS[kind];
  return inTransaction(pool, async (client) => {
    const { rows } = await client.query<TenantRow>(
      `UPDATE tenantry.tenants SET status = $2, status_changed_at = now(), updated_at = now()
        WHERE id = $1 AND status = ANY($3) RETURNING *`,
      [current.id, rule.to, rule.from],
    );
    const row = rows[0];
    if (!row) {
      throw new TenantryError('INVALID_TENANT_STATE', `cannot ${kind} a tenant that is ${current.status}`, {
        details: { status: current.status, allowedFrom: rule.from },
      });
    }
    await notifyTenantChanged(client, row.id);
    await writeAudit(client, {
      actor,
      tenantId: row.id,
      action: rule.action,
      details: { from: current.status, to: rule.to },
    });
    await writeEvent(client, {
      tenantId: row.id,
      type: rule.action,
      actor,
      payload: { tenantId: row.id, slug: row.slug, from: current.status, to: rule.to },
    });
    return toRecord(row);
  });
}
