import type { Readable, Writable } from 'node:stream';
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { QueryResultRow } from 'pg';
import { ApiKeyStore } from './auth/api-key-store.ts';
import { PasswordHasher } from './auth/passwords.ts';
import { RoleStore } from './auth/role-store.ts';
import { TokenService } from './auth/tokens.ts';
import { UserStore } from './auth/users.ts';
import { type ResolvedConfig, resolveConfig, type TenantryOptions } from './config.ts';
import { enterContext } from './context/enter-context.ts';
import { KnownTenantStates } from './context/known-tenant-states.ts';
import { getTenant, type TenantContext } from './context/tenant-context.ts';
import { inTransaction } from './control/admin-transaction.ts';
import { ChangeFeed } from './control/change-feed.ts';
import { ChangeNotifier } from './control/change-notifier.ts';
import { PlacementRegistry } from './control/placements.ts';
import { contextOf, type TenantRecord } from './control/tenant-record.ts';
import { TenantRegistry } from './control/tenant-registry.ts';
import { TenantTableSet } from './control/tenant-tables.ts';
import type { ExportManifest } from './data/archive-format.ts';
import type { ErasureHook } from './data/erasure-checks.ts';
import { type ErasureReport, TenantEraser } from './data/tenant-erasure.ts';
import type { ExportOptions } from './data/tenant-export.ts';
import type { ImportOptions, ImportReport } from './data/tenant-import.ts';
import type { DataDeps } from './data/tenant-place.ts';
import type { UserErasureReport } from './data/user-erasure.ts';
import { DatabaseOps } from './dbops/database-ops.ts';
import { runDoctor } from './doctor/doctor.ts';
import type { DoctorReport } from './doctor/finding.ts';
import { AuditLog } from './effects/audit-log.ts';
import { OutboxDispatcher } from './effects/outbox-dispatcher.ts';
import { WebhookEndpoints } from './effects/webhook-endpoints.ts';
import { TenantryError } from './errors/catalog.ts';
import { type FleetPlan, planFleet } from './fleet/fleet-plan.ts';
import { type FleetOptions, type FleetReport, migrateFleet } from './fleet/fleet-run.ts';
import { JobQueue } from './jobs/job-queue.ts';
import { TenantLocks } from './jobs/tenant-locks.ts';
import { createTenantKysely } from './kysely/tenant-kysely.ts';
import { JOBS_CHANNEL } from './migrate/jobs-migration.ts';
import { OUTBOX_CHANNEL } from './migrate/outbox-migration.ts';
import { applyNonTransactionalMigration, applyPendingMigrations, type MigrationReport } from './migrate/runner.ts';
import { setupDatabase } from './migrate/setup.ts';
import { TenantSnapshots } from './ops/tenant-snapshots.ts';
import { loadTracing, withSpan } from './ops/tracing.ts';
import { UsageMeter } from './ops/usage-meter.ts';
import { UsageService } from './ops/usage-service.ts';
import type { TenantMigration } from './schema/migration.ts';
import { KeyRing } from './secrets/keys.ts';
import { CitusShardMover, type ShardMoveOptions, type ShardMoveReport } from './tiers/citus-shard-move.ts';
import { PlacementPolicy } from './tiers/placement-policy.ts';
import { Provisioner } from './tiers/provisioner.ts';
import { type MoveOptions, type MoveReport, TenantMover } from './tiers/tenant-move.ts';
import { TenantPurger } from './tiers/tenant-purge.ts';
import { AffineLender } from './transaction/affine-lender.ts';
import { TenantRouter } from './transaction/connection-router.ts';
import { PoolMap } from './transaction/pool-map.ts';
import { createAdminPool, createRuntimePool, RUNTIME_ACQUIRE_TIMEOUT_MS } from './transaction/pools.ts';
import { RuntimeRoleGuard } from './transaction/runtime-guard.ts';
import {
  type CompiledStatement,
  type QueryResult,
  runTenantQuery,
  runTenantTransaction,
  type TenantTransaction,
  type TransactionRunnerDeps,
} from './transaction/tenant-transaction.ts';

/** How a caller names a tenant: its context, its record, or its id or slug. */
export type TenantRef = TenantContext | TenantRecord | string;

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
 * const items = await tenantry.transaction(acme, (tx) => tx.db.selectFrom('items').selectAll().execute());
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
  /** The hash-chained audit log: reads, verification, partitions (see docs/events.md). */
  readonly audit: AuditLog;
  /**
   * Tenant events from the transactional outbox, delivered to in-process subscribers at
   * least once and in order per tenant (see docs/events.md). Subscribe, then `start()`.
   */
  readonly events: OutboxDispatcher;
  /**
   * Tenants' webhook endpoints and delivery history; a `WebhookDeliverer` subscribed to
   * {@link events} sends them (see docs/events.md).
   */
  readonly webhooks: WebhookEndpoints;
  /**
   * Background jobs of tenants: define, enqueue (in a tenant transaction or for a tenant),
   * run with fair workers, operate (see docs/jobs.md).
   */
  readonly jobs: JobQueue<DB>;
  /** Per-tenant distributed locks: `withLock(name, fn)` in the current tenant's namespace. */
  readonly locks: TenantLocks;
  /**
   * The Kysely instance of tenant work: runs inside {@link transaction} (it is `tx.db`), and
   * compiles inside a tenant context for {@link query}. Every query on a tenant table gets
   * the context's `tenant_id` predicate.
   */
  readonly db: Kysely<DB>;
  /** Pool on `databaseUrl` (owner/admin): control plane and migrations only, never tenant work. */
  readonly adminPool: pg.Pool;
  /** Pool on the runtime role: tenant work only. Its connections are lent through {@link runtimeLender}. */
  readonly runtimePool: pg.Pool;
  /**
   * Lends the runtime pool's connections to tenant transactions: schema-tier tenants prefer
   * the connections that served them, and one tenant holds at most `pool.maxPerTenant`.
   * Its `totalCount`, `idleCount` and `waitingCount` are the runtime connections' state.
   */
  readonly runtimeLender: AffineLender;
  /** Runtime connections to tenant databases and other placements, under one global budget. */
  readonly poolMap: PoolMap;
  /** Creates and removes tenant schemas and databases (warm pool, templates). */
  readonly provisioner: Provisioner;
  /**
   * Database health, statistics, slow statements, index advice, and audited maintenance
   * (ANALYZE, VACUUM, REINDEX CONCURRENTLY, missing tenant indexes, partitions).
   */
  readonly dbops: DatabaseOps;
  /**
   * Per-tenant usage and metering: top tenants over a window, daily metering rows, tenant
   * snapshots and performance reports (see docs/operations.md).
   */
  readonly usage: UsageService;
  readonly #keys: KeyRing;
  readonly #runner: TransactionRunnerDeps;
  readonly #mover: TenantMover;
  readonly #shardMover: CitusShardMover;
  readonly #tenantTables: TenantTableSet;
  readonly #data: DataDeps;
  readonly #eraser: TenantEraser;
  /** Sends tenant-create notifications after their commit, many at once (see ChangeNotifier). */
  readonly #notifier: ChangeNotifier;

  /** The composition root: builds each part from the parts it needs, passed explicitly. */
  private constructor(config: ResolvedConfig) {
    this.config = config;
    const keys = new KeyRing(config.secret);
    this.#keys = keys;
    this.adminPool = createAdminPool(config);
    this.runtimePool = createRuntimePool(config, keys);
    this.runtimeLender = new AffineLender(this.runtimePool, {
      max: config.pool.max,
      maxPerTenant: config.pool.maxPerTenant,
      maxSchemas: config.pool.maxSchemasPerConnection,
      affinity: config.pool.tenantAffinity,
      acquireTimeoutMs: RUNTIME_ACQUIRE_TIMEOUT_MS,
      affinityWaitMs: config.pool.affinityWaitMs,
    });
    this.#tenantTables = new TenantTableSet(this.adminPool, config.tenantSchema);
    this.placements = new PlacementRegistry(this.adminPool, keys.key('credential-encryption'));
    this.poolMap = new PoolMap({
      globalMax: config.tenantDatabases.max,
      perPoolMax: config.tenantDatabases.perDatabase,
      idleTimeoutMs: config.tenantDatabases.idleTimeoutMs,
      acquireTimeoutMs: config.tenantDatabases.acquireTimeoutMs,
      onError: (error) => config.logger?.warn({ err: error.message }, 'idle tenant-database connection failed'),
    });
    this.provisioner = new Provisioner(this.adminPool, config, keys, this.placements);
    const tables = this.#tenantTables;
    this.db = createTenantKysely<DB>((table, schema) => tables.has(table, schema));
    this.#data = {
      admin: this.adminPool,
      placements: this.placements,
      connect: (placement, database) => this.provisioner.adminConnection(placement, database),
      enter: (client, tenantId) =>
        enterContext(client, 'maintenance', tenantId, {
          contextKey: keys.key('context-hmac'),
          dialect: config.dialect,
          sharedSchema: config.tenantSchema,
          tokenTtlMs: config.contextTokenTtlMs,
          binding: 'session', // admin connections are direct
        }),
      sharedSchema: config.tenantSchema,
    };
    this.#eraser = new TenantEraser(
      this.#data,
      new TenantPurger({
        admin: this.adminPool,
        sharedSchema: config.tenantSchema,
        poolMap: this.poolMap,
        provisioner: this.provisioner,
        maintenance: (tenant, fn) => runTenantTransaction(this.#runner, tenant, 'maintenance', fn),
      }),
    );
    this.#notifier = new ChangeNotifier(this.adminPool, { logger: config.logger });
    this.tenants = new TenantRegistry(
      this.adminPool,
      new PlacementPolicy(this.placements, this.provisioner),
      this.#eraser,
      this.#notifier,
    );
    const meter = config.usage.enabled
      ? new UsageMeter(this.adminPool, { flushMs: config.usage.flushMs, logger: config.logger })
      : null;
    this.#runner = {
      connections: new TenantRouter({
        main: this.runtimeLender,
        poolMap: this.poolMap,
        placements: this.placements,
        mainUrl: config.runtimeUrl ?? config.databaseUrl,
        runtime: { user: config.roles.runtime, password: keys.runtimePassword(config.roles.runtime) },
        locator: this.tenants,
        guard: new RuntimeRoleGuard(),
      }),
      contextKey: keys.key('context-hmac'),
      dialect: config.dialect,
      tokenTtlMs: config.contextTokenTtlMs,
      prepareContextStatement: config.prepareContextStatement,
      contextBinding: config.contextBinding,
      sharedSchema: config.tenantSchema,
      db: this.db as Kysely<unknown>,
      usage: meter ?? undefined,
      applicationName: config.usage.applicationName,
      known: new KnownTenantStates(),
    };
    this.usage = new UsageService(
      this.adminPool,
      meter,
      new TenantSnapshots({
        admin: this.adminPool,
        sharedSchema: config.tenantSchema,
        placements: this.placements,
        connect: (placement, database) => this.provisioner.adminConnection(placement, database),
        maintenance: (tenant, fn) => runTenantTransaction(this.#runner, tenant, 'maintenance', fn),
      }),
    );
    this.#shardMover = new CitusShardMover({
      admin: this.adminPool,
      config,
      contextKey: keys.key('context-hmac'),
      tenants: this.tenants,
    });
    this.#mover = new TenantMover({
      admin: this.adminPool,
      config,
      contextKey: keys.key('context-hmac'),
      tenants: this.tenants,
      placements: this.placements,
      provisioner: this.provisioner,
      poolMap: this.poolMap,
    });
    this.audit = new AuditLog(this.adminPool);
    this.events = new OutboxDispatcher(
      {
        pool: this.adminPool,
        context: async (tenantId) => contextOf(await this.tenants.get(tenantId)),
        listen: async (wake) => {
          const feed = new ChangeFeed(this.adminPool.options, config.logger ? { logger: config.logger } : {});
          feed.on(OUTBOX_CHANNEL, wake);
          await feed.start();
          return () => feed.close();
        },
      },
      { ...config.events, logger: config.logger },
    );
    this.dbops = new DatabaseOps({
      config,
      admin: this.adminPool,
      poolMap: this.poolMap,
      placements: this.placements,
      provisioner: this.provisioner,
      tenants: this.tenants,
    });
    this.webhooks = new WebhookEndpoints(this.adminPool, keys.key('webhook-secret-encryption'));
    this.jobs = new JobQueue<DB>({
      pool: this.adminPool,
      resolve: (tenant) => this.#resolve(tenant),
      context: async (tenantId) => contextOf(await this.tenants.get(tenantId)),
      transaction: (tenant, fn) =>
        this.#transaction(tenant, 'work', fn as (tx: TenantTransaction<DB>) => Promise<never>),
      listen: async (wake) => {
        const feed = new ChangeFeed(this.adminPool.options, config.logger ? { logger: config.logger } : {});
        feed.on(JOBS_CHANNEL, wake);
        await feed.start();
        return () => feed.close();
      },
      ...(config.logger ? { logger: config.logger } : {}),
    });
    this.locks = new TenantLocks(this.adminPool);
    const passwords = new PasswordHasher();
    this.users = new UserStore(this.adminPool, { passwords });
    this.roles = new RoleStore(this.adminPool);
    this.auth = new TokenService(this.adminPool, keys, { passwords });
    this.apiKeys = new ApiKeyStore(this.adminPool, keys.key('api-key-hash'), {
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
    await loadTracing();
    await tenantry.refreshTenantTables().catch(() => {
      // Not set up yet: setup()/migrate() load the list.
    });
    return tenantry;
  }

  /**
   * Creates roles, schemas and the control plane, installs the context key, and creates the
   * audit log's and the usage metering's partitions ahead of need. Idempotent.
   */
  async setup(): Promise<MigrationReport> {
    const client = await this.adminPool.connect();
    let report: MigrationReport;
    try {
      report = await setupDatabase(client, this.config, this.#keys);
    } finally {
      client.release();
    }
    await this.audit.partitions.ensure();
    await this.usage.ensurePartitions();
    return report;
  }

  /**
   * Applies pending tenant-table migrations to the shared tables (pool tier). Tenant
   * schemas and databases are migrated by the fleet runner (`tenantry migrate`).
   */
  async migrate(): Promise<MigrationReport> {
    const { migrations } = this.config;
    const target = {
      chain: 'tenant',
      target: 'shared',
      schema: this.config.tenantSchema,
      ownerRole: this.config.roles.owner,
      runtimeRole: this.config.roles.runtime,
      dialect: this.config.dialect,
      migrations,
      place: '',
      // The shared tables are live: a `transaction: false` migration runs outside a transaction.
      nonTransactional: 'defer',
    } as const;
    const applied: string[] = [];
    for (;;) {
      const report = await inTransaction(this.adminPool, async (client) => {
        const step = await applyPendingMigrations(client, target);
        const count = step.deferred ? migrations.findIndex((m) => m.id === step.deferred) : migrations.length;
        await this.provisioner.ensureSharedTarget(client, count, migrations[count - 1]?.id ?? null);
        return step;
      });
      applied.push(...report.applied);
      if (report.deferred === undefined) break;
      const migration = migrations.find((m) => m.id === report.deferred) as TenantMigration;
      const client = await this.adminPool.connect();
      try {
        if (await applyNonTransactionalMigration(client, target, migration)) applied.push(migration.id);
      } finally {
        client.release();
      }
    }
    await this.refreshTenantTables();
    return Object.freeze({ chain: 'tenant', target: 'shared', applied: Object.freeze(applied) });
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

  /**
   * On a Citus cluster (`dialect: 'citus'`): isolates a pool-tier tenant to shards of its
   * own and, with `to: 'node'`, moves them to another node, verifying row counts and
   * checksums per table. Reads go on throughout; writes get the retryable `TENANT_MOVING`
   * for `frozenMs`. See docs/citus.md.
   *
   * @example
   * ```ts
   * const report = await tenantry.moveTenantShard('acme', { to: 'node', node: '10.0.0.7:5432' });
   * console.log(report.from.node, '→', report.to.node, report.frozenMs);
   * ```
   */
  moveTenantShard(tenant: string, options: ShardMoveOptions): Promise<ShardMoveReport> {
    return this.#shardMover.move(tenant, options);
  }

  /**
   * Writes an export of a tenant to `out`: a tar of `manifest.json` (format and schema
   * version, tier, row counts, SHA-256 per file) and one NDJSON file per tenant table and
   * control-plane table (no password or key hash, no secret), read in one `REPEATABLE READ`
   * snapshot per database, with flat memory. See `docs/data-lifecycle.md`.
   *
   * @example
   * ```ts
   * const manifest = await tenantry.exportTenant('acme', createWriteStream('acme.tar'));
   * console.log(manifest.files.map((f) => `${f.table}: ${f.rows}`));
   * ```
   */
  async exportTenant(tenant: string, out: Writable, options: ExportOptions = {}): Promise<ExportManifest> {
    const record = await this.tenants.get(tenant);
    const { TenantExporter } = await import('./data/tenant-export.ts');
    return new TenantExporter(this.#data).export(record, out, options);
  }

  /**
   * Restores an export as a new tenant (`slug`, any tier). Everything is checked before
   * anything is written (manifest, every file's SHA-256, schema version); the rows go in in
   * one transaction with ids kept and `tenant_id` rewritten, and their checksums must match
   * the export's; a failure leaves nothing behind. Users and API keys are not re-imported.
   * With `replace: true`, restores over the existing tenant `slug`: imported and verified
   * under another slug first, then swapped in and the old tenant erased.
   *
   * @example
   * ```ts
   * const report = await tenantry.importTenant(createReadStream('acme.tar'), { slug: 'acme-copy', tier: 'schema' });
   * await tenantry.importTenant(createReadStream('acme.tar'), { slug: 'acme', replace: true }); // restore a backup
   * ```
   */
  async importTenant(input: Readable, options: ImportOptions): Promise<ImportReport> {
    const { TenantImporter } = await import('./data/tenant-import.ts');
    return new TenantImporter({ ...this.#data, tenants: this.tenants, migrations: this.config.migrations }).import(
      input,
      options,
    );
  }

  /**
   * Hard-deletes a tenant (soft-deleting it first if needed) and returns the erasure report:
   * rows in every tier, keys, memberships, sessions and accounts that belong to no other
   * tenant removed, then every tenant and control-plane table counted for the tenant (all
   * 0, recorded in the audit log) — or `ERASURE_INCOMPLETE`.
   *
   * @example
   * ```ts
   * const report = await tenantry.eraseTenant('acme', { actor: 'dpo' });
   * console.log(report.verification.rows);
   * ```
   */
  async eraseTenant(tenant: string, options: { actor?: string } = {}): Promise<ErasureReport> {
    let record = await this.tenants.get(tenant);
    const actor = options.actor ?? 'system';
    if (record.status !== 'deleted') record = await this.tenants.delete(record.id, { actor });
    return this.#eraser.erase(record, actor);
  }

  /**
   * Erases one user from one tenant: in every tenant table marked `personal` (see
   * `tenantTable({ personal })`), the user's rows are pseudonymised or deleted; the
   * membership goes, and the account when the user belongs to no other tenant; audited
   * without personal data. A user who is not a member of `tenant` is `NOT_FOUND`, and the
   * user's rows in other tenants are never touched.
   *
   * @example
   * ```ts
   * const report = await tenantry.eraseUser('acme', userId, { actor: 'dpo' });
   * console.log(report.tables); // [{ table: 'notes', mode: 'pseudonymise', rows: 12 }]
   * ```
   */
  async eraseUser(tenant: string, userId: string, options: { actor?: string } = {}): Promise<UserErasureReport> {
    const record = await this.tenants.get(tenant);
    const { UserEraser } = await import('./data/user-erasure.ts');
    return new UserEraser(this.#data).erase(record, userId, options.actor ?? 'system');
  }

  /**
   * Adds a part of tenant data kept outside Tenantry's tables (a cache namespace, an
   * outbox) to erasure and its verification.
   *
   * @example
   * ```ts
   * const remove = tenantry.addErasureHook({ name: 'cache', erase: (id) => cache.eraseTenant(id), remaining: (id) => cache.remainingKeys(id) });
   * ```
   *
   * @returns what takes the hook out again (when the part it erases goes away).
   */
  addErasureHook(hook: ErasureHook): () => void {
    return this.#eraser.addHook(hook);
  }

  /** Reloads which tables are tenant tables (the Kysely tenant filter uses the list). */
  refreshTenantTables(): Promise<void> {
    return this.#tenantTables.refresh();
  }

  /**
   * Runs `fn` in a tenant transaction (step 5 of the request path): of `tenant`, entering
   * its context for the duration, or of the current context's tenant (from `withTenant`,
   * or the Fastify plugin's request) when no tenant is given. Throws `NO_TENANT_CONTEXT`
   * when there is neither: there is no default tenant.
   *
   * @example
   * ```ts
   * await tenantry.transaction('acme', (tx) => tx.query('SELECT count(*) FROM items'));
   * await withTenant(acme, () => tenantry.transaction((tx) => tx.db.selectFrom('items').selectAll().execute()));
   * ```
   */
  transaction<T>(fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T>;
  transaction<T>(tenant: TenantRef, fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T>;
  async transaction<T>(
    tenantOrFn: TenantRef | ((tx: TenantTransaction<DB>) => Promise<T>),
    maybeFn?: (tx: TenantTransaction<DB>) => Promise<T>,
  ): Promise<T> {
    if (typeof tenantOrFn === 'function') return this.#transaction(getTenant(), 'work', tenantOrFn);
    if (typeof maybeFn !== 'function') {
      throw new TenantryError('USAGE_ERROR', 'transaction(tenant, fn) needs a function to run');
    }
    // The runner puts the transaction and its tenant in the async context for `fn`.
    return this.#transaction(await this.#resolve(tenantOrFn), 'work', maybeFn);
  }

  #transaction<T>(
    tenant: TenantContext,
    purpose: 'work' | 'maintenance',
    fn: (tx: TenantTransaction<DB>) => Promise<T>,
  ): Promise<T> {
    return withSpan('tenantry.transaction', { 'tenantry.tenant_id': tenant.id }, () =>
      runTenantTransaction(this.#runner, tenant, purpose, fn),
    );
  }

  /**
   * Runs one statement for `tenant` as a whole tenant transaction, in one round trip to
   * PostgreSQL (`BEGIN`, the verified context, the statement and `COMMIT` pipelined):
   * the fastest way to do a one-statement read or write. Row-level security filters it
   * like any tenant transaction; an error rolls everything back.
   *
   * The statement is SQL text with its values, or a compiled Kysely query (anything with
   * `sql` and `parameters`): build it with {@link db} (or `createTenantKysely` from
   * `tenantry/kysely`) inside the tenant's context, so the tenant filter adds its predicate.
   *
   * @example
   * ```ts
   * const { rows } = await tenantry.query('acme', 'SELECT * FROM items WHERE id = $1', [id]);
   * const item = await withTenant(acme, () =>
   *   tenantry.query(acme, tenantry.db.selectFrom('items').selectAll().where('id', '=', id).compile()));
   * ```
   */
  async query<R extends QueryResultRow = Record<string, unknown>>(
    tenant: TenantRef,
    statement: string | CompiledStatement,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    const context = await this.#resolve(tenant);
    const [text, parameters, shape, prepare] =
      typeof statement === 'string'
        ? [statement, values, undefined, false]
        : [statement.sql, statement.parameters, statement.shape, statement.prepare === true];
    return withSpan('tenantry.query', { 'tenantry.tenant_id': context.id }, () =>
      runTenantQuery<R>(this.#runner, context, 'work', text, parameters, shape, prepare),
    );
  }

  async #resolve(tenant: TenantRef): Promise<TenantContext> {
    if (typeof tenant === 'string') return contextOf(await this.tenants.get(tenant));
    if ('createdAt' in tenant) return contextOf(tenant);
    return tenant;
  }

  /**
   * @internal A maintenance transaction: Tenantry's own work on a tenant in any status
   * (purges, moves), which tenant work can never ask for.
   */
  maintenanceTransaction<T>(tenant: TenantContext, fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T> {
    return this.#transaction(tenant, 'maintenance', fn);
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

  /** Stops the job workers and the event dispatcher, flushes API key usage, stops listeners and closes every pool. */
  async close(): Promise<void> {
    await this.jobs.close();
    await this.events.close();
    await this.apiKeys.close();
    await this.usage.meter?.close();
    await this.#notifier.close();
    this.runtimeLender.close();
    await Promise.all([this.adminPool.end(), this.runtimePool.end(), this.poolMap.close()]);
  }
}
