import { createHash, randomBytes } from 'node:crypto';
import pg, { type ClientBase, type Pool } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import { connectionConfig, databaseOf } from '../control/connection-url.ts';
import type { PlacementRegistry, ResolvedPlacement } from '../control/placements.ts';
import type { TenantRecord } from '../control/tenants.ts';
import { TenantryError } from '../errors/catalog.ts';
import { applyMigrations, applyPendingMigrations } from '../migrate/runner.ts';
import { setupDatabase } from '../migrate/setup.ts';
import type { KeyRing } from '../secrets/keys.ts';
import { quoteIdent } from '../sql.ts';
import { recordProgress, type TargetRecord, type TargetRow, targetId, toTarget } from './targets.ts';

/** An admin connection to one database; `release()` closes or returns it. */
export interface AdminConnection {
  readonly client: ClientBase;
  release(): Promise<void>;
}

/** Where a new tenant's rows went, for its control-plane row. */
export interface Placed {
  readonly placementId: string;
  readonly targetId: string;
  readonly schemaName: string | null;
  readonly databaseName: string | null;
  /** Whether the rows are in the main database (what `enter()` there checks). */
  readonly dataHere: boolean;
}

/**
 * Tenant and template databases are named `<prefix>_t_<random>` and `<prefix>_tpl_<random>`,
 * the prefix being the main database's name, so installations sharing a server never
 * collide. Past 40 characters (PostgreSQL allows 63) it keeps the name's start and end
 * around a hash of the whole: names that differ only in the middle stay apart, and a
 * trailing timestamp or random suffix stays readable.
 */
export function tenantDatabasePrefix(mainDatabase: string): string {
  const clean = mainDatabase.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (clean.length <= 40) return clean;
  const hash = createHash('sha256').update(mainDatabase).digest('hex').slice(0, 8);
  return `${clean.slice(0, 14)}_${hash}_${clean.slice(-16)}`.replace(/__+/g, '_');
}

/** SQLSTATEs of CREATE DATABASE … TEMPLATE while someone is connected to the template. */
const TEMPLATE_BUSY = '55006';

/**
 * Creates the places tenant rows live in, fast and crash-safe:
 *
 * - **schema tier**: a tenant claims a *warm* schema (created and migrated ahead of time)
 *   with one `UPDATE … FOR UPDATE SKIP LOCKED`, in the transaction that creates the
 *   tenant; with none warm, it creates one in that same transaction (`CREATE SCHEMA` is
 *   transactional, so a crash leaves nothing behind).
 * - **database tier**: `CREATE DATABASE … TEMPLATE` from a per-placement template kept at
 *   head by the fleet runner: one file copy instead of replaying every migration. The
 *   target row is committed as `provisioning` first, so {@link cleanupStale} can drop
 *   what a crash left behind.
 */
export class Provisioner {
  readonly #admin: Pool;
  readonly #config: ResolvedConfig;
  readonly #keys: KeyRing;
  readonly #placements: PlacementRegistry;
  /** Names of tenant databases start with the main database's name, so installations sharing a server never collide. */
  readonly #prefix: string;

  constructor(admin: Pool, config: ResolvedConfig, keys: KeyRing, placements: PlacementRegistry) {
    this.#admin = admin;
    this.#config = config;
    this.#keys = keys;
    this.#placements = placements;
    this.#prefix = tenantDatabasePrefix(databaseOf(config.databaseUrl) ?? 'tenantry');
  }

  /** Number of tenant migrations: a target with this many applied is at head. */
  get head(): number {
    return this.#config.migrations.length;
  }

  /** An admin (owner-capable) connection to `database` on `placement`'s server; the main pool for the main database. */
  async adminConnection(placement: ResolvedPlacement, database: string | null): Promise<AdminConnection> {
    if (placement.url === undefined && database === null) {
      const client = await this.#admin.connect();
      return { client, release: async () => client.release() };
    }
    const client = new pg.Client(connectionConfig(placement.url ?? this.#config.databaseUrl, database ?? undefined));
    client.on('error', () => {}); // a dropped admin connection fails its query; it must not crash the process
    await client.connect();
    return { client, release: () => client.end() };
  }

  /** The `shared` target (pool tier), created on first use; its ledger is the pool tier's. */
  async ensureSharedTarget(client: ClientBase, appliedCount: number, version: string | null): Promise<void> {
    await client.query(
      `INSERT INTO tenantry.targets (id, kind, placement_id, schema_name, state, applied_count, version)
       SELECT 'shared', 'shared', p.id, $1, 'active', $2, $3 FROM tenantry.placements p WHERE p.name = 'shared'
       ON CONFLICT (id) DO UPDATE SET applied_count = EXCLUDED.applied_count, version = EXCLUDED.version,
         schema_name = EXCLUDED.schema_name, last_error = NULL, failed_at = NULL, updated_at = now()`,
      [this.#config.tenantSchema, appliedCount, version],
    );
  }

  /**
   * Gives tenant `tenantId` a schema on `placement`, inside the caller's main-database
   * transaction: a warm one when there is one, else a new one created and migrated there.
   */
  async placeSchema(client: ClientBase, tenantId: string, placement: ResolvedPlacement): Promise<Placed> {
    this.#assertMainDatabase(placement);
    const { rows } = await client.query<TargetRow>(
      `UPDATE tenantry.targets SET state = 'active', tenant_id = $1, updated_at = now()
        WHERE id = (SELECT id FROM tenantry.targets
                     WHERE state = 'warm' AND kind = 'schema' AND placement_id = $2
                     ORDER BY applied_count DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING *`,
      [tenantId, placement.id],
    );
    let target = rows[0] ? toTarget(rows[0]) : undefined;
    if (target && target.appliedCount < this.head) await this.#migrateInTransaction(client, target);
    target ??= await this.#createSchema(client, placement, { tenantId, state: 'active' });
    return {
      placementId: placement.id,
      targetId: target.id,
      schemaName: target.schemaName,
      databaseName: null,
      dataHere: true,
    };
  }

  /**
   * Creates warm schemas on `placement` until `count` are waiting (each in its own
   * transaction, so concurrent refills and claims never block each other for long).
   * Returns how many it created.
   */
  async fillWarmSchemas(placementName: string, count: number): Promise<number> {
    if (!Number.isInteger(count) || count < 0 || count > 100_000) {
      throw new TenantryError('INVALID_INPUT', 'count must be an integer from 0 to 100000');
    }
    const placement = await this.#placements.resolveByName(placementName);
    if (placement.tier !== 'schema')
      throw new TenantryError('INVALID_INPUT', `placement ${placementName} is not schema-tier`);
    // Counted once: a count per schema would make filling quadratic in the pool's size.
    // A concurrent refill may overshoot a little; claims use the surplus.
    const missing = count - (await this.warmCount(placementName));
    let created = 0;
    while (created < missing) {
      const client = await this.#admin.connect();
      try {
        await client.query('BEGIN');
        await this.#createSchema(client, placement, { tenantId: null, state: 'warm' });
        await client.query('COMMIT');
        created++;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    }
    return created;
  }

  /**
   * A schema on `placement` for a tenant moving in: a warm one taken out of the pool, or a
   * new one, committed as `provisioning` (no tenant yet; {@link cleanupStale} drops it if
   * the move dies before its switch).
   */
  async reserveSchema(placement: ResolvedPlacement): Promise<TargetRecord> {
    this.#assertMainDatabase(placement);
    const client = await this.#admin.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<TargetRow>(
        `UPDATE tenantry.targets SET state = 'provisioning', updated_at = now()
          WHERE id = (SELECT id FROM tenantry.targets
                       WHERE state = 'warm' AND kind = 'schema' AND placement_id = $1
                       ORDER BY applied_count DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING *`,
        [placement.id],
      );
      let target = rows[0] ? toTarget(rows[0]) : undefined;
      if (target && target.appliedCount < this.head) target = await this.#migrateInTransaction(client, target);
      target ??= await this.#createSchema(client, placement, { tenantId: null, state: 'provisioning' });
      await client.query('COMMIT');
      return target;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  /** Warm schemas waiting on a placement. */
  async warmCount(placementName: string): Promise<number> {
    const { rows } = await this.#admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tenantry.targets t JOIN tenantry.placements p ON p.id = t.placement_id
        WHERE p.name = $1 AND t.state = 'warm'`,
      [placementName],
    );
    return rows[0]?.n ?? 0;
  }

  async #createSchema(
    client: ClientBase,
    placement: ResolvedPlacement,
    options: { tenantId: string | null; state: 'warm' | 'active' | 'provisioning' },
  ): Promise<TargetRecord> {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const id = targetId.schema(placement.name, schema);
    const { owner, runtime } = this.#config.roles;
    await client.query(
      `INSERT INTO tenantry.targets (id, kind, placement_id, schema_name, state, tenant_id)
       VALUES ($1, 'schema', $2, $3, $4, $5)`,
      [id, placement.id, schema, options.state, options.tenantId],
    );
    await client.query(`CREATE SCHEMA ${quoteIdent(schema)} AUTHORIZATION ${quoteIdent(owner)}`);
    await client.query(`GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(runtime)}`);
    const target = toTarget(
      (await client.query<TargetRow>('SELECT * FROM tenantry.targets WHERE id = $1', [id])).rows[0] as TargetRow,
    );
    return this.#migrateInTransaction(client, target);
  }

  async #migrateInTransaction(client: ClientBase, target: TargetRecord): Promise<TargetRecord> {
    const migrations = this.#config.migrations;
    await applyPendingMigrations(client, {
      chain: 'tenant',
      target: target.id,
      schema: target.schemaName,
      ownerRole: this.#config.roles.owner,
      runtimeRole: this.#config.roles.runtime,
      dialect: this.#config.dialect,
      migrations,
      place: target.schemaName,
    });
    await client.query('RESET ROLE');
    const version = migrations[migrations.length - 1]?.id ?? null;
    await recordProgress(client, target.id, migrations.length, version);
    return { ...target, appliedCount: migrations.length, version };
  }

  #assertMainDatabase(placement: ResolvedPlacement): void {
    if (placement.url !== undefined) {
      throw new TenantryError(
        'INVALID_INPUT',
        `schema-tier placement ${placement.name} has a connection URL; tenant schemas live in the main database (use a database-tier placement for another server)`,
      );
    }
  }

  /**
   * Creates tenant `tenantId`'s own database on `placement` from the placement's template,
   * outside any transaction (PostgreSQL cannot create a database inside one). The target
   * row is committed first as `provisioning`; {@link activate} turns it `active` in the
   * transaction that creates the tenant.
   */
  async createDatabase(tenantId: string, placement: ResolvedPlacement, statementTimeoutMs: number): Promise<Placed> {
    if (placement.tier !== 'database') {
      throw new TenantryError('INVALID_INPUT', `placement ${placement.name} is not database-tier`);
    }
    const template = await this.ensureTemplate(placement);
    const database = `${this.#prefix}_t_${randomBytes(6).toString('hex')}`;
    const id = targetId.database(placement.name, database);
    await this.#admin.query(
      `INSERT INTO tenantry.targets (id, kind, placement_id, database_name, schema_name, state, applied_count, version)
       VALUES ($1, 'database', $2, $3, $4, 'provisioning', $5, $6)`,
      [id, placement.id, database, this.#config.tenantSchema, template.appliedCount, template.version],
    );
    try {
      await this.#createDatabaseFrom(placement, database, template.databaseName as string);
      const conn = await this.adminConnection(placement, database);
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
        if (template.appliedCount < this.head) await this.#migrateDatabase(conn.client, id);
      } finally {
        await conn.release();
      }
    } catch (error) {
      await this.dropTarget(id).catch(() => {});
      throw new TenantryError('PROVISIONING_FAILED', `database for a ${placement.name} tenant`, { cause: error });
    }
    return { placementId: placement.id, targetId: id, schemaName: null, databaseName: database, dataHere: false };
  }

  /** Marks a provisioned target as the tenant's, inside the transaction that records the tenant. */
  async activate(client: ClientBase, id: string, tenantId: string): Promise<void> {
    await client.query(
      `UPDATE tenantry.targets SET state = 'active', tenant_id = $2, updated_at = now() WHERE id = $1`,
      [id, tenantId],
    );
  }

  /**
   * The placement's template database at head, created on first use. Tenant databases are
   * copied from it; the fleet runner migrates it with the tenants.
   */
  async ensureTemplate(placement: ResolvedPlacement): Promise<TargetRecord> {
    const existing = await this.#admin.query<TargetRow>(
      `SELECT * FROM tenantry.targets WHERE kind = 'template' AND placement_id = $1 AND state = 'active'`,
      [placement.id],
    );
    if (existing.rows[0]) return toTarget(existing.rows[0]);
    const lock = await this.#admin.connect();
    try {
      // One creator per placement; the others wait, then find it.
      await lock.query('SELECT pg_advisory_lock(hashtext($1))', [`tenantry:template:${placement.id}`]);
      const again = await lock.query<TargetRow>(
        `SELECT * FROM tenantry.targets WHERE kind = 'template' AND placement_id = $1`,
        [placement.id],
      );
      const found = again.rows[0] ? toTarget(again.rows[0]) : undefined;
      if (found?.state === 'active') return found;
      if (found) await this.dropTarget(found.id); // a crash mid-creation: start over
      const database = `${this.#prefix}_tpl_${randomBytes(3).toString('hex')}`;
      const id = targetId.template(placement.name, database);
      await lock.query(
        `INSERT INTO tenantry.targets (id, kind, placement_id, database_name, schema_name, state)
         VALUES ($1, 'template', $2, $3, $4, 'provisioning')`,
        [id, placement.id, database, this.#config.tenantSchema],
      );
      const server = await this.adminConnection(placement, null);
      try {
        await server.client.query(`CREATE DATABASE ${quoteIdent(database)}`);
      } finally {
        await server.release();
      }
      const conn = await this.adminConnection(placement, database);
      try {
        await setupDatabase(conn.client, this.#config, this.#keys, 'satellite');
        await conn.client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(database)} FROM PUBLIC`);
        await this.#migrateDatabase(conn.client, id);
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

  async #createDatabaseFrom(placement: ResolvedPlacement, database: string, template: string): Promise<void> {
    const server = await this.adminConnection(placement, null);
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
        `GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(this.#config.roles.runtime)}`,
      );
      await server.client.query(
        `GRANT TEMPORARY ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(this.#config.roles.owner)}`,
      );
    } finally {
      await server.release();
    }
  }

  /** Applies pending tenant migrations inside a satellite database and records progress in the main one. */
  async #migrateDatabase(client: ClientBase, id: string): Promise<void> {
    const migrations = this.#config.migrations;
    await applyMigrations(client, {
      chain: 'tenant',
      target: id,
      schema: this.#config.tenantSchema,
      ownerRole: this.#config.roles.owner,
      runtimeRole: this.#config.roles.runtime,
      dialect: this.#config.dialect,
      migrations,
      place: '',
    });
    await recordProgress(this.#admin, id, migrations.length, migrations[migrations.length - 1]?.id ?? null);
  }

  /**
   * Removes a target and what it holds: `DROP SCHEMA … CASCADE` or `DROP DATABASE … WITH
   * (FORCE)`, then its row. Idempotent.
   */
  async dropTarget(id: string): Promise<void> {
    const { rows } = await this.#admin.query<TargetRow>('SELECT * FROM tenantry.targets WHERE id = $1', [id]);
    const row = rows[0];
    if (!row) return;
    if (row.kind === 'shared') throw new TenantryError('INVALID_INPUT', 'the shared target cannot be dropped');
    await this.#admin.query(`UPDATE tenantry.targets SET state = 'retiring', updated_at = now() WHERE id = $1`, [id]);
    const placement = await this.#placements.resolve(row.placement_id);
    if (row.database_name === null) {
      await this.#admin.query(`DROP SCHEMA IF EXISTS ${quoteIdent(row.schema_name)} CASCADE`);
    } else {
      const server = await this.adminConnection(placement, null);
      try {
        await server.client.query(`DROP DATABASE IF EXISTS ${quoteIdent(row.database_name)} WITH (FORCE)`);
      } finally {
        await server.release();
      }
    }
    await this.#admin.query('DELETE FROM tenantry.migrations WHERE chain = $1 AND target = $2', ['tenant', id]);
    await this.#admin.query('DELETE FROM tenantry.targets WHERE id = $1', [id]);
  }

  /** Drops every target of a tenant (its schema or database): the hard delete of a non-pool tenant. */
  async dropTenantTargets(tenantId: string): Promise<void> {
    const { rows } = await this.#admin.query<{ id: string }>('SELECT id FROM tenantry.targets WHERE tenant_id = $1', [
      tenantId,
    ]);
    for (const { id } of rows) await this.dropTarget(id);
  }

  /**
   * Copies a tenant's status, statement timeout and freeze to the mirror row in its own
   * database, which is what `enter()` there reads. Suspension is also enforced before any
   * round trip (from the cached record), so a failed copy is reported, not fatal.
   */
  async syncMirror(tenant: TenantRecord): Promise<void> {
    if (tenant.databaseName === null) return;
    const placement = await this.#placements.resolve(tenant.placementId);
    const conn = await this.adminConnection(placement, tenant.databaseName);
    try {
      await conn.client.query(
        `UPDATE tenantry.tenants SET status = $2, statement_timeout_ms = $3, frozen = $4, updated_at = now()
          WHERE id = $1`,
        [tenant.id, tenant.status, tenant.limits.statementTimeoutMs, tenant.frozen],
      );
    } finally {
      await conn.release();
    }
  }

  /**
   * Drops what crashed provisioning left: targets still `provisioning` (or `retiring`)
   * after `olderThanMs`. Returns their ids.
   */
  async cleanupStale(olderThanMs = 10 * 60_000): Promise<string[]> {
    const { rows } = await this.#admin.query<{ id: string }>(
      `SELECT id FROM tenantry.targets WHERE state IN ('provisioning', 'retiring')
          AND updated_at < now() - make_interval(secs => $1::double precision / 1000)`,
      [olderThanMs],
    );
    for (const { id } of rows) await this.dropTarget(id);
    return rows.map((r) => r.id);
  }
}
