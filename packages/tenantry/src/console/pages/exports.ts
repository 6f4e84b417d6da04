import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ExportJob, ExportJobs } from '../../data/export-jobs.ts';
import { TenantryError } from '../../errors/catalog.ts';
import { isHtmx, redirect } from '../console-auth.ts';
import { type Html, html } from '../html.ts';
import { csrfField, shortDate } from '../layout.ts';
import { type ConsoleDeps, consoleActor, sendPage, sessionOf } from '../page.ts';
import { formatBytes, formatNumber } from '../sparkline.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The tenant's latest export job, if it has one (the table keeps finished ones until they expire). */
export async function latestExport(
  deps: ConsoleDeps,
  jobs: ExportJobs,
  tenantId: string,
): Promise<ExportJob | undefined> {
  const { rows } = await deps.tenantry.adminPool.query<{ id: string }>(
    'SELECT id FROM tenantry.export_jobs WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 1',
    [tenantId],
  );
  const id = rows[0]?.id;
  return id ? jobs.get(tenantId, id) : undefined;
}

/**
 * The export panel of a tenant's page: start an export, watch it (htmx polls while it runs),
 * download the archive when done. The archive is the one `tenantry tenants export` writes.
 */
export function exportPanel(req: FastifyRequest, slug: string, job: ExportJob | undefined): Html {
  const running = job?.status === 'running';
  const p = job?.progress;
  return html`<section class="panel" aria-labelledby="export-heading" id="export-panel"${
    running && job
      ? html` hx-get="/console/tenants/${slug}/exports/${job.id}" hx-trigger="every 1s" hx-swap="outerHTML"`
      : ''
  }><h2 id="export-heading">Export</h2>
${
  job
    ? html`<p id="export-status" data-status="${job.status}">Export of ${shortDate(job.createdAt)}: <strong>${job.status}</strong>${
        p
          ? html`, ${p.tablesDone} of ${p.tablesTotal ?? '?'} tables, ${formatNumber(p.rowsDone)} of ${p.rowsTotal === null ? '?' : formatNumber(p.rowsTotal)} rows`
          : ''
      }${job.errorCode ? html` (<code>${job.errorCode}</code>)` : ''}.</p>
${
  job.status === 'done'
    ? html`<p><a href="/console/tenants/${slug}/exports/${job.id}/download" id="export-download" download>Download the archive</a>
(${formatBytes(job.bytes)}, SHA-256 <code>${job.sha256 ?? ''}</code>; kept until ${shortDate(job.expiresAt)}).</p>`
    : ''
}`
    : html`<p class="muted">No export yet.</p>`
}
<form method="post" action="/console/tenants/${slug}/exports">${csrfField(sessionOf(req))}
<button type="submit" class="secondary"${running ? html` disabled` : ''}>Start an export</button></form>
</section>`;
}

type JobParams = { Params: { tenant: string; jobId: string } };

/** `POST /console/tenants/{slug}/exports`, the polled job panel and the archive download. */
export async function exportRoutes(app: FastifyInstance, deps: ConsoleDeps, jobs: ExportJobs): Promise<void> {
  app.post<{ Params: { tenant: string } }>(
    '/console/tenants/:tenant/exports',
    { schema: { hide: true } },
    async (req, reply) => {
      const tenant = await deps.tenantry.tenants.get(req.params.tenant);
      await jobs.start(tenant, consoleActor(req));
      return redirect(req, reply, `/console/tenants/${tenant.slug}#export-panel`);
    },
  );
  app.get<JobParams>('/console/tenants/:tenant/exports/:jobId', { schema: { hide: true } }, async (req, reply) => {
    const tenant = await deps.tenantry.tenants.get(req.params.tenant);
    if (!isHtmx(req)) return reply.redirect(`/console/tenants/${tenant.slug}`, 303);
    if (!UUID.test(req.params.jobId)) throw new TenantryError('NOT_FOUND', 'no such export');
    return sendPage(reply, exportPanel(req, tenant.slug, await jobs.get(tenant.id, req.params.jobId)));
  });
  app.get<JobParams>(
    '/console/tenants/:tenant/exports/:jobId/download',
    { schema: { hide: true } },
    async (req, reply) => {
      const tenant = await deps.tenantry.tenants.get(req.params.tenant);
      if (!UUID.test(req.params.jobId)) throw new TenantryError('NOT_FOUND', 'no such export');
      const { job, archive } = await jobs.download(tenant.id, req.params.jobId);
      return reply
        .header('content-type', 'application/x-tar')
        .header('content-length', String(job.bytes))
        .header('content-disposition', `attachment; filename="tenant-export-${tenant.slug}-${job.id}.tar"`)
        .header('cache-control', 'no-store')
        .send(archive);
    },
  );
}
