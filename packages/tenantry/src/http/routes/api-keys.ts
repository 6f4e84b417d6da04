import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type ApiKeyRecord, CreateApiKeyInput } from '../../auth/api-key-record.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems, TenantParam } from '../schemas.ts';

const ApiKeyJson = z
  .object({
    id: z.uuid(),
    name: z.string(),
    environment: z.enum(['live', 'test', 'dev']),
    displayPrefix: z.string(),
    scopes: z.array(z.string()),
    expiresAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
    createdAt: z.string(),
  })
  .meta({ id: 'ApiKey' });

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const apiKeyJson = (k: ApiKeyRecord): z.infer<typeof ApiKeyJson> => ({
  id: k.id,
  name: k.name,
  environment: k.environment,
  displayPrefix: k.displayPrefix,
  scopes: [...k.scopes],
  expiresAt: iso(k.expiresAt),
  revokedAt: iso(k.revokedAt),
  lastUsedAt: iso(k.lastUsedAt),
  createdAt: k.createdAt.toISOString(),
});

const admin = { tenantry: { admin: true } } as const;

/** Control plane: `/v1/tenants/{id}/api-keys…`. The key itself is shown once, at creation. */
export async function apiKeyRoutes(app: FastifyInstance, opts: { tenantry: Tenantry<unknown> }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { tenantry } = opts;

  r.post(
    '/v1/tenants/:tenant/api-keys',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'Create an API key (the response is the only time the key is shown)',
        params: TenantParam,
        body: CreateApiKeyInput,
        response: { 201: z.object({ key: z.string(), apiKey: ApiKeyJson }), ...problems(400, 401, 404) },
      },
    },
    async (req, reply) => {
      const tenant = await tenantry.tenants.get(req.params.tenant);
      const created = await tenantry.apiKeys.create(tenant.id, req.body, { actor: `admin-api:${req.id}` });
      return reply.code(201).send({ key: created.key, apiKey: apiKeyJson(created.record) });
    },
  );

  r.get(
    '/v1/tenants/:tenant/api-keys',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'A tenant’s API keys (never the keys themselves)',
        params: TenantParam,
        response: { 200: z.object({ apiKeys: z.array(ApiKeyJson) }), ...problems(401, 404) },
      },
    },
    async (req) => {
      const tenant = await tenantry.tenants.get(req.params.tenant);
      return { apiKeys: (await tenantry.apiKeys.list(tenant.id)).map(apiKeyJson) };
    },
  );

  r.delete(
    '/v1/tenants/:tenant/api-keys/:keyId',
    {
      config: admin,
      schema: {
        tags: ['control plane'],
        summary: 'Revoke an API key (every instance refuses it within a second)',
        params: TenantParam.extend({ keyId: z.string().max(100) }),
        response: { 200: ApiKeyJson, ...problems(401, 404) },
      },
    },
    async (req) => {
      const tenant = await tenantry.tenants.get(req.params.tenant);
      return apiKeyJson(await tenantry.apiKeys.revoke(tenant.id, req.params.keyId, { actor: `admin-api:${req.id}` }));
    },
  );
}
