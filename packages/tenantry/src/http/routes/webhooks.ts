import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { resolveWebhookTarget } from '../../effects/webhook-address.ts';
import type { WebhookDeliverer } from '../../effects/webhook-deliverer.ts';
import {
  CreateWebhookInput,
  type WebhookDeadLetter,
  type WebhookDelivery,
  type WebhookEndpoint,
  type WebhookEndpoints,
} from '../../effects/webhook-endpoints.ts';
import { problems } from '../schemas.ts';

const WebhookJson = z
  .object({
    id: z.uuid(),
    url: z.string(),
    eventTypes: z.array(z.string()),
    description: z.string().nullable(),
    createdAt: z.string(),
  })
  .meta({ id: 'Webhook' });

const DeliveryJson = z
  .object({
    id: z.string(),
    eventId: z.string(),
    eventType: z.string(),
    attempt: z.number().int(),
    status: z.number().int().nullable(),
    ok: z.boolean(),
    error: z.string().nullable(),
    durationMs: z.number().int(),
    createdAt: z.string(),
  })
  .meta({ id: 'WebhookDelivery' });

const DeadLetterJson = z
  .object({
    eventId: z.string(),
    eventType: z.string(),
    attempts: z.number().int(),
    lastError: z.string().nullable(),
    deadAt: z.string(),
  })
  .meta({ id: 'WebhookDeadLetter' });

const IdParam = z.object({ id: z.string().max(100) });
const ReplayParams = z.object({ id: z.string().max(100), eventId: z.string().max(100) });

const deadLetterJson = (d: WebhookDeadLetter): z.infer<typeof DeadLetterJson> => ({
  eventId: d.eventId,
  eventType: d.eventType,
  attempts: d.attempts,
  lastError: d.lastError,
  deadAt: d.deadAt.toISOString(),
});

const webhookJson = (w: WebhookEndpoint): z.infer<typeof WebhookJson> => ({
  id: w.id,
  url: w.url,
  eventTypes: [...w.eventTypes],
  description: w.description,
  createdAt: w.createdAt.toISOString(),
});
const deliveryJson = (d: WebhookDelivery): z.infer<typeof DeliveryJson> => ({
  ...d,
  createdAt: d.createdAt.toISOString(),
});

const read = { tenantry: { tenant: true, permission: 'webhooks:read' } } as const;
const write = { tenantry: { tenant: true, permission: 'webhooks:write' } } as const;

/**
 * The calling tenant's webhook endpoints: `POST/GET /v1/webhooks`, `DELETE
 * /v1/webhooks/{id}`, `GET /v1/webhooks/{id}/deliveries`, `GET /v1/webhooks/{id}/dead-letters`,
 * `POST /v1/webhooks/{id}/deliveries/{eventId}/replay` (`webhooks:read` / `webhooks:write`). Every lookup is by the caller's tenant and the id together: another
 * tenant's endpoint is `NOT_FOUND`. The secret is shown once, in the creation response.
 */
export async function webhookRoutes(
  app: FastifyInstance,
  opts: { webhooks: WebhookEndpoints; deliverer: WebhookDeliverer; allowPrivateAddresses?: boolean },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { webhooks } = opts;
  const tenantOf = (req: { tenant?: { id: string } | undefined }) => (req.tenant as { id: string }).id;

  r.post(
    '/v1/webhooks',
    {
      config: write,
      schema: {
        tags: ['webhooks'],
        summary: 'Register a webhook endpoint (the response is the only time its signing secret is shown)',
        body: CreateWebhookInput,
        response: { 201: z.object({ secret: z.string(), webhook: WebhookJson }), ...problems(400, 401, 403, 429) },
      },
    },
    async (req, reply) => {
      await resolveWebhookTarget(req.body.url, { allowPrivateAddresses: opts.allowPrivateAddresses ?? false });
      const { endpoint, secret } = await webhooks.create(tenantOf(req), req.body);
      return reply.code(201).send({ secret, webhook: webhookJson(endpoint) });
    },
  );

  r.get(
    '/v1/webhooks',
    {
      config: read,
      schema: {
        tags: ['webhooks'],
        summary: "The tenant's webhook endpoints (never their secrets)",
        response: { 200: z.object({ webhooks: z.array(WebhookJson) }), ...problems(401, 403, 429) },
      },
    },
    async (req) => ({ webhooks: (await webhooks.list(tenantOf(req))).map(webhookJson) }),
  );

  r.delete(
    '/v1/webhooks/:id',
    {
      config: write,
      schema: {
        tags: ['webhooks'],
        summary: 'Remove a webhook endpoint and its delivery history',
        params: IdParam,
        response: { 200: WebhookJson, ...problems(401, 403, 404, 429) },
      },
    },
    async (req) => webhookJson(await webhooks.delete(tenantOf(req), req.params.id)),
  );

  r.get(
    '/v1/webhooks/:id/deliveries',
    {
      config: read,
      schema: {
        tags: ['webhooks'],
        summary: 'Delivery attempts to a webhook endpoint, newest first',
        params: IdParam,
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) }),
        response: { 200: z.object({ deliveries: z.array(DeliveryJson) }), ...problems(400, 401, 403, 404, 429) },
      },
    },
    async (req) => ({
      deliveries: (await webhooks.deliveries(tenantOf(req), req.params.id, req.query.limit)).map(deliveryJson),
    }),
  );

  r.get(
    '/v1/webhooks/:id/dead-letters',
    {
      config: read,
      schema: {
        tags: ['webhooks'],
        summary: 'Events that could not be delivered to a webhook endpoint after every attempt, newest first',
        params: IdParam,
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) }),
        response: { 200: z.object({ deadLetters: z.array(DeadLetterJson) }), ...problems(400, 401, 403, 404, 429) },
      },
    },
    async (req) => ({
      deadLetters: (await webhooks.deadLetters(tenantOf(req), req.params.id, req.query.limit)).map(deadLetterJson),
    }),
  );

  r.post(
    '/v1/webhooks/:id/deliveries/:eventId/replay',
    {
      config: write,
      schema: {
        tags: ['webhooks'],
        summary:
          'Send a dead-lettered event again (same body and webhook-id, new signature, the usual retries); the dead letter goes once delivered',
        params: ReplayParams,
        response: {
          202: z.object({ endpointId: z.string(), eventId: z.string(), status: z.literal('replaying') }),
          ...problems(401, 403, 404, 429),
        },
      },
    },
    async (req, reply) => {
      const { done } = await opts.deliverer.startReplay(tenantOf(req), req.params.id, req.params.eventId);
      done.catch((error: Error) => req.log.warn({ err: error.message }, 'webhook replay failed'));
      return reply.code(202).send({ endpointId: req.params.id, eventId: req.params.eventId, status: 'replaying' });
    },
  );
}
