import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CreateUserInput, type UserRecord, type UserStore } from '../../auth/users.ts';
import { TenantryError } from '../../errors/catalog.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems, TenantParam } from '../schemas.ts';

const UserJson = z
  .object({ id: z.uuid(), email: z.string(), role: z.string(), createdAt: z.string() })
  .meta({ id: 'User' });
const userJson = (u: UserRecord): z.infer<typeof UserJson> => ({
  id: u.id,
  email: u.email,
  role: u.role,
  createdAt: u.createdAt.toISOString(),
});

const UserErasureJson = z
  .object({
    userId: z.uuid(),
    tables: z.array(z.object({ table: z.string(), mode: z.enum(['pseudonymise', 'delete']), rows: z.number().int() })),
    accountRemoved: z.boolean(),
  })
  .meta({ id: 'UserErasure' });

/** Users: `/v1/users` on the data plane, `/v1/tenants/{id}/users` on the control plane. */
export async function userRoutes(
  app: FastifyInstance,
  opts: { tenantry: Tenantry<unknown>; users: UserStore },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { users } = opts;

  r.get(
    '/v1/users',
    {
      config: { tenantry: { tenant: true, permission: 'users:read' } },
      schema: {
        tags: ['users'],
        summary: 'Users of the caller’s tenant',
        response: { 200: z.object({ users: z.array(UserJson) }), ...problems(401, 403, 429) },
      },
    },
    async (req) => ({ users: (await users.list((req.tenant as { id: string }).id)).map(userJson) }),
  );

  r.post(
    '/v1/users',
    {
      config: { tenantry: { tenant: true, permission: 'users:write' } },
      schema: {
        tags: ['users'],
        summary: 'Add a user to the caller’s tenant',
        body: CreateUserInput,
        response: { 201: UserJson, ...problems(400, 401, 403, 409, 429) },
      },
    },
    async (req, reply) => {
      const tenantId = (req.tenant as { id: string }).id;
      const user = await users.create(tenantId, req.body, {
        actor: `${req.principal?.kind}:${req.principal?.subject}`,
      });
      return reply.code(201).send(userJson(user));
    },
  );

  r.delete(
    '/v1/users/:id',
    {
      config: { tenantry: { tenant: true, permission: 'users:write' } },
      schema: {
        tags: ['users'],
        summary:
          'Remove a user from the caller’s tenant; `?erase=true` also pseudonymises or deletes their data in the tables marked personal',
        params: z.object({ id: z.uuid() }),
        querystring: z.object({ erase: z.enum(['true', 'false']).default('false') }),
        response: { 200: UserErasureJson, 204: z.null(), ...problems(400, 401, 403, 404, 429) },
      },
    },
    async (req, reply) => {
      const tenantId = (req.tenant as { id: string }).id;
      const actor = `${req.principal?.kind}:${req.principal?.subject}`;
      if (req.query.erase !== 'true') {
        await users.remove(tenantId, req.params.id, { actor });
        return reply.code(204).send(null);
      }
      const report = await opts.tenantry.eraseUser(tenantId, req.params.id, { actor });
      return reply
        .code(200)
        .send({ userId: report.userId, tables: [...report.tables], accountRemoved: report.accountRemoved });
    },
  );

  r.post(
    '/v1/tenants/:tenant/users',
    {
      config: { tenantry: { admin: true } },
      schema: {
        tags: ['control plane'],
        summary: 'Add a user to a tenant',
        params: TenantParam,
        body: CreateUserInput,
        response: { 201: UserJson, ...problems(400, 401, 404, 409) },
      },
    },
    async (req, reply) => {
      const tenant = await opts.tenantry.tenants.get(req.params.tenant);
      if (tenant.status === 'deleted') throw new TenantryError('TENANT_NOT_ACTIVE');
      const user = await users.create(tenant.id, req.body, { actor: `admin-api:${req.id}` });
      return reply.code(201).send(userJson(user));
    },
  );
}
