import type { ClientBase } from 'pg';
import { inTransaction } from '../control/admin-transaction.ts';
import { notifyTenantChanged } from '../control/change-feed.ts';
import type { TenantErasure, TenantPurge } from '../control/tenant-placer.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { listTenantTables } from '../control/tenant-tables.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { qualified } from '../sql.ts';
import { controlCounts, removeOrphanAccounts } from './control-plane-rows.ts';
import { type ErasureHook, placesStanding } from './erasure-checks.ts';
import type { DataDeps } from './tenant-place.ts';

/** What a hard delete removed, and the verification that found nothing left. */
export interface ErasureReport {
  readonly tenantId: string;
  readonly erasedAt: string;
  /** Rows deleted per table (`schema.table`): tenant tables (pool tier) and control-plane tables. */
  readonly deleted: Readonly<Record<string, number>>;
  /** Audit entries of the tenant whose details were emptied (the entries, and what happened when, stay). */
  readonly auditEntriesRedacted: number;
  readonly verification: {
    readonly ok: true;
    /** Rows of the tenant found per table after the erasure: all 0. */
    readonly rows: Readonly<Record<string, number>>;
    /** The tenant's own schema or database, and whether it still exists: all false. */
    readonly places: Readonly<Record<string, boolean>>;
  };
}

/**
 * Erasure (GDPR art. 17) of a soft-deleted tenant, what `tenants.delete(ref, { hard: true })`
 * and `tenantry tenants delete --hard` run:
 *
 * 1. its rows in every tier: deleted from the shared tables, or its schema or database dropped;
 * 2. each registered {@link ErasureHook} (a cache namespace, an outbox) erases its part;
 * 3. in one control-plane transaction: its sessions (refresh tokens), API keys, memberships,
 *    custom roles, the accounts of members who belong to no other tenant, and its row; its
 *    audit entries keep action, actor and time but lose their details;
 * 4. **verification**, in that transaction and the tenant's maintenance context: every
 *    tenant table and every control-plane table with a `tenant_id` is counted for the
 *    tenant, the removed accounts are looked for, each hook reports what is left, and its
 *    schema or database must be gone. Anything but zero throws `ERASURE_INCOMPLETE` and
 *    rolls step 3 back (the tenant stays `deleted`; run the delete again). Otherwise the
 *    tombstone `tenant.erased` and `tenant.erasure_verified` (with the per-table counts)
 *    are written in the audit log with it.
 *
 * @example
 * ```ts
 * const report = await tenantry.eraseTenant('acme', { actor: 'dpo' });
 * console.log(report.verification.rows); // { 'public.items': 0, 'tenantry.api_keys': 0, … }
 * ```
 */
export class TenantEraser implements TenantErasure {
  readonly #deps: DataDeps;
  readonly #purge: TenantPurge;
  readonly #hooks: ErasureHook[] = [];

  constructor(deps: DataDeps, purge: TenantPurge) {
    this.#deps = deps;
    this.#purge = purge;
  }

  /** Adds a part of the tenant's data kept outside PostgreSQL tables (see {@link ErasureHook}). */
  addHook(hook: ErasureHook): () => void {
    this.#hooks.push(hook);
    return () => {
      const at = this.#hooks.indexOf(hook);
      if (at >= 0) this.#hooks.splice(at, 1);
    };
  }

  async erase(tenant: TenantRecord, actor: string): Promise<ErasureReport> {
    if (tenant.status !== 'deleted') {
      throw new TenantryError('INVALID_TENANT_STATE', 'only a deleted tenant can be erased');
    }
    const deleted: Record<string, number> = { ...(await this.#purge.purge(tenant)) };
    for (const hook of this.#hooks) await hook.erase(tenant.id);
    return inTransaction(this.#deps.admin, async (client) => {
      await this.#deps.enter(client, tenant.id);
      const { rows: members } = await client.query<{ user_id: string }>(
        'SELECT user_id FROM tenantry.memberships WHERE tenant_id = $1',
        [tenant.id],
      );
      const userIds = members.map((m) => m.user_id);
      for (const table of ['refresh_tokens', 'api_keys', 'memberships', 'roles']) {
        const { rowCount } = await client.query(`DELETE FROM ${qualified('tenantry', table)} WHERE tenant_id = $1`, [
          tenant.id,
        ]);
        deleted[`tenantry.${table}`] = rowCount ?? 0;
      }
      // Only accounts that belong to no other tenant: a shared user keeps theirs.
      const gone = await removeOrphanAccounts(client, userIds);
      deleted['tenantry.users'] = gone.length;
      // The log is append-only; its one allowed change empties an entry's details (the
      // chain covers their digest, so every hash still verifies).
      const redacted = await client.query<{ n: string }>('SELECT tenantry.audit_redact($1) AS n', [tenant.id]);
      deleted['tenantry.tenants'] = (await client.query('DELETE FROM tenantry.tenants WHERE id = $1', [tenant.id]))
        .rowCount as number;
      await notifyTenantChanged(client, tenant.id);
      const verification = await this.#verify(client, tenant, gone);
      const report: ErasureReport = {
        tenantId: tenant.id,
        erasedAt: new Date().toISOString(),
        deleted,
        auditEntriesRedacted: Number(redacted.rows[0]?.n ?? 0),
        verification,
      };
      await writeAudit(client, {
        actor,
        tenantId: tenant.id,
        action: 'tenant.erased',
        details: { deleted, auditEntriesRedacted: report.auditEntriesRedacted, hooks: this.#hooks.map((h) => h.name) },
      });
      await writeAudit(client, {
        actor,
        tenantId: tenant.id,
        action: 'tenant.erasure_verified',
        details: verification,
      });
      return report;
    });
  }

  async #verify(
    client: ClientBase,
    tenant: TenantRecord,
    removedUsers: readonly string[],
  ): Promise<ErasureReport['verification']> {
    const tenantId = tenant.id;
    const rows: Record<string, number> = {};
    // In the tenant's maintenance context: RLS shows this transaction every row of the tenant.
    for (const t of await listTenantTables(client, [this.#deps.sharedSchema])) {
      const { rows: r } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${qualified(t.schema, t.table)} WHERE tenant_id = $1`,
        [tenantId],
      );
      rows[`${t.schema}.${t.table}`] = r[0]?.n ?? 0;
    }
    for (const [table, sql] of await controlCounts(client)) {
      rows[table] = (await client.query<{ n: number }>(sql, [tenantId])).rows[0]?.n ?? 0;
    }
    rows['tenantry.users (removed accounts)'] = (
      await client.query<{ n: number }>('SELECT count(*)::int AS n FROM tenantry.users WHERE id = ANY($1::uuid[])', [
        [...removedUsers],
      ])
    ).rows[0]?.n as number;
    for (const hook of this.#hooks) rows[`hook:${hook.name}`] = await hook.remaining(tenantId);
    const places = await placesStanding(this.#deps, client, tenant);
    const left = Object.entries(rows).filter(([, n]) => n !== 0);
    const standing = Object.entries(places).filter(([, exists]) => exists);
    if (left.length > 0 || standing.length > 0) {
      throw new TenantryError('ERASURE_INCOMPLETE', 'rows or places of the tenant are left', {
        details: { tables: Object.fromEntries(left), places: Object.fromEntries(standing) },
      });
    }
    return { ok: true, rows, places };
  }
}
