import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problems } from '../schemas.ts';

const MeJson = z
  .object({
    tenant: z.object({
      id: z.uuid(),
      slug: z.string(),
      name: z.string(),
      plan: z.string(),
      features: z.record(z.string(), z.unknown()),
    }),
    principal: z.object({
      kind: z.enum(['api-key', 'user']),
      id: z.string(),
      role: z.string().optional(),
      permissions: z.array(z.string()),
    }),
  })
  .meta({ id: 'Me' });

/** `GET /v1/me`: who the credential is, and for which tenant. */
export async function meRoutes(app: FastifyInstance): Promise<void> {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/me',
    {
      config: { tenantry: { tenant: true } },
      schema: {
        tags: ['tenant'],
        summary: 'The caller and its tenant',
        response: { 200: MeJson, ...problems(401, 403, 429) },
      },
    },
    async (req) => {
      const t = req.tenant as NonNullable<typeof req.tenant>;
      const p = req.principal as NonNullable<typeof req.principal>;
      return {
        tenant: { id: t.id, slug: t.slug, name: t.name, plan: t.plan, features: { ...t.features } },
        principal: {
          kind: p.kind,
          id: p.subject,
          ...(p.role ? { role: p.role } : {}),
          permissions: [...p.permissions].sort(),
        },
      };
    },
  );
}
