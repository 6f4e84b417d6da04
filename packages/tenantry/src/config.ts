import { type ContextDialect, postgresDialect } from './dialect/context-dialect.ts';
import { TenantryError } from './errors/catalog.ts';
import type { TenantMigration } from './migrate/migration.ts';

/** A logger with pino's shape; Tenantry never logs secrets or tokens. */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Options of {@link Tenantry.connect}. Only `databaseUrl` and `secret` are required. */
export interface TenantryOptions {
  /** Owner/admin connection (`DATABASE_URL`): creates roles, runs migrations, manages tenants. */
  databaseUrl: string;
  /**
   * Connection for tenant work, as the runtime role. Default: `databaseUrl` with the runtime
   * role's name and its password (derived from `secret`).
   */
  runtimeUrl?: string;
  /** Master secret (`TENANTRY_SECRET`), at least 32 characters. */
  secret: string;
  /** Role names. Defaults: `tenantry_owner` (owns tables, runs DDL) and `tenantry_runtime`. */
  roles?: { owner?: string; runtime?: string };
  /** Schema of the shared (pool-tier) tenant tables. Default `public`. */
  tenantSchema?: string;
  /** Tenant-table migrations, applied in order by `migrate()`. */
  migrations?: readonly TenantMigration[];
  /** Runtime pool size (default 10) and idle timeout (default 30 s). */
  pool?: { max?: number; idleTimeoutMs?: number };
  /** Size of the admin pool: control plane, API key and login lookups (default 10). */
  adminPoolMax?: number;
  /** Prefix of new API keys, 2–8 lower-case letters (default `tnt`). */
  apiKeyPrefix?: string;
  /**
   * Declare full-text matching (`tsvector @@ tsquery`, `ts_match_vq`) LEAKPROOF in this
   * database during `setup()` (needs a superuser `databaseUrl`). Under RLS PostgreSQL will
   * not use a non-leakproof operator as an index condition, so without this a search reads
   * every row of the tenant; see `docs/isolation-tiers.md` for the trade-off. Default false.
   */
  leakproofFullTextSearch?: boolean;
  /**
   * Prepare the context statement once per connection (default true). Turn off behind a
   * transaction-mode pooler without protocol-level prepared statements (PgBouncer < 1.21).
   */
  prepareContextStatement?: boolean;
  /** Lifetime of a context entry token, in ms (default 10 s): bounds its reuse. */
  contextTokenTtlMs?: number;
  /** How the verified context is set and read; default {@link postgresDialect}. */
  dialect?: ContextDialect;
  logger?: Logger;
}

/** The validated, defaulted, frozen form of {@link TenantryOptions}. */
export interface ResolvedConfig {
  readonly databaseUrl: string;
  readonly runtimeUrl: string | undefined;
  readonly secret: string;
  readonly roles: { readonly owner: string; readonly runtime: string };
  readonly tenantSchema: string;
  readonly migrations: readonly TenantMigration[];
  readonly pool: { readonly max: number; readonly idleTimeoutMs: number };
  readonly adminPoolMax: number;
  readonly apiKeyPrefix: string | undefined;
  readonly prepareContextStatement: boolean;
  readonly leakproofFullTextSearch: boolean;
  readonly contextTokenTtlMs: number;
  readonly dialect: ContextDialect;
  readonly logger: Logger | undefined;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

function identifier(value: unknown, what: string): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    throw new TenantryError(
      'CONFIG_INVALID',
      `${what} must be a lower-case SQL identifier, got ${JSON.stringify(value)}`,
    );
  }
  if (value.startsWith('pg_')) {
    throw new TenantryError('CONFIG_INVALID', `${what} must not start with pg_ (reserved by PostgreSQL)`);
  }
  return value;
}

function positiveInt(value: unknown, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) <= 0) {
    throw new TenantryError('CONFIG_INVALID', `${what} must be a positive integer`);
  }
  return value as number;
}

function apiKeyPrefix(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[a-z]{2,8}$/.test(value)) {
    throw new TenantryError('CONFIG_INVALID', 'apiKeyPrefix must be 2-8 lower-case letters');
  }
  return value;
}

/** Validates and defaults options once; the result is frozen. */
export function resolveConfig(options: TenantryOptions): ResolvedConfig {
  if (!options || typeof options.databaseUrl !== 'string' || options.databaseUrl === '') {
    throw new TenantryError('CONFIG_INVALID', 'databaseUrl (DATABASE_URL) is required');
  }
  if (typeof options.secret !== 'string' || options.secret.length < 32) {
    throw new TenantryError('MISSING_SECRET', 'it must be at least 32 characters (e.g. `openssl rand -hex 32`)');
  }
  const owner = identifier(options.roles?.owner ?? 'tenantry_owner', 'roles.owner');
  const runtime = identifier(options.roles?.runtime ?? 'tenantry_runtime', 'roles.runtime');
  if (owner === runtime) throw new TenantryError('CONFIG_INVALID', 'the owner and runtime roles must differ');
  const migrations = options.migrations ?? [];
  if (!Array.isArray(migrations)) throw new TenantryError('CONFIG_INVALID', 'migrations must be an array');
  const ids = new Set<string>();
  for (const m of migrations) {
    if (!m || typeof m.id !== 'string' || m.id === '' || typeof m.up !== 'function') {
      throw new TenantryError('CONFIG_INVALID', 'each migration needs a non-empty id and an up() function');
    }
    if (ids.has(m.id)) throw new TenantryError('CONFIG_INVALID', `duplicate migration id ${m.id}`);
    ids.add(m.id);
  }
  return Object.freeze({
    databaseUrl: options.databaseUrl,
    runtimeUrl: options.runtimeUrl,
    secret: options.secret,
    roles: Object.freeze({ owner, runtime }),
    tenantSchema: identifier(options.tenantSchema ?? 'public', 'tenantSchema'),
    migrations: Object.freeze([...migrations]),
    pool: Object.freeze({
      max: positiveInt(options.pool?.max, 10, 'pool.max'),
      idleTimeoutMs: positiveInt(options.pool?.idleTimeoutMs, 30_000, 'pool.idleTimeoutMs'),
    }),
    adminPoolMax: positiveInt(options.adminPoolMax, 10, 'adminPoolMax'),
    apiKeyPrefix: apiKeyPrefix(options.apiKeyPrefix),
    prepareContextStatement: options.prepareContextStatement ?? true,
    leakproofFullTextSearch: options.leakproofFullTextSearch ?? false,
    contextTokenTtlMs: positiveInt(options.contextTokenTtlMs, 10_000, 'contextTokenTtlMs'),
    dialect: options.dialect ?? postgresDialect,
    logger: options.logger,
  });
}
