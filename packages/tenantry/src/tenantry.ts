import { Kysely } from 'kysely';
import pg, { type QueryResultRow } from 'pg';
import { ApiKeyStore } from './auth/api-key-store.ts';
import { PasswordHasher } from './auth/passwords.ts';
import { RoleStore } from './auth/role-store.ts';
import { TokenService } from './auth/tokens.ts';
import { UserStore } from './auth/users.ts';
import { type ResolvedConfig, resolveConfig, type TenantryOptions } from './config.ts';
import type { ContextPurpose } from './context/context-token.ts';
import { getTenant, type TenantContext, withTenant } from './context/tenant-context.ts';
import { PlacementRegistry } from './control/placements.ts';
import { listTenantTables, purgeStatements } from './control/tenant-tables.ts';
import { contextOf, type TenantPlacer, type TenantRecord, TenantRegistry } from './control/tenants.ts';
import { PoolMap } from './db/pool-map.ts';
import { assertSafeRuntimeRole } from './db/runtime-guard.ts';
import {
  currentTransaction,
  type QueryResult,
  runTenantQuery,
  runTenantTransaction,
  type TenantTransaction,
  type TransactionRunnerDeps,
} from './db/tenant-transaction.ts';
import { runDoctor } from './doctor/doctor.ts';
import type { DoctorReport } from './doctor/finding.ts';
import { TenantryError } from './errors/catalog.ts';
import { TenantFilterPlugin } from './kysely/tenant-filter-plugin.ts';
import { TenantTransactionDialect } from './kysely/transaction-driver.ts';
import { type FleetOptions, type FleetPlan, type FleetReport, migrateFleet, planFleet } from './migrate/fleet.ts';
import { applyPendingMigrations, type MigrationReport } from './migrate/runner.ts';
import { setupDatabase } from './migrate/setup.ts';
import { withSpan } from './ops/tracing.ts';
import { KeyRing } from './secrets/keys.ts';
import { type Placed, Provisioner } from './tiers/provisioner.ts';
import { TenantRouter } from './tiers/router.ts';
import { type MoveOptions, type MoveReport, TenantMover } from './tiers/tenant-move.ts';

/** How a caller names a tenant: its context, its record, or its id or slug. */
export type TenantRef = TenantContext | TenantRecord | string;

function runtimeUrlFrom(config: ResolvedConfig, keys: KeyRing): string {
  if (config.runtimeUrl) return config.runtimeUrl;
  let url: URL;
  try {
    url = new URL(config.databaseUrl);
  } catch {
    throw new TenantryError('CONFIG_INVALID', 'databaseUrl is not a URL; pass runtimeUrl explicitly');
  }
  url.username = config.roles.runtime;
  url.password = keys.runtimePassword(config.roles.runtime);
  return url.toString();
}

/**
 * Tenantry: verified tenant context, RLS-isolated tenant transactions, tenant lifecycle.
 *
 * @typeParam DB - Kysely database interface of the application's tenant tables.
 * @example
 * ```ts
 * const tenantry = await Tenantry.connect<DB>({ databaseUrl, secret, migrations });
 * await tenantry.setup();    // roles, control plane, context key (idempotent)
 * await tenantry.migrate();  // tenant tables
 * const acme = await tenantry.tenants.create({ slug: 'acme', name: 'Acme' });
 * const items = await tenantry.withTenant(acme, (tx) => tx.db.selectFrom('items').selectAll().execute());
 * ```
 */
export class Tenantry<DB = unknown> {
  readonly config: ResolvedConfig;
  /** The tenant registry and lifecycle (control plane). */
  readonly tenants: TenantRegistry;
  /** Where tenants' data lives; credentials sealed at rest. */
  readonly placements: PlacementRegistry;
  /** Users and their memberships (control plane). */
  readonly users: UserStore;
  /** Custom roles of tenants (see {@link RoleStore}). */
  readonly roles: RoleStore;
  /** Login, access JWTs and rotating refresh tokens. */
  readonly auth: TokenService;
  /** API keys: stored as keyed hashes, verified with one indexed lookup, revocation seen within 1 s. */
  readonly apiKeys: ApiKeyStore;
  /** Pool on `databaseUrl` (owner/admin): control plane and migrations only, never tenant work. */
  readonly adminPool: pg.Pool;
  /** Pool on the runtime role: tenant work only. */
  readonly runtimePool: pg.Pool;
  /** Runtime connections to tenant databases and other placements, under one global budget. */
  readonly poolMap: PoolMap;
  /** Creates and removes tenant schemas and databases (warm pool, templates). */
  readonly provisioner: Provisioner;
  readonly #keys: KeyRing;
  readonly #deps: TransactionRunnerDeps;
  readonly #mover: TenantMover;
  #tenantTables = new Set<string>();
  /** Per server: a passing runtime-role check (see `assertSafeRuntimeRole`). */
  readonly #safe = new Map<string, Promise<void>>();

  private constructor(config: ResolvedConfig) {
    this.config = config;
    this.#keys = new KeyRing(config.secret);
    this.adminPool = new pg.Pool({
      connectionString: config.databaseUrl,
      max: config.adminPoolMax,
      idleTimeoutMillis: 10_000,
      // Without it a connect to an unreachable host (or a wait for a pool slot) never ends:
      // requests would hang instead of answering DATABASE_UNAVAILABLE.
      connectionTimeoutMillis: 5_000,
    });
    this.runtimePool = new pg.Pool({
      connectionString: runtimeUrlFrom(config, this.#keys),
      max: config.pool.max,
      idleTimeoutMillis: config.pool.idleTimeoutMs,
      maxUses: config.pool.maxUses,
      connectionTimeoutMillis: 5_000, // see adminPool
    });
    for (const pool of [this.adminPool, this.runtimePool]) {
      // An idle client losing its server must not crash the process; the pool drops it.
      pool.on('error', (error) => config.logger?.warn({ err: error.message }, 'idle PostgreSQL connection failed'));
      // A checked-out client has no listener of the pool's: a server crash mid-transaction
      // would be an uncaught 'error' and end the process. The statement in flight fails on
      // its own, and the pool discards a failed client when it is released.
      pool.on('connect', (client) => client.on('error', () => {}));
    }
    const db = new Kysely<unknown>({
      dialect: new TenantTransactionDialect(),
      plugins: [
        new TenantFilterPlugin({
          isTenantTable: (table, schema) => this.#tenantTables.has(`${schema ?? config.tenantSchema}.${table}`),
          tenantId: () => {
            const tx = currentTransaction();
            if (!tx) throw new TenantryError('NO_TENANT_TRANSACTION');
            return tx.tenant.id;
          },
        }),
      ],
    });
    this.placements = new PlacementRegistry(this.adminPool, this.#keys.key('credential-encryption'));
    this.poolMap = new PoolMap({
      globalMax: config.tenantDatabases.max,
      perPoolMax: config.tenantDatabases.perDatabase,
      idleTimeoutMs: config.tenantDatabases.idleTimeoutMs,
      acquireTimeoutMs: config.tenantDatabases.acquireTimeoutMs,
      onError: (error) => config.logger?.warn({ err: error.message }, 'idle tenant-database connection failed'),
    });
    this.provisioner = new Provisioner(this.adminPool, config, this.#keys, this.placements);
    const router = new TenantRouter({
      mainPool: this.runtimePool,
      poolMap: this.poolMap,
      placements: this.placements,
      mainUrl: config.runtimeUrl ?? config.databaseUrl,
      runtime: { user: config.roles.runtime, password: this.#keys.runtimePassword(config.roles.runtime) },
      locate: async (tenantId) => {
        const t = await this.tenants.get(tenantId);
        return { placementId: t.placementId, database: t.databaseName };
      },
      ensureSafe: (server, client) => {
        // Only a passing check is remembered: a failure (or a dropped connection during
        // it) is checked again on the next transaction.
        let check = this.#safe.get(server);
        if (!check) {
          check = assertSafeRuntimeRole(client).catch((error: unknown) => {
            this.#safe.delete(server);
            throw error;
          });
          this.#safe.set(server, check);
        }
        return check;
      },
    });
    this.#deps = {
      connect: (tenant) => router.connect(tenant),
      contextKey: this.#keys.key('context-hmac'),
      dialect: config.dialect,
      tokenTtlMs: config.contextTokenTtlMs,
      prepareContextStatement: config.prepareContextStatement,
      contextBinding: config.contextBinding,
      sharedSchema: config.tenantSchema,
      db,
    };
    this.tenants = new TenantRegistry(this.adminPool, (tenant) => this.#purge(tenant), this.#placer());
    this.#mover = new TenantMover({
      admin: this.adminPool,
      config,
      contextKey: this.#keys.key('context-hmac'),
      tenants: this.tenants,
      placements: this.placements,
      provisioner: this.provisioner,
      poolMap: this.poolMap,
    });
    const passwords = new PasswordHasher();
    this.users = new UserStore(this.adminPool, { passwords });
    this.roles = new RoleStore(this.adminPool);
    this.auth = new TokenService(this.adminPool, this.#keys, { passwords });
    this.apiKeys = new ApiKeyStore(this.adminPool, this.#keys.key('api-key-hash'), {
      ...(config.apiKeyPrefix ? { prefix: config.apiKeyPrefix } : {}),
      ...(config.logger ? { logger: config.logger } : {}),
    });
  }

  /**
   * Validates options and creates the pools (connections open lazily). Then call
   * {@link setup} once per deployment (idempotent) before tenant work.
   */
  static async connect<DB = unknown>(options: TenantryOptions): Promise<Tenantry<DB>> {
    const tenantry = new Tenantry<DB>(resolveConfig(options));
    await tenantry.refreshTenantTables().catch(() => {
      // Not set up yet: setup()/migrate() load the list.
    });
    return tenantry;
  }

  /** Creates roles, schemas and the control plane, and installs the context key. Idempotent. */
  async setup(): Promise<MigrationReport> {
    const client = await this.adminPool.connect();
    try {
      return await setupDatabase(client, this.config, this.#keys);
    } finally {
      client.release();
    }
  }

  /**
   * Applies pending tenant-table migrations to the shared tables (pool tier). Tenant
   * schemas and databases are migrated by the fleet runner (`tenantry migrate`).
   */
  async migrate(): Promise<MigrationReport> {
    const client = await this.adminPool.connect();
    try {
      await client.query('BEGIN');
      const { migrations } = this.config;
      const report = await applyPendingMigrations(client, {
        chain: 'tenant',
        target: 'shared',
        schema: this.config.tenantSchema,
        ownerRole: this.config.roles.owner,
        runtimeRole: this.config.roles.runtime,
        dialect: this.config.dialect,
        migrations,
        place: '',
      });
      await this.provisioner.ensureSharedTarget(client, migrations.length, migrations.at(-1)?.id ?? null);
      await client.query('COMMIT');
      await this.refreshTenantTables();
      return report;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  /**
   * Which targets (shared tables, tenant schemas and databases, warm schemas, templates)
   * are behind this instance's migrations, from the control plane alone; changes nothing.
   *
   * @example
   * ```ts
   * const plan = await tenantry.planFleet();
   * console.log(`${plan.targets.length} targets behind ${plan.version}`);
   * ```
   */
  planFleet(): Promise<FleetPlan> {
    return planFleet({
      config: this.config,
      admin: this.adminPool,
      placements: this.placements,
      provisioner: this.provisioner,
    });
  }

  /**
   * Brings every target to head, `concurrency` at a time, each in its own transaction;
   * failures are recorded and reported while the others go on, and rerunning after a kill
   * finishes the job (see `docs/migrations.md`).
   *
   * @example
   * ```ts
   * const report = await tenantry.migrateFleet({ concurrency: 8, canary: ['acme'] });
   * if (report.failed.length > 0) process.exitCode = 1;
   * ```
   */
  async migrateFleet(options: FleetOptions = {}): Promise<FleetReport> {
    const report = await migrateFleet(
      { config: this.config, admin: this.adminPool, placements: this.placements, provisioner: this.provisioner },
      options,
    );
    if (report.migrated > 0) await this.refreshTenantTables(); // the shared tables may have changed
    return report;
  }

  /**
   * Moves a tenant to another tier or placement: copies its rows, verifies row counts and
   * checksums per table, switches atomically and removes the old copy. The tenant is
   * read-only only while its rows are copied (writes get the retryable `TENANT_MOVING`);
   * no acknowledged write is lost or duplicated. See `docs/isolation-tiers.md`.
   *
   * @example
   * ```ts
   * const report = await tenantry.moveTenant('acme', { to: 'database' });
   * console.log(report.frozenMs, report.tables);
   * ```
   */
  moveTenant(tenant: string, options: MoveOptions): Promise<MoveReport> {
    return this.#mover.move(tenant, options);
  }

  /** Reloads which tables are tenant tables (the Kysely tenant filter uses the list). */
  async refreshTenantTables(): Promise<void> {
    // The shared schema's copy is the reference: every tenant schema has the same tables.
    const tables = await listTenantTables(this.adminPool, [this.config.tenantSchema]);
    this.#tenantTables = new Set(tables.map((t) => `${t.schema}.${t.table}`));
  }

  /** How the registry provisions a new tenant's place (see {@link Provisioner}). */
  #placer(): TenantPlacer {
    const defaults = { pool: 'shared', schema: 'schemas', database: 'databases' } as const;
    type Prepared = { tier: 'pool' | 'schema' | 'database'; placementId: string; placed?: Placed };
    return {
      prepare: async ({ id, tier, placement, statementTimeoutMs }): Promise<Prepared> => {
        const bad = (message: string) =>
          new TenantryError('INVALID_INPUT', `placement: ${message}`, {
            details: { problems: [{ path: 'placement', message }] },
          });
        const resolved = await this.placements.resolveByName(placement ?? defaults[tier]).catch(() => {
          throw bad(`no placement named ${placement ?? defaults[tier]}`);
        });
        if (resolved.tier !== tier) throw bad(`${resolved.name} is a ${resolved.tier}-tier placement`);
        if (tier === 'pool' && resolved.url !== undefined) throw bad('pool-tier tenants live in the main database');
        if (tier !== 'database') return { tier, placementId: resolved.id };
        return {
          tier,
          placementId: resolved.id,
          placed: await this.provisioner.createDatabase(id, resolved, statementTimeoutMs),
        };
      },
      place: async (client, tenantId, prepared) => {
        const p = prepared as Prepared;
        if (p.tier === 'pool')
          return { placementId: p.placementId, schemaName: null, databaseName: null, dataHere: true };
        if (p.tier === 'schema') {
          return this.provisioner.placeSchema(client, tenantId, await this.placements.resolve(p.placementId));
        }
        const placed = p.placed as Placed;
        await this.provisioner.activate(client, placed.targetId, tenantId);
        return placed;
      },
      abort: async (prepared) => {
        const placed = (prepared as Prepared | undefined)?.placed;
        if (placed) await this.provisioner.dropTarget(placed.targetId);
      },
      changed: (tenant) => this.provisioner.syncMirror(tenant),
    };
  }

  /**
   * Runs `fn` in a tenant transaction for the current tenant (from {@link withTenant}).
   * Throws `NO_TENANT_CONTEXT` outside one: there is no default tenant.
   */
  async transaction<T>(fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T> {
    const tenant = getTenant();
    return withSpan('tenantry.transaction', { 'tenantry.tenant_id': tenant.id }, () =>
      runTenantTransaction(this.#deps, tenant, 'work', fn),
    );
  }

  /**
   * Enters `tenant`'s context and runs `fn` in a tenant transaction.
   *
   * @example
   * ```ts
   * await tenantry.withTenant('acme', (tx) => tx.query('SELECT count(*) FROM items'));
   * ```
   */
  async withTenant<T>(tenant: TenantRef, fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T> {
    const context = await this.#resolve(tenant);
    return withTenant(context, () =>
      withSpan('tenantry.transaction', { 'tenantry.tenant_id': context.id }, () =>
        runTenantTransaction(this.#deps, context, 'work', fn),
      ),
    );
  }

  /**
   * Runs one statement for `tenant` as a whole tenant transaction, in one round trip to
   * PostgreSQL (`BEGIN`, the verified context, the statement and `COMMIT` pipelined):
   * the fastest way to do a one-statement read or write. Row-level security filters it
   * like any tenant transaction; an error rolls everything back.
   *
   * @example
   * ```ts
   * const { rows } = await tenantry.query('acme', 'SELECT * FROM items WHERE id = $1', [id]);
   * ```
   */
  async query<R extends QueryResultRow = Record<string, unknown>>(
    tenant: TenantRef,
    text: string,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    const context = await this.#resolve(tenant);
    return withSpan('tenantry.query', { 'tenantry.tenant_id': context.id }, () =>
      runTenantQuery<R>(this.#deps, context, 'work', text, values),
    );
  }

  async #resolve(tenant: TenantRef): Promise<TenantContext> {
    if (typeof tenant === 'string') return contextOf(await this.tenants.get(tenant));
    if ('createdAt' in tenant) return contextOf(tenant);
    return tenant;
  }

  /** @internal Maintenance transaction for Tenantry's own work on a tenant in any status. */
  runMaintenance<T>(tenant: TenantContext, fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T> {
    const purpose: ContextPurpose = 'maintenance';
    return withTenant(tenant, () => runTenantTransaction(this.#deps, tenant, purpose, fn));
  }

  async #purge(tenant: TenantRecord): Promise<Record<string, number>> {
    if (tenant.tier !== 'pool') {
      // Its own schema or database goes as a whole.
      if (tenant.databaseName) await this.poolMap.closePool(TenantRouter.key(tenant.placementId, tenant.databaseName));
      await this.provisioner.dropTenantTargets(tenant.id);
      return {};
    }
    const tables = await listTenantTables(this.adminPool, [this.config.tenantSchema]);
    return this.runMaintenance(contextOf(tenant), async (tx) => {
      const deleted: Record<string, number> = {};
      const statements = purgeStatements(tables);
      // Triggers may write to a table already emptied (a usage counter, say): go again
      // until a pass deletes nothing, a bounded number of times.
      for (let pass = 0; pass < 3; pass++) {
        let removed = 0;
        for (const [i, statement] of statements.entries()) {
          const t = tables[i] as { schema: string; table: string };
          const n = (await tx.query(statement, [tenant.id])).rowCount;
          deleted[`${t.schema}.${t.table}`] = (deleted[`${t.schema}.${t.table}`] ?? 0) + n;
          removed += n;
        }
        if (removed === 0) break;
      }
      return deleted;
    });
  }

  /**
   * Inspects the database for isolation gaps (tables, policies, keys, indexes, roles).
   *
   * @example
   * ```ts
   * const report = await tenantry.doctor();
   * if (!report.ok) console.table(report.findings);
   * ```
   */
  doctor(options: { schemas?: readonly string[] } = {}): Promise<DoctorReport> {
    return runDoctor(this.adminPool, {
      schemas: [...(options.schemas ?? [this.config.tenantSchema])],
      runtimeRole: this.config.roles.runtime,
      dialect: this.config.dialect,
    });
  }

  /** True when both pools reach PostgreSQL. */
  async health(): Promise<{ database: boolean }> {
    try {
      await this.adminPool.query('SELECT 1');
      return { database: true };
    } catch {
      return { database: false };
    }
  }

  /** Flushes API key usage, stops listeners and closes every pool. */
  async close(): Promise<void> {
    await this.apiKeys.close();
    await Promise.all([this.adminPool.end(), this.runtimePool.end(), this.poolMap.close()]);
  }
}
