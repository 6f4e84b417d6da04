/**
 * Tenantry: multi-tenancy for TypeScript backends on PostgreSQL.
 *
 * The root entry point holds the core: {@link Tenantry}, the tenant context, the error
 * catalog. Integrations live behind subpath exports (`tenantry/kysely`, `tenantry/schema`,
 * `tenantry/server`).
 *
 * @packageDocumentation
 */

export { type FeatureHolder, isFeatureEnabled, requireFeature } from './admit/features.ts';
export { DEFAULT_PLANS, definePlans, type PlanCatalog, type PlanLimits } from './admit/plans.ts';
export { type QuotaHolder, type QuotaLimits, type QuotaName, remainingQuota, requireQuota } from './admit/quotas.ts';
export {
  type RateLimitDecision,
  type RateLimitRedisClient,
  type RedisErrorPolicy,
  TenantRateLimiter,
  type TenantRateLimiterOptions,
} from './admit/rate-limit.ts';
export { rateLimitHeaders } from './admit/rate-limit-headers.ts';
export {
  API_KEY_ENVIRONMENTS,
  type ApiKeyEnvironment,
  apiKeyChecksum,
  DEFAULT_API_KEY_PREFIX,
  generateApiKey,
  isApiKeyPrefix,
  type ParsedApiKey,
  parseApiKey,
} from './auth/api-key-format.ts';
export type { ApiKeyStoreOptions } from './auth/api-key-options.ts';
export { type ApiKeyRecord, CreateApiKeyInput, type CreatedApiKey } from './auth/api-key-record.ts';
export { ApiKeyStore } from './auth/api-key-store.ts';
export type { VerifiedKey } from './auth/api-key-verifier.ts';
export { ARGON2ID_PARAMS, PasswordHasher } from './auth/passwords.ts';
export {
  BUILTIN_PERMISSIONS,
  BUILTIN_ROLES,
  isPermission,
  type Permission,
  type Principal,
  requirePermission,
} from './auth/permissions.ts';
export { RoleStore } from './auth/role-store.ts';
export { isBuiltinRole, type RoleRecord } from './auth/roles.ts';
export { type TokenPair, TokenService, type TokenServiceOptions } from './auth/tokens.ts';
export { type CreateUserInput, type UserRecord, UserStore, type UserStoreOptions } from './auth/users.ts';
export type { Logger, ResolvedConfig, TenantryOptions } from './config.ts';
export { type ContextPurpose, mintContextToken } from './context/context-token.ts';
export {
  getTenant,
  type IsolationTier,
  type TenantContext,
  type TenantStatus,
  tryGetTenant,
  withTenant,
} from './context/tenant-context.ts';
export type { AuditEntry } from './control/audit.ts';
export { type CreatePlacementInput, type PlacementRecord, PlacementRegistry } from './control/placements.ts';
export type { CreateTenantInput, UpdateTenantInput } from './control/tenant-input.ts';
export { listTenantTables, type TenantTableRef } from './control/tenant-tables.ts';
export {
  type ActorOption,
  contextOf,
  type TenantPage,
  type TenantRecord,
  TenantRegistry,
} from './control/tenants.ts';
export {
  type PooledConnection,
  PoolMap,
  type PoolMapOptions,
  type PoolMapStats,
} from './db/pool-map.ts';
export type { QueryResult, TenantTransaction } from './db/tenant-transaction.ts';
export {
  CONTEXT_SCHEMA,
  CONTEXT_SETTING,
  type ContextDialect,
  POLICY_NAME,
  postgresDialect,
} from './dialect/context-dialect.ts';
export { type DoctorOptions, runDoctor } from './doctor/doctor.ts';
export { type DoctorReport, FINDINGS, type Finding, type FindingCode, type Severity } from './doctor/finding.ts';
export { ERRORS, type ErrorCode, isTenantryError, TenantryError } from './errors/catalog.ts';
export {
  FLEET_MAX_CONCURRENCY,
  type FleetFailure,
  type FleetOptions,
  type FleetPlan,
  type FleetReport,
  type FleetTarget,
} from './migrate/fleet.ts';
export type { MigrationContext, TenantMigration } from './migrate/migration.ts';
export type { MigrationChain, MigrationReport } from './migrate/runner.ts';
export { type TenantRef, Tenantry } from './tenantry.ts';
export { type Placed, Provisioner } from './tiers/provisioner.ts';
export type { TargetKind, TargetRecord, TargetState } from './tiers/targets.ts';
export type { MovedTable, MoveOptions, MoveReport } from './tiers/tenant-move.ts';
export { type WarmPoolOptions, WarmPoolRefiller } from './tiers/warm-pool.ts';
