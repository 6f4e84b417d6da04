import { randomBytes } from 'node:crypto';
import type { ClientBase } from 'pg';
import type { ResolvedPlacement } from '../control/placements.ts';
import { TenantryError } from '../errors/catalog.ts';
import { applyMigrations } from '../migrate/runner.ts';
import { setupDatabase } from '../migrate/setup.ts';
import { quoteIdent } from '../sql.ts';
import type { TargetCleanup } from './target-cleanup.ts';
import { recordProgress, type TargetRecord, type TargetRow, targetId, toTarget } from './targets.ts';
import type { Placed, TierDeps } from './tier-deps.ts';

/** SQLSTATEs of CREATE DATABASE … TEMPLATE while someone is connected to the template. */
const TEMPLATE_BUSY = '55006';

/**
 * The database tier: each tenant gets a database of its own, named `<prefix>_t_<random>`
 * (see `tenantDatabasePrefix`), made by `CREATE DATABASE … TEMPLATE` from its placement's
 * template database (`<prefix>_tpl_<random>`), which the fleet runner keeps at head: one
 * file copy instead of replaying every migration. The target row is committed as
 * `provisioning` before the copy, so a crash leaves a row that `cleanupStale` drops.
 */
export class DatabaseTier {
  readonly #deps: TierDeps;
  readonly #cleanup: TargetCleanup;

  /** @param cleanup - drops the half-made database of a failed copy, or a template a crash left. */
  constructor(deps: TierDeps, cleanup: TargetCleanup) {
    this.#deps = deps;
    this.#cleanup = cleanup;
  }

  /**
   * Creates tenant `tenantId`'s own database on `placement` from the placement's template,
   * outside any transaction (PostgreSQL cannot create a database inside one). The target
   * row is committed first as `provisioning`; `activateTarget` turns it `active` in the
   * transaction that creates the tenant.
   */
  async create(tenantId: string, placement: ResolvedPlacement, statementTimeoutMs: number): Promise<Placed> {
    if (placement.tier !== 'database') {
      throw new TenantryError('INVALID_INPUT', `placement ${placement.name} is not database-tier`);
    }
    const template = await this.ensureTemplate(placement);
    const database = `${this.#deps.prefix}_t_${randomBytes(6).toString('hex')}`;
    const id = targetId.database(placement.name, database);
    await this.#deps.admin.query(
      `INSERT INTO tenantry.targets (id, kind, placement_id, database_name, schema_name, state, applied_count, version)
       VALUES ($1, 'database', $2, $3, $4, 'provisioning', $5, $6)`,
      [id, placement.id, database, this.#deps.config.tenantSchema, template.appliedCount, template.version],
    );
    try {
      await this.#copy(placement, database, template.databaseName as string);
      const conn = await this.#deps.connect(placement, database);
      try {
        // The copy carries the template's ledger: file it under this database's target.
        await conn.client.query('UPDATE tenantry.migrations SET target = $1 WHERE chain = $2 AND target = $3', [
          id,
          'tenant',
          template.id,
        ]);
        await conn.client.query(
          `INSERT INTO tenantry.tenants (id, statement_timeout_ms, data_here) VALUES ($1, $2, true)
           ON CONFLICT (id) DO UPDATE SET data_here = true, frozen = false, statement_timeout_ms = EXCLUDED.statement_timeout_ms`,
          [tenantId, statementTimeoutMs],
        );
        if (template.appliedCount < this.#deps.config.migrations.length) await this.#migrate(conn.client, id);
      } finally {
        await conn.release();
      }
    } catch (error) {
      await this.#cleanup.drop(id).catch(() => {});
      throw new TenantryError('PROVISIONING_FAILED', `database for a ${placement.name} tenant`, { cause: error });
    }
    return { placementId: placement.id, targetId: id, schemaName: null, databaseName: database, inMainDatabase: false };
  }

  /**
   * The placement's template database at head, created on first use. Tenant databases are
   * copied from it; the fleet runner migrates it with the tenants.
   */
  async ensureTemplate(placement: ResolvedPlacement): Promise<TargetRecord> {
    const existing = await this.#deps.admin.query<TargetRow>(
      `SELECT * FROM tenantry.targets WHERE kind = 'template' AND placement_id = $1 AND state = 'active'`,
      [placement.id],
    );
    if (existing.rows[0]) return toTarget(existing.rows[0]);
    const lock = await this.#deps.admin.connect();
    try {
      // One creator per placement; the others wait, then find it.
      await lock.query('SELECT pg_advisory_lock(hashtext($1))', [`tenantry:template:${placement.id}`]);
      const again = await lock.query<TargetRow>(
        `SELECT * FROM tenantry.targets WHERE kind = 'template' AND placement_id = $1`,
        [placement.id],
      );
      const found = again.rows[0] ? toTarget(again.rows[0]) : undefined;
      if (found?.state === 'active') return found;
      if (found) await this.#cleanup.drop(found.id); // a crash mid-creation: start over
      const database = `${this.#deps.prefix}_tpl_${randomBytes(3).toString('hex')}`;
      const id = targetId.template(placement.name, database);
      await lock.query(
        `INSERT INTO tenantry.targets (id, kind, placement_id, database_name, schema_name, state)
         VALUES ($1, 'template', $2, $3, $4, 'provisioning')`,
        [id, placement.id, database, this.#deps.config.tenantSchema],
      );
      const server = await this.#deps.connect(placement, null);
      try {
        await server.client.query(`CREATE DATABASE ${quoteIdent(database)}`);
      } finally {
        await server.release();
      }
      const conn = await this.#deps.connect(placement, database);
      try {
        await setupDatabase(conn.client, this.#deps.config, this.#deps.keys, 'satellite');
        await conn.client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(database)} FROM PUBLIC`);
        await this.#migrate(conn.client, id);
      } finally {
        await conn.release();
      }
      await lock.query(`UPDATE tenantry.targets SET state = 'active', updated_at = now() WHERE id = $1`, [id]);
      return toTarget(
        (await lock.query<TargetRow>('SELECT * FROM tenantry.targets WHERE id = $1', [id])).rows[0] as TargetRow,
      );
    } finally {
      await lock
        .query('SELECT pg_advisory_unlock(hashtext($1))', [`tenantry:template:${placement.id}`])
        .catch(() => {});
      lock.release();
    }
  }

  /**
   * Creates `database` on `placement`'s server as a copy of the `template` database, then
   * gives it the privileges a tenant database has. Waits (up to ~5 s) while someone is
   * connected to the template.
   */
  async #copy(placement: ResolvedPlacement, database: string, template: string): Promise<void> {
    const server = await this.#deps.connect(placement, null);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await server.client.query(`CREATE DATABASE ${quoteIdent(database)} TEMPLATE ${quoteIdent(template)}`);
          break;
        } catch (error) {
          // Someone (a fleet migration of the template) is connected to it: wait a little.
          if ((error as { code?: string }).code !== TEMPLATE_BUSY || attempt >= 50) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      // Database privileges are not copied from the template (see setup for TEMPORARY: the
      // owner keeps it for the context registers, nobody else has it).
      await server.client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(database)} FROM PUBLIC`);
      await server.client.query(
        `GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(this.#deps.config.roles.runtime)}`,
      );
      await server.client.query(
        `GRANT TEMPORARY ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(this.#deps.config.roles.owner)}`,
      );
    } finally {
      await server.release();
    }
  }

  /** Applies pending tenant migrations inside a satellite database and records progress in the main one. */
  async #migrate(client: ClientBase, id: string): Promise<void> {
    const migrations = this.#deps.config.migrations;
    await applyMigrations(client, {
      chain: 'tenant',
      target: id,
      schema: this.#deps.config.tenantSchema,
      ownerRole: this.#deps.config.roles.owner,
      runtimeRole: this.#deps.config.roles.runtime,
      dialect: this.#deps.config.dialect,
      migrations,
      place: '',
    });
    await recordProgress(this.#deps.admin, id, migrations.length, migrations[migrations.length - 1]?.id ?? null);
  }
}
