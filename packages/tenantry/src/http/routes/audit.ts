import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { listTenantAudit } from '../../effects/audit-entries.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems, TenantParam } from '../schemas.ts';

const AuditEntry = z
  .object({
    id: z.string(),
    at: z.string(),
    actor: z.string(),
    action: z.string(),
    target: z.string().nullable(),
    requestId: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()),
    seq: z.number().int(),
    hash: z.string(),
  })
  .meta({ id: 'AuditEntry' });

const AuditPageJson = z.object({ entries: z.array(AuditEntry), nextCursor: z.string().optional() });

const AuditQuery = z.object({
  actor: z.string().min(1).max(200).optional(),
  action: z.string().min(1).max(200).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  cursor: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

/**
 * The audit log over HTTP, newest first, filtered by actor, action and time, with cursor
 * pagination: `GET /v1/audit` for the calling tenant (`audit:read`; read in its tenant
 * transaction, so only its own entries exist for it) and `GET /v1/tenants/{id}/audit` on
 * the control plane (admin token).
 */
export async function auditRoutes(app: FastifyInstance, opts: { tenantry: Tenantry<unknown> }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { tenantry } = opts;

  r.get(
    '/v1/audit',
    {
      config: { tenantry: { tenant: true, permission: 'audit:read' } },
      schema: {
        tags: ['audit'],
        summary: "The tenant's audit log, newest first",
        querystring: AuditQuery,
        response: { 200: AuditPageJson, ...problems(400, 401, 403, 429) },
      },
    },
    async (req) => req.tenantTransaction((tx) => listTenantAudit(tx, req.query)),
  );

  r.get(
    '/v1/tenants/:tenant/audit',
    {
      config: { tenantry: { admin: true } },
      schema: {
        tags: ['control plane'],
        summary: "A tenant's audit log, newest first",
        params: TenantParam,
        querystring: AuditQuery,
        response: { 200: AuditPageJson, ...problems(400, 401, 404) },
      },
    },
    async (req) => {
      const tenant = await tenantry.tenants.get(req.params.tenant);
      return tenantry.audit.list(tenant.id, req.query);
    },
  );
}
