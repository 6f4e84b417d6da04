/**
 * Tenantry: multi-tenancy for TypeScript backends on PostgreSQL.
 *
 * The root entry point is the core: {@link Tenantry} (registry, tenant transactions,
 * migrations, moves, doctor), the tenant context and the error catalog. It loads no HTTP
 * framework, Redis client, metrics library or crypto package. Each integration is a subpath
 * export: `tenantry/fastify` (the plugin), `tenantry/server` (the reference server),
 * `tenantry/auth` (API keys, users, tokens), `tenantry/admit` (rate limits, plans, quotas,
 * features), `tenantry/kysely`, `tenantry/schema`, `tenantry/doctor`.
 *
 * @packageDocumentation
 */

export type { CitusOptions, Logger, ResolvedConfig, TenantryOptions, UsageOptions } from './config.ts';
export { CLUSTER_CONTEXT_SETTING, citusDialect, referenceTableSql } from './context/citus-dialect.ts';
export { type ContextDialect, postgresDialect } from './context/context-dialect.ts';
export {
  getTenant,
  type IsolationTier,
  type ResultShape,
  type TenantContext,
  type TenantStatus,
  tryGetTenant,
  withTenant,
} from './context/tenant-context.ts';
export { type CreatePlacementInput, type PlacementRecord, PlacementRegistry } from './control/placements.ts';
export type { CreateTenantInput, UpdateTenantInput } from './control/tenant-input.ts';
export { contextOf, type TenantRecord } from './control/tenant-record.ts';
export { type ActorOption, type TenantPage, TenantRegistry } from './control/tenant-registry.ts';
export type { ExportFile, ExportManifest } from './data/archive-format.ts';
export type { ErasureHook } from './data/erasure-checks.ts';
export {
  type ExportJob,
  type ExportJobStatus,
  ExportJobs,
  type ExportJobsOptions,
  type ExportSource,
} from './data/export-jobs.ts';
export type { ErasureReport } from './data/tenant-erasure.ts';
export type { ExportOptions, ExportProgress } from './data/tenant-export.ts';
export type { ImportOptions, ImportReport } from './data/tenant-import.ts';
export type { UserErasureReport } from './data/user-erasure.ts';
export { DatabaseOps } from './dbops/database-ops.ts';
export type { BlockedSession, DatabaseHealth, HealthThresholds, LongSession } from './dbops/db-health.ts';
export type { DatabaseStats, IndexStats, TableStats } from './dbops/db-stats.ts';
export type { FleetMaintenanceOptions, FleetMaintenanceReport } from './dbops/fleet-maintenance.ts';
export type { IndexAdvice, IndexAdviceOptions, IndexSuggestion } from './dbops/index-advice.ts';
export {
  MAINTENANCE_OPERATIONS,
  type MaintenanceOperation,
  type MaintenanceReport,
  type MaintenanceRequest,
} from './dbops/maintenance.ts';
export type { MaintenanceProgress } from './dbops/maintenance-progress.ts';
export type { SlowQueryOptions, SlowQueryReport, SlowStatement } from './dbops/slow-queries.ts';
export type { DoctorReport, Finding, FindingCode, Severity } from './doctor/finding.ts';
export type { AuditEntry } from './effects/audit.ts';
export {
  type AuditFilter,
  type AuditPage,
  type AuditRecord,
  listTenantAudit,
} from './effects/audit-entries.ts';
export { type AuditChainReport, AuditLog, type AuditVerifyReport } from './effects/audit-log.ts';
export { AuditPartitions, type AuditRetentionMode } from './effects/audit-partitions.ts';
export type { EventHandler, SubscribeOptions, TenantEvent } from './effects/event-subscribers.ts';
export { type OutboxEventInput, writeEvent } from './effects/outbox.ts';
export { type DispatcherOptions, type FailedEvent, OutboxDispatcher } from './effects/outbox-dispatcher.ts';
export { type AuditTransaction, audit } from './effects/tenant-audit.ts';
export { emit } from './effects/tenant-events.ts';
export { isPrivateAddress, resolveWebhookTarget } from './effects/webhook-address.ts';
export { WebhookDeliverer, type WebhookDelivererOptions } from './effects/webhook-deliverer.ts';
export {
  CreateWebhookInput,
  type WebhookDelivery,
  type WebhookEndpoint,
  WebhookEndpoints,
} from './effects/webhook-endpoints.ts';
export { signWebhook, verifyWebhook } from './effects/webhook-signature.ts';
export { ERRORS, type ErrorCode, isTenantryError, TenantryError } from './errors/catalog.ts';
export type { FleetPlan, FleetTarget } from './fleet/fleet-plan.ts';
export {
  FLEET_DEFAULT_CONCURRENCY,
  FLEET_MAX_CONCURRENCY,
  type FleetFailure,
  type FleetOptions,
  type FleetReport,
} from './fleet/fleet-run.ts';
export type { MigrationChain, MigrationReport } from './migrate/runner.ts';
export type { ClusterTenantStats } from './ops/citus-tenant-stats.ts';
export type { TenantSnapshot } from './ops/tenant-snapshots.ts';
export { type RequestUsage, UsageMeter, type UsageTotals } from './ops/usage-meter.ts';
export {
  type DailyUsage,
  parseWindow,
  type TenantPerformance,
  type TopTenant,
  USAGE_CSV_COLUMNS,
  USAGE_RANKINGS,
  type UsageFigures,
  type UsageRanking,
  type UsageSeries,
  UsageService,
} from './ops/usage-service.ts';
export type { MigrationContext, MigrationIndex, TenantMigration } from './schema/migration.ts';
export { type TenantRef, Tenantry } from './tenantry.ts';
export type { ShardMoveOptions, ShardMoveReport, ShardPlace } from './tiers/citus-shard-move.ts';
export type { TargetKind, TargetRecord, TargetState } from './tiers/targets.ts';
export type { MovedTable } from './tiers/tenant-copy.ts';
export type { MoveOptions, MoveReport } from './tiers/tenant-move.ts';
export { type WarmPoolOptions, WarmPoolRefiller } from './tiers/warm-pool.ts';
export type { CompiledStatement, QueryResult, TenantTransaction } from './transaction/tenant-transaction.ts';
export { TenantUsage } from './transaction/tenant-usage.ts';
