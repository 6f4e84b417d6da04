import { randomBytes } from 'node:crypto';
import type { ClientBase, QueryResult } from 'pg';
import { inTransaction } from '../control/admin-transaction.ts';
import type { ResolvedPlacement } from '../control/placements.ts';
import { TenantryError } from '../errors/catalog.ts';
import { applyChainToNewTarget, applyPendingMigrations, type MigrationTarget } from '../migrate/runner.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';
import { type PipelinedStatement, runPipelined } from '../wire/statement-pipeline.ts';
import { recordProgressSql, type TargetRecord, type TargetRow, targetId, toTarget } from './targets.ts';
import type { Placed, TierDeps } from './tier-deps.ts';

/**
 * The schema tier: each tenant gets a schema of its own in the main database. A tenant
 * claims a *warm* schema (created and migrated ahead of time) with one
 * `UPDATE … FOR UPDATE SKIP LOCKED`, in the transaction that creates the tenant; with none
 * warm, it creates one in that same transaction (`CREATE SCHEMA` is transactional, so a
 * crash leaves nothing behind).
 */
export class SchemaTier {
  readonly #deps: TierDeps;

  constructor(deps: TierDeps) {
    this.#deps = deps;
  }

  /** Number of tenant migrations: a target with this many applied is at head. */
  get #head(): number {
    return this.#deps.config.migrations.length;
  }

  /**
   * Gives tenant `tenantId` a schema on `placement`, inside the caller's main-database
   * transaction: a warm one when there is one, else a new one created and migrated there.
   * `begin`: the statements that open that transaction, sent in the claim's round trip.
   */
  async placeSchema(
    client: ClientBase,
    tenantId: string,
    placement: ResolvedPlacement,
    begin: readonly PipelinedStatement[] = [],
  ): Promise<Placed> {
    this.#assertMainDatabase(placement);
    const results = await runPipelined(client, [
      ...begin,
      {
        text: `UPDATE tenantry.targets SET state = 'active', tenant_id = $1, updated_at = now()
                WHERE id = (SELECT id FROM tenantry.targets
                             WHERE state = 'warm' AND kind = 'schema' AND placement_id = $2
                             ORDER BY applied_count DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING *`,
        values: [tenantId, placement.id],
      },
    ]);
    const row = (results.at(-1) as QueryResult<TargetRow> | undefined)?.rows[0];
    let target = row ? toTarget(row) : undefined;
    if (target && target.appliedCount < this.#head) await this.#migrateInTransaction(client, target);
    target ??= await this.#createSchema(client, placement, { tenantId, state: 'active' });
    return {
      placementId: placement.id,
      targetId: target.id,
      schemaName: target.schemaName,
      databaseName: null,
      inMainDatabase: true,
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
    const placement = await this.#deps.placements.resolveByName(placementName);
    if (placement.tier !== 'schema')
      throw new TenantryError('INVALID_INPUT', `placement ${placementName} is not schema-tier`);
    // Counted once: a count per schema would make filling quadratic in the pool's size.
    // A concurrent refill may overshoot a little; claims use the surplus.
    const missing = count - (await this.warmCount(placementName));
    let created = 0;
    while (created < missing) {
      await inTransaction(this.#deps.admin, (client) =>
        this.#createSchema(client, placement, { tenantId: null, state: 'warm' }),
      );
      created++;
    }
    return created;
  }

  /**
   * A schema on `placement` for a tenant moving in: a warm one taken out of the pool, or a
   * new one, committed as `provisioning` (no tenant yet; `cleanupStale` drops it if
   * the move dies before its switch).
   */
  async reserveSchema(placement: ResolvedPlacement): Promise<TargetRecord> {
    this.#assertMainDatabase(placement);
    return inTransaction(this.#deps.admin, async (client) => {
      const { rows } = await client.query<TargetRow>(
        `UPDATE tenantry.targets SET state = 'provisioning', updated_at = now()
          WHERE id = (SELECT id FROM tenantry.targets
                       WHERE state = 'warm' AND kind = 'schema' AND placement_id = $1
                       ORDER BY applied_count DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING *`,
        [placement.id],
      );
      let target = rows[0] ? toTarget(rows[0]) : undefined;
      if (target && target.appliedCount < this.#head) target = await this.#migrateInTransaction(client, target);
      target ??= await this.#createSchema(client, placement, { tenantId: null, state: 'provisioning' });
      return target;
    });
  }

  /** Warm schemas waiting on a placement. */
  async warmCount(placementName: string): Promise<number> {
    const { rows } = await this.#deps.admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tenantry.targets t JOIN tenantry.placements p ON p.id = t.placement_id
        WHERE p.name = $1 AND t.state = 'warm'`,
      [placementName],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * A new schema, migrated to head, in the caller's transaction: its target row, the
   * schema, its grant, the ledger, the chain's declared tables and indexes and the progress
   * record in one round trip (plus one per `m.query()` of the chain; see
   * `applyChainToNewTarget`).
   */
  async #createSchema(
    client: ClientBase,
    placement: ResolvedPlacement,
    options: { tenantId: string | null; state: 'warm' | 'active' | 'provisioning' },
  ): Promise<TargetRecord> {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const id = targetId.schema(placement.name, schema);
    const { owner, runtime } = this.#deps.config.roles;
    const migrations = this.#deps.config.migrations;
    const version = migrations[migrations.length - 1]?.id ?? null;
    await applyChainToNewTarget(
      client,
      this.#migrationTarget(id, schema),
      [
        `INSERT INTO tenantry.targets (id, kind, placement_id, schema_name, state, tenant_id, applied_count, version)
         VALUES (${quoteLiteral(id)}, 'schema', ${quoteLiteral(placement.id)}, ${quoteLiteral(schema)},
                 ${quoteLiteral(options.state)}, ${options.tenantId === null ? 'NULL' : quoteLiteral(options.tenantId)},
                 ${migrations.length}, ${version === null ? 'NULL' : quoteLiteral(version)})`,
        `CREATE SCHEMA ${quoteIdent(schema)} AUTHORIZATION ${quoteIdent(owner)}`,
        `GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(runtime)}`,
      ],
      // Back to the admin: the caller's next statements are the control plane's.
      'RESET ROLE',
    );
    const now = new Date();
    return Object.freeze({
      id,
      kind: 'schema',
      placementId: placement.id,
      databaseName: null,
      schemaName: schema,
      state: options.state,
      tenantId: options.tenantId,
      appliedCount: migrations.length,
      version,
      lastError: null,
      failedAt: null,
      updatedAt: now,
    });
  }

  async #migrateInTransaction(client: ClientBase, target: TargetRecord): Promise<TargetRecord> {
    await applyPendingMigrations(client, this.#migrationTarget(target.id, target.schemaName));
    return this.#recordHead(client, target);
  }

  #migrationTarget(id: string, schema: string): MigrationTarget {
    const { config } = this.#deps;
    return {
      chain: 'tenant',
      target: id,
      schema,
      ownerRole: config.roles.owner,
      runtimeRole: config.roles.runtime,
      dialect: config.dialect,
      migrations: config.migrations,
      place: schema,
    };
  }

  /** Back to the admin, and the target recorded at head: one round trip. */
  async #recordHead(client: ClientBase, target: TargetRecord): Promise<TargetRecord> {
    const migrations = this.#deps.config.migrations;
    const version = migrations[migrations.length - 1]?.id ?? null;
    await client.query(`RESET ROLE; ${recordProgressSql(target.id, migrations.length, version)}`);
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
}
