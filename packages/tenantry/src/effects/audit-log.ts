import type { Pool } from 'pg';
import { type AuditFilter, type AuditPage, type AuditRow, auditPage, auditQueryValues } from './audit-entries.ts';
import { AuditPartitions } from './audit-partitions.ts';

/** One chain's verification: a tenant's, or (`tenantId` null) that of entries on no tenant. */
export interface AuditChainReport {
  readonly tenantId: string | null;
  readonly slug: string | null;
  /** Entries checked (those kept by retention). */
  readonly entries: number;
  readonly ok: boolean;
  /** The first entry found wrong, by position: its id (null when it is missing) and why. */
  readonly firstBad?: { readonly id: string | null; readonly seq: number; readonly problem: string };
}

/** The result of {@link AuditLog.verify}. */
export interface AuditVerifyReport {
  readonly ok: boolean;
  readonly chains: AuditChainReport[];
}

interface VerifyRow {
  tenant_id: string | null;
  slug: string | null;
  entries: string;
  bad_id: string | null;
  bad_seq: string | null;
  problem: string | null;
}

/**
 * The audit log on the control plane (admin pool): reads of any tenant's entries for the
 * control-plane API and the CLI, and verification of the hash chains.
 *
 * @example
 * ```ts
 * const report = await tenantry.audit.verify({ tenantId: acme.id });
 * if (!report.ok) console.error(report.chains.find((c) => !c.ok)?.firstBad);
 * ```
 */
export class AuditLog {
  readonly #pool: Pool;
  /** Monthly partitions: ahead of need, and retention. */
  readonly partitions: AuditPartitions;

  constructor(pool: Pool) {
    this.#pool = pool;
    this.partitions = new AuditPartitions(pool);
  }

  /**
   * A tenant's entries, newest first, filtered by actor, action and time, a page at a time.
   *
   * @example
   * ```ts
   * const { entries, nextCursor } = await tenantry.audit.list(acme.id, { action: 'api_key.created' });
   * ```
   */
  async list(tenantId: string, filter: AuditFilter = {}): Promise<AuditPage> {
    const { rows } = await this.#pool.query<AuditRow>(
      'SELECT * FROM tenantry.audit_entries($1, $2, $3, $4, $5, $6, $7)',
      [tenantId, ...auditQueryValues(filter)],
    );
    return auditPage(rows, filter);
  }

  /**
   * Recomputes every chain (or one tenant's) in PostgreSQL and reports, per chain, the
   * first entry that was edited, inserted, moved, or follows a deleted one, and entries
   * missing at the end (the chain's head is ahead of its last entry). Retention's dropped
   * months are skipped: a chain starts from its anchor.
   *
   * @example
   * ```ts
   * const { ok, chains } = await tenantry.audit.verify();
   * ```
   */
  async verify(options: { tenantId?: string } = {}): Promise<AuditVerifyReport> {
    const { rows } = await this.#pool.query<VerifyRow>(
      `SELECT v.tenant_id, t.slug, v.entries, v.bad_id, v.bad_seq, v.problem
         FROM tenantry.audit_verify($1, $2) v LEFT JOIN tenantry.tenants t ON t.id = v.tenant_id`,
      [options.tenantId ?? null, options.tenantId === undefined],
    );
    const chains = rows.map(
      (row): AuditChainReport => ({
        tenantId: row.tenant_id,
        slug: row.slug,
        entries: Number(row.entries),
        ok: row.problem === null,
        ...(row.problem === null
          ? {}
          : { firstBad: { id: row.bad_id, seq: Number(row.bad_seq), problem: row.problem } }),
      }),
    );
    return { ok: chains.every((c) => c.ok), chains };
  }
}
