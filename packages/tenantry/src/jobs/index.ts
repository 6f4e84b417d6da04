/**
 * `tenantry/jobs`: background jobs that run in their tenant's context, fairly across
 * tenants (see docs/jobs.md). The queue itself is `tenantry.jobs`; this entry point
 * exports its parts and types.
 */
export type { EnqueueOptions } from './job-enqueue.ts';
export { type DefineJobOptions, JobQueue, type JobQueueDeps } from './job-queue.ts';
export { JobRegistry } from './job-registry.ts';
export { type JobSchedule, JobSchedules, type ScheduleInput } from './job-schedules.ts';
export { type JobListOptions, JobStore, type PlanJobStats, type TenantJobStats } from './job-store.ts';
export {
  checkJobType,
  JOB_TYPE,
  type JobContext,
  type JobDefinition,
  type JobHandler,
  type JobRecord,
  type JobState,
  type JobType,
  type JobTypeOptions,
  type PayloadSchema,
} from './job-types.ts';
export { JobWorker, type PlanJobLimits, type WorkerDeps, type WorkerOptions } from './job-worker.ts';
export { type BackoffPolicy, retryDelayMs } from './retry-policy.ts';
export { type LockOptions, TenantLocks } from './tenant-locks.ts';
