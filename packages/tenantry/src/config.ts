import { citusDialect } from './context/citus-dialect.ts';
import { type ContextDialect, postgresDialect } from './context/context-dialect.ts';
import { TenantryError } from './errors/catalog.ts';
import type { TenantMigration } from './schema/migration.ts';

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
  /**
   * The main database's runtime connections: `max` (default 10), `idleTimeoutMs` (default
   * 30 s), `maxPerTenant` connections one tenant holds at once (default `max - 1`, at least
   * 1: one busy tenant cannot hold them all), and when a connection is replaced:
   * after `maxUses` transactions (default 100,000) or after serving
   * `maxSchemasPerConnection` distinct schema-tier tenants (default 1,000). A backend keeps
   * the catalog entries and compiled functions of every tenant schema it has served (about
   * 140 KiB each) until it closes; schema-tier tenants prefer the connections that served
   * them (see the isolation tiers guide), so each backend's set stays small and warm, and
   * the schema cap is its ceiling. When another tenant's transaction holds a schema-tier
   * tenant's own connection, the tenant waits for it up to `affinityWaitMs` (default 20;
   * 0: never waits) before it takes another. `tenantAffinity: false` turns the preference
   * off (plain most-recently-used lending; for comparison).
   */
  pool?: {
    tenantAffinity?: boolean;
    affinityWaitMs?: number;
    max?: number;
    idleTimeoutMs?: number;
    maxUses?: number;
    maxPerTenant?: number;
    maxSchemasPerConnection?: number;
  };
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
   * Prepare the context statement once per connection (default true, false with
   * `contextBinding: 'pooler'`). Turn off behind a transaction-mode pooler without
   * protocol-level prepared statements (PgBouncer < 1.21).
   */
  prepareContextStatement?: boolean;
  /** Lifetime of a context entry token, in ms (default 10 s): bounds its reuse. */
  contextTokenTtlMs?: number;
  /**
   * What a context entry token is bound to. `session` (default): the backend process the
   * client connected to, so a token is worthless on any other connection. `pooler`: behind
   * a transaction-mode pooler (PgBouncer), where the client cannot know which server
   * process runs its transaction; tokens are then bound to their 10 s lifetime only, and the
   * context placed in the session stays bound to the real backend and transaction. Set by
   * `setup()` in each database. See `docs/security-model.md`.
   */
  contextBinding?: 'session' | 'pooler';
  /**
   * Connections to tenant databases (database tier), across all of them: `max` is a global
   * budget never exceeded (default 20), `perDatabase` the most one tenant database gets
   * (default 5), `idleTimeoutMs` (default 30 s), `acquireTimeoutMs` how long a transaction
   * waits for a connection before `POOL_EXHAUSTED` (default 5 s).
   */
  tenantDatabases?: { max?: number; perDatabase?: number; idleTimeoutMs?: number; acquireTimeoutMs?: number };
  /**
   * The event dispatcher (`tenantry.events`): `concurrency` tenants at once (default 2),
   * `pollIntervalMs` (default 1000), `maxAttempts` before an event is dead-lettered (default
   * 5), `retryDelayMs` before the first retry, doubled for each next (default 1000), capped
   * at `maxRetryDelayMs` (default 60 000).
   */
  events?: EventsOptions;
  /**
   * How the verified context is set and read, and how tenant tables are created: `'postgres'`
   * (default, {@link postgresDialect}) or `'citus'` ({@link citusDialect}: the pool tier's
   * tables distributed over a Citus cluster, `databaseUrl` being the coordinator; see
   * docs/citus.md). The application code is the same with either.
   */
  dialect?: ContextDialect | 'postgres' | 'citus';
  /**
   * With `dialect: 'citus'`: which backends a node accepts a tenant context from (see
   * {@link CitusOptions} and docs/citus.md). Without it, only the coordinator's backend that
   * entered the context accepts it; every other node refuses it (TN001), so that a context
   * copied with its distributed transaction id cannot be replayed on a connection straight to
   * a node.
   */
  citus?: CitusOptions;
  logger?: Logger;
  /**
   * Per-tenant usage accounting (`tenantry.usage`, see docs/operations.md): counted in
   * memory by every tenant transaction and written every `flushMs` (default 10 000) in one
   * batched statement. `applicationName: true` also names the tenant in `application_name`
   * for the duration of each tenant transaction, so `pg_stat_activity` shows whose work a
   * backend runs (default off: it costs about 3 % of the server's work per transaction, 5 %
   * of the throughput of a CPU-bound point lookup; `tenantry serve` and the CLI turn it on).
   * `false` turns both off.
   */
  usage?: UsageOptions | false;
}

/**
 * How the nodes of a Citus cluster tell Citus's own connections from any other connection
 * that presents a tenant context (see {@link TenantryOptions.citus}). `setup()` writes it on
 * every node, next to the node-local context key; run `tenantry setup` again after a change.
 *
 * @example
 * ```ts
 * // Citus connects to the nodes with a client certificate (citus.node_conninfo =
 * // 'sslmode=verify-full sslcert=… sslkey=… sslrootcert=…'), verified by each node's ssl_ca_file.
 * const tenantry = await Tenantry.connect({
 *   databaseUrl, secret, dialect: 'citus',
 *   citus: { peerCertificateDn: '/CN=tenantry-coordinator' },
 * });
 * ```
 */
export interface CitusOptions {
  /**
   * The subject of the client certificate with which the coordinator's Citus connections
   * log in to the nodes, as PostgreSQL shows it in `pg_stat_ssl.client_dn` (OpenSSL's
   * one-line form, e.g. `/CN=tenantry-coordinator`; at most 63 bytes, which is what
   * `client_dn` keeps).
   * A node then accepts a context only from a backend whose connection presented that
   * certificate (PostgreSQL verified it against the node's `ssl_ca_file`), or from the
   * backend that entered the context itself.
   */
  readonly peerCertificateDn?: string;
  /**
   * `'certificate'` (default): the binding above; without `peerCertificateDn`, nodes other
   * than the entering backend refuse every context (fail closed). `'network'`: any backend
   * with the right MAC and distributed transaction id is accepted, as before the binding
   * existed: only for a cluster where the runtime role can reach the nodes from the
   * coordinator alone (`pg_hba.conf`); `tenantry doctor` reports it.
   */
  readonly peerBinding?: 'certificate' | 'network';
}

/** The resolved form of {@link CitusOptions}. */
export interface ResolvedCitusOptions {
  readonly peerCertificateDn: string | undefined;
  readonly peerBinding: 'certificate' | 'network';
}

/** Options of usage accounting; see {@link TenantryOptions.usage}. */
export interface UsageOptions {
  readonly enabled?: boolean;
  readonly flushMs?: number;
  readonly applicationName?: boolean;
}

/** Options of the event dispatcher; see {@link TenantryOptions.events}. */
export interface EventsOptions {
  readonly concurrency?: number;
  readonly pollIntervalMs?: number;
  readonly maxAttempts?: number;
  readonly retryDelayMs?: number;
  readonly maxRetryDelayMs?: number;
}

/** The validated, defaulted, frozen form of {@link TenantryOptions}. */
export interface ResolvedConfig {
  readonly databaseUrl: string;
  readonly runtimeUrl: string | undefined;
  readonly secret: string;
  readonly roles: { readonly owner: string; readonly runtime: string };
  readonly tenantSchema: string;
  readonly migrations: readonly TenantMigration[];
  readonly pool: {
    readonly max: number;
    readonly idleTimeoutMs: number;
    readonly maxUses: number;
    readonly maxPerTenant: number;
    readonly maxSchemasPerConnection: number;
    readonly tenantAffinity: boolean;
    readonly affinityWaitMs: number;
  };
  readonly adminPoolMax: number;
  readonly apiKeyPrefix: string | undefined;
  readonly prepareContextStatement: boolean;
  readonly leakproofFullTextSearch: boolean;
  readonly contextTokenTtlMs: number;
  readonly contextBinding: 'session' | 'pooler';
  readonly tenantDatabases: {
    readonly max: number;
    readonly perDatabase: number;
    readonly idleTimeoutMs: number;
    readonly acquireTimeoutMs: number;
  };
  readonly events: {
    readonly concurrency: number;
    readonly pollIntervalMs: number;
    readonly maxAttempts: number;
    readonly retryDelayMs: number;
    readonly maxRetryDelayMs: number;
  };
  readonly dialect: ContextDialect;
  readonly citus: ResolvedCitusOptions;
  readonly logger: Logger | undefined;
  readonly usage: { readonly enabled: boolean; readonly flushMs: number; readonly applicationName: boolean };
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

/**
 * `value`, or `fallback` when it is absent, checked to be an integer from `min` to `max`:
 * the one check behind every bounded numeric option. `code` is `CONFIG_INVALID` for
 * options given at construction, `INVALID_INPUT` for the arguments of a call.
 *
 * @example
 * ```ts
 * const ttl = integerOption(options.accessTtlSeconds, 900, 1, 86_400, 'accessTtlSeconds');
 * const limit = integerOption(options.limit, 50, 1, 500, 'limit', 'INVALID_INPUT');
 * ```
 */
export function integerOption(
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
  name: string,
  code: 'CONFIG_INVALID' | 'INVALID_INPUT' = 'CONFIG_INVALID',
): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new TenantryError(code, `${name} must be an integer from ${min} to ${max}`);
  }
  return n;
}

function apiKeyPrefix(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[a-z]{2,8}$/.test(value)) {
    throw new TenantryError('CONFIG_INVALID', 'apiKeyPrefix must be 2-8 lower-case letters');
  }
  return value;
}

function contextBinding(value: unknown): 'session' | 'pooler' {
  if (value === undefined) return 'session';
  if (value !== 'session' && value !== 'pooler') {
    throw new TenantryError(
      'CONFIG_INVALID',
      `contextBinding must be 'session' or 'pooler', got ${JSON.stringify(value)}`,
    );
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
  const dialect = resolveDialect(options.dialect);
  if (options.citus !== undefined && dialect.name !== 'citus') {
    throw new TenantryError('CONFIG_INVALID', "the citus options apply only with dialect: 'citus'");
  }
  return Object.freeze({
    databaseUrl: options.databaseUrl,
    runtimeUrl: options.runtimeUrl,
    secret: options.secret,
    roles: Object.freeze({ owner, runtime }),
    tenantSchema: identifier(options.tenantSchema ?? 'public', 'tenantSchema'),
    migrations: Object.freeze([...migrations]),
    pool: runtimePoolOptions(options.pool),
    adminPoolMax: positiveInt(options.adminPoolMax, 10, 'adminPoolMax'),
    apiKeyPrefix: apiKeyPrefix(options.apiKeyPrefix),
    // Behind a transaction-mode pooler, named statements live on server connections the
    // client does not choose; prepare only when asked to (PgBouncer 1.21+ tracks them).
    prepareContextStatement: options.prepareContextStatement ?? options.contextBinding !== 'pooler',
    leakproofFullTextSearch: options.leakproofFullTextSearch ?? false,
    contextTokenTtlMs: positiveInt(options.contextTokenTtlMs, 10_000, 'contextTokenTtlMs'),
    contextBinding: contextBinding(options.contextBinding),
    tenantDatabases: Object.freeze({
      max: positiveInt(options.tenantDatabases?.max, 20, 'tenantDatabases.max'),
      perDatabase: positiveInt(options.tenantDatabases?.perDatabase, 5, 'tenantDatabases.perDatabase'),
      idleTimeoutMs: positiveInt(options.tenantDatabases?.idleTimeoutMs, 30_000, 'tenantDatabases.idleTimeoutMs'),
      acquireTimeoutMs: positiveInt(
        options.tenantDatabases?.acquireTimeoutMs,
        5_000,
        'tenantDatabases.acquireTimeoutMs',
      ),
    }),
    events: Object.freeze({
      concurrency: positiveInt(options.events?.concurrency, 2, 'events.concurrency'),
      pollIntervalMs: positiveInt(options.events?.pollIntervalMs, 1_000, 'events.pollIntervalMs'),
      maxAttempts: positiveInt(options.events?.maxAttempts, 5, 'events.maxAttempts'),
      retryDelayMs: positiveInt(options.events?.retryDelayMs, 1_000, 'events.retryDelayMs'),
      maxRetryDelayMs: positiveInt(options.events?.maxRetryDelayMs, 60_000, 'events.maxRetryDelayMs'),
    }),
    dialect,
    citus: citusOptions(options.citus),
    logger: options.logger,
    usage: Object.freeze(
      options.usage === false || options.usage?.enabled === false
        ? { enabled: false, flushMs: 10_000, applicationName: false }
        : {
            enabled: true,
            flushMs: positiveInt(options.usage?.flushMs, 10_000, 'usage.flushMs'),
            applicationName: options.usage?.applicationName ?? false,
          },
    ),
  });
}

/** The dialect option, by name or as an object; an unknown name is a configuration error. */
function resolveDialect(dialect: TenantryOptions['dialect']): ContextDialect {
  if (dialect === undefined || dialect === 'postgres') return postgresDialect;
  if (dialect === 'citus') return citusDialect;
  if (typeof dialect === 'object' && dialect !== null && typeof dialect.enterSql === 'string') return dialect;
  throw new TenantryError(
    'CONFIG_INVALID',
    `dialect must be 'postgres', 'citus' or a ContextDialect, not ${JSON.stringify(dialect)}`,
  );
}

/**
 * The Citus peer binding, validated (see {@link CitusOptions}): the DN is what
 * `pg_stat_ssl.client_dn` can show (printable, at most 63 bytes), and a DN with the
 * `'network'` opt-out is a contradiction, refused rather than guessed at.
 */
function citusOptions(citus: TenantryOptions['citus']): ResolvedCitusOptions {
  if (citus === undefined) return Object.freeze({ peerCertificateDn: undefined, peerBinding: 'certificate' });
  if (typeof citus !== 'object' || citus === null) {
    throw new TenantryError('CONFIG_INVALID', 'citus must be an object ({ peerCertificateDn, peerBinding })');
  }
  const binding = citus.peerBinding ?? 'certificate';
  if (binding !== 'certificate' && binding !== 'network') {
    throw new TenantryError(
      'CONFIG_INVALID',
      `citus.peerBinding must be 'certificate' or 'network', got ${JSON.stringify(citus.peerBinding)}`,
    );
  }
  const dn = citus.peerCertificateDn;
  if (dn !== undefined) {
    if (typeof dn !== 'string' || !/^[\x20-\x7e]+$/.test(dn) || !dn.includes('=') || dn.trim() !== dn) {
      throw new TenantryError(
        'CONFIG_INVALID',
        `citus.peerCertificateDn must be a certificate subject as pg_stat_ssl.client_dn shows it (e.g. /CN=tenantry-coordinator), got ${JSON.stringify(dn)}`,
      );
    }
    if (dn.length > 63) {
      throw new TenantryError(
        'CONFIG_INVALID',
        'citus.peerCertificateDn is longer than 63 bytes, which pg_stat_ssl.client_dn truncates: use a certificate with a shorter subject',
      );
    }
    if (binding === 'network') {
      throw new TenantryError(
        'CONFIG_INVALID',
        "citus.peerCertificateDn and citus.peerBinding: 'network' exclude each other: give one",
      );
    }
  }
  return Object.freeze({ peerCertificateDn: dn, peerBinding: binding });
}

/** The runtime pool's options, validated and defaulted (see {@link TenantryOptions.pool}). */
function runtimePoolOptions(pool: TenantryOptions['pool']): ResolvedConfig['pool'] {
  const max = positiveInt(pool?.max, 10, 'pool.max');
  return Object.freeze({
    max,
    idleTimeoutMs: positiveInt(pool?.idleTimeoutMs, 30_000, 'pool.idleTimeoutMs'),
    maxUses: positiveInt(pool?.maxUses, 100_000, 'pool.maxUses'),
    maxPerTenant: positiveInt(pool?.maxPerTenant, Math.max(1, max - 1), 'pool.maxPerTenant'),
    maxSchemasPerConnection: positiveInt(pool?.maxSchemasPerConnection, 1_000, 'pool.maxSchemasPerConnection'),
    tenantAffinity: pool?.tenantAffinity ?? true,
    affinityWaitMs: integerOption(pool?.affinityWaitMs, 20, 0, 10_000, 'pool.affinityWaitMs'),
  });
}
