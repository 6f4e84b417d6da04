import { Kysely } from 'kysely';
import pg from 'pg';
import { ApiKeyStore } from './auth/api-keys.ts';
import { PasswordHasher } from './auth/passwords.ts';
import { TokenService } from './auth/tokens.ts';
import { UserStore } from './auth/users.ts';
import { type ResolvedConfig, resolveConfig, type TenantryOptions } from './config.ts';
import type { ContextPurpose } from './context/context-token.ts';
import { getTenant, type TenantContext, withTenant } from './context/tenant-context.ts';
import { PlacementRegistry } from './control/placements.ts';
import { listTenantTables, purgeStatements } from './control/tenant-tables.ts';
import { contextOf, type TenantRecord, TenantRegistry } from './control/tenants.ts';
import { assertSafeRuntimeRole } from './db/runtime-guard.ts';
import {
  currentTransaction,
  runTenantTransaction,
  type TenantTransaction,
  type TransactionRunnerDeps,
} from './db/tenant-transaction.ts';
import { runDoctor } from './doctor/doctor.ts';
import type { DoctorReport } from './doctor/finding.ts';
import { TenantryError } from './errors/catalog.ts';
import { TenantFilterPlugin } from './kysely/tenant-filter-plugin.ts';
import { TenantTransactionDialect } from './kysely/transaction-driver.ts';
import { applyMigrations, type MigrationReport } from './migrate/runner.ts';
import { setupDatabase } from './migrate/setup.ts';
import { withSpan } from './ops/tracing.ts';
import { KeyRing } from './secrets/keys.ts';

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
  /** Users, memberships and custom roles (control plane). */
  readonly users: UserStore;
  /** Login, access JWTs and rotating refresh tokens. */
  readonly auth: TokenService;
  /** API keys: stored as keyed hashes, verified with one indexed lookup, revocation seen within 1 s. */
  readonly apiKeys: ApiKeyStore;
  /** Pool on `databaseUrl` (owner/admin): control plane and migrations only, never tenant work. */
  readonly adminPool: pg.Pool;
  /** Pool on the runtime role: tenant work only. */
  readonly runtimePool: pg.Pool;
  readonly #keys: KeyRing;
  readonly #deps: TransactionRunnerDeps;
  #tenantTables = new Set<string>();
  #safe: Promise<void> | undefined;

  private constructor(config: ResolvedConfig) {
    this.config = config;
    this.#keys = new KeyRing(config.secret);
    this.adminPool = new pg.Pool({
      connectionString: config.databaseUrl,
      max: config.adminPoolMax,
      idleTimeoutMillis: 10_000,
    });
    this.runtimePool = new pg.Pool({
      connectionString: runtimeUrlFrom(config, this.#keys),
      max: config.pool.max,
      idleTimeoutMillis: config.pool.idleTimeoutMs,
    });
    for (const pool of [this.adminPool, this.runtimePool]) {
      // An idle client losing its server must not crash the process; the pool drops it.
      pool.on('error', (error) => config.logger?.warn({ err: error.message }, 'idle PostgreSQL connection failed'));
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
    this.#deps = {
      pool: this.runtimePool,
      contextKey: this.#keys.key('context-hmac'),
      dialect: config.dialect,
      tokenTtlMs: config.contextTokenTtlMs,
      prepareContextStatement: config.prepareContextStatement,
      db,
      ensureSafe: (client) => {
        // Only a passing check is remembered: a failure (or a dropped connection during
        // it) is checked again on the next transaction.
        this.#safe ??= assertSafeRuntimeRole(client).catch((error: unknown) => {
          this.#safe = undefined;
          throw error;
        });
        return this.#safe;
      },
    };
    this.tenants = new TenantRegistry(this.adminPool, (tenant) => this.#purge(tenant));
    this.placements = new PlacementRegistry(this.adminPool, this.#keys.key('credential-encryption'));
    const passwords = new PasswordHasher();
    this.users = new UserStore(this.adminPool, { passwords });
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

  /** Applies pending tenant-table migrations (pool tier: the shared tables). */
  async migrate(): Promise<MigrationReport> {
    const client = await this.adminPool.connect();
    try {
      const report = await applyMigrations(client, {
        chain: 'tenant',
        target: 'shared',
        schema: this.config.tenantSchema,
        ownerRole: this.config.roles.owner,
        runtimeRole: this.config.roles.runtime,
        dialect: this.config.dialect,
        migrations: this.config.migrations,
      });
      await this.refreshTenantTables();
      return report;
    } finally {
      client.release();
    }
  }

  /** Reloads which tables are tenant tables (the Kysely tenant filter uses the list). */
  async refreshTenantTables(): Promise<void> {
    const tables = await listTenantTables(this.adminPool);
    this.#tenantTables = new Set(tables.map((t) => `${t.schema}.${t.table}`));
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

  async #resolve(tenant: TenantRef): Promise<TenantContext> {
    if (typeof tenant === 'string') return contextOf(await this.tenants.get(tenant));
    if ('placementId' in tenant) return contextOf(tenant);
    return tenant;
  }

  /** @internal Maintenance transaction for Tenantry's own work on a tenant in any status. */
  runMaintenance<T>(tenant: TenantContext, fn: (tx: TenantTransaction<DB>) => Promise<T>): Promise<T> {
    const purpose: ContextPurpose = 'maintenance';
    return withTenant(tenant, () => runTenantTransaction(this.#deps, tenant, purpose, fn));
  }

  async #purge(tenant: TenantRecord): Promise<Record<string, number>> {
    const tables = await listTenantTables(this.adminPool);
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

  /** Flushes API key usage, stops listeners and closes both pools. */
  async close(): Promise<void> {
    await this.apiKeys.close();
    await Promise.all([this.adminPool.end(), this.runtimePool.end()]);
  }
}
