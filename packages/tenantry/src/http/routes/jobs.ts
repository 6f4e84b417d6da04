import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { TenantJobStats } from '../../jobs/job-store.ts';
import type { JobRecord } from '../../jobs/job-types.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems } from '../schemas.ts';

const STATES = ['pending', 'running', 'completed', 'failed', 'cancelled'] as const;

const JobJson = z
  .object({
    id: z.string(),
    type: z.string(),
    state: z.enum(STATES),
    payload: z.record(z.string(), z.unknown()),
    priority: z.number().int(),
    attempts: z.number().int(),
    maxAttempts: z.number().int(),
    runAt: z.string(),
    key: z.string().nullable(),
    progress: z.record(z.string(), z.unknown()).nullable(),
    lastError: z.string().nullable(),
    cancelRequested: z.boolean(),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .meta({ id: 'Job' });

const AdminJobJson = JobJson.extend({ tenantId: z.uuid() }).meta({ id: 'AdminJob' });

const JobStatsJson = z
  .object({
    tenantId: z.uuid(),
    slug: z.string(),
    plan: z.string(),
    backlog: z.number().int(),
    scheduled: z.number().int(),
    running: z.number().int(),
    failed: z.number().int(),
    oldestAgeSeconds: z.number(),
  })
  .meta({ id: 'TenantJobStats' });

const JobQuery = z.object({
  state: z.enum(STATES).optional(),
  type: z.string().min(1).max(200).optional(),
  before: z
    .string()
    .regex(/^\d{1,18}$/)
    .optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

const IdParam = z.object({ id: z.string().regex(/^\d{1,18}$/) });

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const jobJson = (j: JobRecord): z.infer<typeof JobJson> => ({
  id: j.id,
  type: j.type,
  state: j.state,
  payload: j.payload,
  priority: j.priority,
  attempts: j.attempts,
  maxAttempts: j.maxAttempts,
  runAt: j.runAt.toISOString(),
  key: j.uniqueKey,
  progress: j.progress,
  lastError: j.lastError,
  cancelRequested: j.cancelRequested,
  createdAt: j.createdAt.toISOString(),
  startedAt: iso(j.startedAt),
  finishedAt: iso(j.finishedAt),
});
const statsJson = (s: TenantJobStats): z.infer<typeof JobStatsJson> => ({ ...s });

const read = { tenantry: { tenant: true, permission: 'jobs:read' } } as const;
const write = { tenantry: { tenant: true, permission: 'jobs:write' } } as const;

/**
 * Background jobs over HTTP. The calling tenant's own jobs (`jobs:read` / `jobs:write`):
 * `GET /v1/jobs` (with its backlog), `GET /v1/jobs/{id}`, `POST /v1/jobs/{id}/cancel`,
 * `POST /v1/jobs/{id}/retry`; every lookup is by the caller's tenant and the id together,
 * so another tenant's job is `NOT_FOUND`. The control plane (admin token):
 * `GET /v1/jobs/overview`, every tenant's backlog and oldest age, and the newest jobs.
 */
export async function jobRoutes(app: FastifyInstance, opts: { tenantry: Tenantry<unknown> }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { jobs } = opts.tenantry;
  const tenantOf = (req: { tenant?: { id: string } | undefined }) => (req.tenant as { id: string }).id;

  r.get(
    '/v1/jobs',
    {
      config: read,
      schema: {
        tags: ['jobs'],
        summary: "The tenant's background jobs, newest first, and its backlog",
        querystring: JobQuery,
        response: {
          200: z.object({ jobs: z.array(JobJson), stats: JobStatsJson.nullable() }),
          ...problems(400, 401, 403, 429),
        },
      },
    },
    async (req) => {
      const tenantId = tenantOf(req);
      const [list, stats] = await Promise.all([jobs.list({ ...req.query, tenantId }), jobs.stats({ tenantId })]);
      return { jobs: list.map(jobJson), stats: stats[0] ? statsJson(stats[0]) : null };
    },
  );

  r.get(
    '/v1/jobs/overview',
    {
      config: { tenantry: { admin: true } },
      schema: {
        tags: ['control plane'],
        summary: "Every tenant's job backlog and oldest waiting age, and the newest jobs",
        querystring: JobQuery.extend({ tenants: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: {
          200: z.object({ tenants: z.array(JobStatsJson), jobs: z.array(AdminJobJson) }),
          ...problems(400, 401),
        },
      },
    },
    async (req) => {
      const { tenants, ...filters } = req.query;
      const [stats, list] = await Promise.all([jobs.stats({ limit: tenants }), jobs.list(filters)]);
      return { tenants: stats.map(statsJson), jobs: list.map((j) => ({ ...jobJson(j), tenantId: j.tenantId })) };
    },
  );

  r.get(
    '/v1/jobs/:id',
    {
      config: read,
      schema: {
        tags: ['jobs'],
        summary: 'One background job of the tenant, with its progress',
        params: IdParam,
        response: { 200: JobJson, ...problems(400, 401, 403, 404, 429) },
      },
    },
    async (req) => jobJson(await jobs.get(req.params.id, { tenantId: tenantOf(req) })),
  );

  r.post(
    '/v1/jobs/:id/cancel',
    {
      config: write,
      schema: {
        tags: ['jobs'],
        summary: 'Cancel a pending job, or ask a running one to stop',
        params: IdParam,
        response: { 200: JobJson, ...problems(400, 401, 403, 404, 429) },
      },
    },
    async (req) => jobJson(await jobs.cancel(req.params.id, { tenantId: tenantOf(req) })),
  );

  r.post(
    '/v1/jobs/:id/retry',
    {
      config: write,
      schema: {
        tags: ['jobs'],
        summary: 'Run a dead-lettered or cancelled job again',
        params: IdParam,
        response: { 200: JobJson, ...problems(400, 401, 403, 404, 429) },
      },
    },
    async (req) => jobJson(await jobs.retry(req.params.id, { tenantId: tenantOf(req) })),
  );
}
