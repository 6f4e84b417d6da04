import type { ClientBase, Pool } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import { databaseOf, tenantDatabasePrefix } from '../control/connection-url.ts';
import type { PlacementRegistry, ResolvedPlacement } from '../control/placements.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import type { KeyRing } from '../secrets/keys.ts';
import type { PipelinedStatement } from '../wire/statement-pipeline.ts';
import { type AdminConnection, adminConnector } from './admin-connection.ts';
import { DatabaseTier } from './database-tier.ts';
import { syncMirror } from './mirror-sync.ts';
import { SchemaTier } from './schema-tier.ts';
import { TargetCleanup } from './target-cleanup.ts';
import { activateTarget, ensureSharedTarget, type TargetRecord } from './targets.ts';
import type { Placed, TierDeps } from './tier-deps.ts';

export type { Placed, TierDeps } from './tier-deps.ts';

/**
 * Creates and removes the places tenant rows live in, fast and crash-safe. One entry point
 * over the parts, each in its own file:
 *
 * - **schema tier** ({@link SchemaTier}): a tenant claims a *warm* schema (created and
 *   migrated ahead of time) in the transaction that creates the tenant, or creates one there.
 * - **database tier** ({@link DatabaseTier}): `CREATE DATABASE …
 *   TEMPLATE` from a per-placement template kept at head by the fleet runner. The target
 *   row is committed as `provisioning` first, so {@link cleanupStale} can drop what a
 *   crash left behind.
 * - **removal** ({@link TargetCleanup}), the **mirror** row of a tenant database
 *   (`syncMirror`) and **admin connections** to any database (`adminConnector`).
 *
 * @example
 * ```ts
 * await tenantry.provisioner.fillWarmSchemas('schemas', 20);
 * await tenantry.provisioner.cleanupStale(); // what crashed provisioning left
 * ```
 */
export class Provisioner {
  readonly #deps: TierDeps;
  readonly #schemas: SchemaTier;
  readonly #databases: DatabaseTier;
  readonly #cleanup: TargetCleanup;

  constructor(admin: Pool, config: ResolvedConfig, keys: KeyRing, placements: PlacementRegistry) {
    this.#deps = Object.freeze({
      admin,
      config,
      keys,
      placements,
      connect: adminConnector(admin, config.databaseUrl),
      // Installations sharing a server never collide: names start with the main database's.
      prefix: tenantDatabasePrefix(databaseOf(config.databaseUrl) ?? 'tenantry'),
    });
    this.#cleanup = new TargetCleanup(this.#deps);
    this.#schemas = new SchemaTier(this.#deps);
    this.#databases = new DatabaseTier(this.#deps, this.#cleanup);
  }

  /** Number of tenant migrations: a target with this many applied is at head. */
  get head(): number {
    return this.#deps.config.migrations.length;
  }

  /** An admin (owner-capable) connection to `database` on `placement`'s server; the main pool for the main database. */
  adminConnection(placement: ResolvedPlacement, database: string | null): Promise<AdminConnection> {
    return this.#deps.connect(placement, database);
  }

  /** The `shared` target (pool tier), created on first use; its ledger is the pool tier's. */
  ensureSharedTarget(client: ClientBase, appliedCount: number, version: string | null): Promise<void> {
    return ensureSharedTarget(client, this.#deps.config.tenantSchema, appliedCount, version);
  }

  /** See {@link SchemaTier.placeSchema}. */
  placeSchema(
    client: ClientBase,
    tenantId: string,
    placement: ResolvedPlacement,
    begin: readonly PipelinedStatement[] = [],
  ): Promise<Placed> {
    return this.#schemas.placeSchema(client, tenantId, placement, begin);
  }

  /**
   * Creates warm schemas on `placement` until `count` are waiting; returns how many it
   * created (see {@link SchemaTier.fillWarmSchemas}).
   *
   * @example
   * ```ts
   * await tenantry.provisioner.fillWarmSchemas('schemas', 20);
   * ```
   */
  fillWarmSchemas(placementName: string, count: number): Promise<number> {
    return this.#schemas.fillWarmSchemas(placementName, count);
  }

  /** See {@link SchemaTier.reserveSchema}. */
  reserveSchema(placement: ResolvedPlacement): Promise<TargetRecord> {
    return this.#schemas.reserveSchema(placement);
  }

  /** Warm schemas waiting on a placement. */
  warmCount(placementName: string): Promise<number> {
    return this.#schemas.warmCount(placementName);
  }

  /** See {@link DatabaseTier.create}. */
  createDatabase(tenantId: string, placement: ResolvedPlacement, statementTimeoutMs: number): Promise<Placed> {
    return this.#databases.create(tenantId, placement, statementTimeoutMs);
  }

  /** Marks a provisioned target as the tenant's, inside the transaction that records the tenant. */
  activate(client: ClientBase, id: string, tenantId: string): Promise<void> {
    return activateTarget(client, id, tenantId);
  }

  /** See {@link DatabaseTier.ensureTemplate}. */
  ensureTemplate(placement: ResolvedPlacement): Promise<TargetRecord> {
    return this.#databases.ensureTemplate(placement);
  }

  /** See {@link TargetCleanup.drop}. */
  dropTarget(id: string): Promise<void> {
    return this.#cleanup.drop(id);
  }

  /** See {@link TargetCleanup.dropTenantTargets}. */
  dropTenantTargets(tenantId: string): Promise<void> {
    return this.#cleanup.dropTenantTargets(tenantId);
  }

  /** See {@link syncMirror}. */
  syncMirror(tenant: TenantRecord): Promise<void> {
    return syncMirror(tenant, this.#deps.placements, this.#deps.connect);
  }

  /**
   * Drops what crashed provisioning left: targets still `provisioning` (or `retiring`)
   * after `olderThanMs`. Returns their ids.
   *
   * @example
   * ```ts
   * const dropped = await tenantry.provisioner.cleanupStale(10 * 60_000);
   * ```
   */
  cleanupStale(olderThanMs?: number): Promise<string[]> {
    return this.#cleanup.cleanupStale(olderThanMs);
  }
}
