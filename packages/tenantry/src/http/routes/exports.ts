import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ExportJob, ExportJobs } from '../../data/export-jobs.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems, TenantParam } from '../schemas.ts';

const admin = { tenantry: { admin: true } } as const;

/** An export job as the control-plane API shows it. */
const ExportJobJson = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    status: z.enum(['running', 'done', 'failed']),
    progress: z.object({
      tablesDone: z.number().int(),
      tablesTotal: z.number().int().nullable(),
      rowsDone: z.number().int(),
      rowsTotal: z.number().int().nullable(),
    }),
    bytes: z.number().int().nullable(),
    sha256: z.string().nullable(),
    error: z.object({ code: z.string() }).nullable(),
    createdAt: z.string(),
    finishedAt: z.string().nullable(),
    expiresAt: z.string().nullable(),
  })
  .meta({ id: 'ExportJob' });

const jobJson = (job: ExportJob): z.infer<typeof ExportJobJson> => ({
  id: job.id,
  tenantId: job.tenantId,
  status: job.status,
  progress: { ...job.progress },
  bytes: job.bytes,
  sha256: job.sha256,
  error: job.errorCode ? { code: job.errorCode } : null,
  createdAt: job.createdAt.toISOString(),
  finishedAt: job.finishedAt?.toISOString() ?? null,
  expiresAt: job.expiresAt?.toISOString() ?? null,
});

const JobParams = TenantParam.extend({ jobId: z.uuid() });

/**
 * Control plane: tenant exports as jobs, `/v1/tenants/{id}/exports…`, behind the admin token.
 * The archive is `tenantry.exportTenant`'s tar, kept in the control plane (any instance serves it).
 */
export async function exportRoutes(
  app: FastifyInstance,
  opts: { tenantry: Tenantry<unknown>; jobs: ExportJobs },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { tenants } = opts.tenantry;
  const { jobs } = opts;

  r.post(
    '/v1/tenants/:tenant/exports',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'Start an export of the tenant (one at a time); poll the job, then download it',
        params: TenantParam,
        response: { 202: ExportJobJson, ...problems(401, 404, 409) },
      },
    },
    async (req, reply) => {
      const tenant = await tenants.get(req.params.tenant);
      const job = await jobs.start(tenant, { actor: `admin-api:${req.id}` });
      return reply.code(202).header('location', `/v1/tenants/${tenant.id}/exports/${job.id}`).send(jobJson(job));
    },
  );

  r.get(
    '/v1/tenants/:tenant/exports/:jobId',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'Status of an export job: progress, then size and SHA-256 of the archive',
        params: JobParams,
        response: { 200: ExportJobJson, ...problems(400, 401, 404) },
      },
    },
    async (req) => {
      const tenant = await tenants.get(req.params.tenant);
      return jobJson(await jobs.get(tenant.id, req.params.jobId));
    },
  );

  r.get(
    '/v1/tenants/:tenant/exports/:jobId/download',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'The archive of a done export job (application/x-tar, the format of `tenantry tenants export`)',
        params: JobParams,
        produces: ['application/x-tar'],
        response: {
          200: z.any().describe('The archive (application/x-tar); `Repr-Digest` carries its SHA-256'),
          ...problems(400, 401, 404, 409),
        },
      },
    },
    async (req, reply) => {
      const tenant = await tenants.get(req.params.tenant);
      const { job, archive } = await jobs.download(tenant.id, req.params.jobId);
      return reply
        .header('content-type', 'application/x-tar')
        .header('content-length', String(job.bytes))
        .header('content-disposition', `attachment; filename="tenant-export-${job.id}.tar"`)
        .header('repr-digest', `sha-256=:${Buffer.from(job.sha256 ?? '', 'hex').toString('base64')}:`)
        .send(archive);
    },
  );
}
