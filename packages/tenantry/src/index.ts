/**
 * Tenantry: multi-tenancy for TypeScript backends on PostgreSQL.
 *
 * The root entry point holds the core: {@link Tenantry}, the tenant context, the error
 * catalog. Integrations live behind subpath exports (`tenantry/kysely`, `tenantry/schema`,
 * `tenantry/server`).
 *
 * @packageDocumentation
 */
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
export type { QueryResult, TenantTransaction } from './db/tenant-transaction.ts';
export {
  CONTEXT_SCHEMA,
  CONTEXT_SETTING,
  type ContextDialect,
  POLICY_NAME,
  postgresDialect,
} from './dialect/context-dialect.ts';
export { ERRORS, type ErrorCode, isTenantryError, TenantryError } from './errors/catalog.ts';
export type { MigrationContext, TenantMigration } from './migrate/migration.ts';
export type { MigrationChain, MigrationReport } from './migrate/runner.ts';
export { type TenantRef, Tenantry } from './tenantry.ts';
