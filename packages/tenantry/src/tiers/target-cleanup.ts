import { TenantryError } from '../errors/catalog.ts';
import { quoteIdent } from '../sql.ts';
import type { TargetRow } from './targets.ts';
import type { TierDeps } from './tier-deps.ts';

/**
 * Removes targets (tenant schemas and databases, templates) and what they hold: on a
 * tenant's hard delete, when provisioning fails, and what a crash left half-created.
 */
export class TargetCleanup {
  readonly #deps: TierDeps;

  constructor(deps: TierDeps) {
    this.#deps = deps;
  }

  /**
   * Removes a target and what it holds: `DROP SCHEMA … CASCADE` or `DROP DATABASE … WITH
   * (FORCE)`, then its row. Idempotent.
   */
  async drop(id: string): Promise<void> {
    const { rows } = await this.#deps.admin.query<TargetRow>('SELECT * FROM tenantry.targets WHERE id = $1', [id]);
    const row = rows[0];
    if (!row) return;
    if (row.kind === 'shared') throw new TenantryError('INVALID_INPUT', 'the shared target cannot be dropped');
    await this.#deps.admin.query(`UPDATE tenantry.targets SET state = 'retiring', updated_at = now() WHERE id = $1`, [
      id,
    ]);
    const placement = await this.#deps.placements.resolve(row.placement_id);
    if (row.database_name === null) {
      await this.#deps.admin.query(`DROP SCHEMA IF EXISTS ${quoteIdent(row.schema_name)} CASCADE`);
    } else {
      const server = await this.#deps.connect(placement, null);
      try {
        await server.client.query(`DROP DATABASE IF EXISTS ${quoteIdent(row.database_name)} WITH (FORCE)`);
      } finally {
        await server.release();
      }
    }
    await this.#deps.admin.query('DELETE FROM tenantry.migrations WHERE chain = $1 AND target = $2', ['tenant', id]);
    await this.#deps.admin.query('DELETE FROM tenantry.targets WHERE id = $1', [id]);
  }

  /** Drops every target of a tenant (its schema or database): the hard delete of a non-pool tenant. */
  async dropTenantTargets(tenantId: string): Promise<void> {
    const { rows } = await this.#deps.admin.query<{ id: string }>(
      'SELECT id FROM tenantry.targets WHERE tenant_id = $1',
      [tenantId],
    );
    for (const { id } of rows) await this.drop(id);
  }

  /**
   * Drops what crashed provisioning left: targets still `provisioning` (or `retiring`)
   * after `olderThanMs`. Returns their ids.
   */
  async cleanupStale(olderThanMs = 10 * 60_000): Promise<string[]> {
    const { rows } = await this.#deps.admin.query<{ id: string }>(
      `SELECT id FROM tenantry.targets WHERE state IN ('provisioning', 'retiring')
          AND updated_at < now() - make_interval(secs => $1::double precision / 1000)`,
      [olderThanMs],
    );
    for (const { id } of rows) await this.drop(id);
    return rows.map((r) => r.id);
  }
}
