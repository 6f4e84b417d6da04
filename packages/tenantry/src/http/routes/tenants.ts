import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CreateTenantInput, UpdateTenantInput } from '../../control/tenant-input.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems, TenantJson, TenantParam, tenantJson } from '../schemas.ts';

const admin = { tenantry: { admin: true } } as const;
const actorOf = (requestId: string) => ({ actor: `admin-api:${requestId}` });

/** Control plane: `/v1/tenants…`, behind the admin token. */
export async function tenantRoutes(app: FastifyInstance, opts: { tenantry: Tenantry<unknown> }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { tenants } = opts.tenantry;

  r.post(
    '/v1/tenants',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'Provision a tenant',
        body: CreateTenantInput,
        response: { 201: TenantJson, ...problems(400, 401, 409) },
      },
    },
    async (req, reply) => reply.code(201).send(tenantJson(await tenants.create(req.body, actorOf(req.id)))),
  );

  r.get(
    '/v1/tenants',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'List tenants (cursor pagination)',
        querystring: z.object({
          cursor: z.string().max(500).optional(),
          limit: z.coerce.number().int().min(1).max(500).default(50),
          status: z.enum(['active', 'suspended', 'offboarding', 'deleted']).optional(),
        }),
        response: {
          200: z.object({ tenants: z.array(TenantJson), nextCursor: z.string().optional() }),
          ...problems(400, 401),
        },
      },
    },
    async (req) => {
      const page = await tenants.list(req.query);
      return { tenants: page.tenants.map(tenantJson), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
    },
  );

  r.get(
    '/v1/tenants/:tenant',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'One tenant, by id or slug',
        params: TenantParam,
        response: { 200: TenantJson, ...problems(401, 404) },
      },
    },
    async (req) => tenantJson(await tenants.get(req.params.tenant)),
  );

  r.patch(
    '/v1/tenants/:tenant',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'Change name, plan, limits, features or settings',
        params: TenantParam,
        body: UpdateTenantInput,
        response: { 200: TenantJson, ...problems(400, 401, 404) },
      },
    },
    async (req) => tenantJson(await tenants.update(req.params.tenant, req.body, actorOf(req.id))),
  );

  r.delete(
    '/v1/tenants/:tenant',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'Soft-delete a tenant; `?hard=true` also purges every row it has',
        params: TenantParam,
        querystring: z.object({ hard: z.enum(['true', 'false']).default('false') }),
        response: { 200: TenantJson, ...problems(400, 401, 404, 409) },
      },
    },
    async (req) =>
      tenantJson(await tenants.delete(req.params.tenant, { ...actorOf(req.id), hard: req.query.hard === 'true' })),
  );

  for (const verb of ['suspend', 'resume'] as const) {
    r.post(
      `/v1/tenants/:tenant/${verb}`,
      {
        config: admin,
        schema: {
          tags: ['control plane'],
          summary: verb === 'suspend' ? 'Suspend: tenant work is refused' : 'Resume a suspended tenant',
          params: TenantParam,
          response: { 200: TenantJson, ...problems(401, 404, 409) },
        },
      },
      async (req) => tenantJson(await tenants[verb](req.params.tenant, actorOf(req.id))),
    );
  }
}
