import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { TenantScopedCache } from '../../cache/tenant-scoped-cache.ts';
import { type AuditTransaction, audit } from '../../effects/tenant-audit.ts';
import { emit } from '../../effects/tenant-events.ts';
import { TenantryError } from '../../errors/catalog.ts';
import { type ItemsDB, items } from '../../example/items.ts';
import { problems } from '../schemas.ts';

const Item = z
  .object({
    id: z.uuid(),
    title: z.string(),
    description: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Item' });

const ItemParam = z.object({ id: z.string().max(100) });
const NewItem = z
  .object({ title: z.string().trim().min(1).max(500), description: z.string().max(10_000).nullable().optional() })
  .strict();
const ItemPatch = z
  .object({ title: z.string().trim().min(1).max(500), description: z.string().max(10_000).nullable() })
  .partial()
  .strict()
  .refine((p) => Object.keys(p).length > 0, 'nothing to update');

const read = { tenantry: { tenant: true, permission: 'items:read' } } as const;
const write = { tenantry: { tenant: true, permission: 'items:write' } } as const;

/**
 * Writes the item's event in the outbox with the change (`tenantry.events` delivers it to
 * subscribers, webhooks and the tenant's sockets): `item.created` and `item.updated` carry
 * the item as the response shows it, `item.deleted` its id.
 * The outbox lives in the main database: a tenant whose transaction runs elsewhere (its own
 * database, or a schema on another server) has its change go through without the event.
 */
function emitItem(tx: AuditTransaction, type: string, payload: Record<string, unknown>): void {
  if (tx.inMainDatabase) emit(tx, type, payload);
}

/** How long an item read stays cached; every change of the item through this API drops it at once. */
const ITEM_TTL_MS = 60_000;

/**
 * The example application's data plane: `/v1/items…` (seed 001's Item, with full-text
 * search). With `cache`, `GET /v1/items/:id` reads through the tenant cache, and a change
 * or deletion of the item drops its entry once the transaction committed.
 */
export async function itemRoutes(app: FastifyInstance, options: { cache?: TenantScopedCache }): Promise<void> {
  const { cache } = options;
  /** Drops an item's entry after its change committed (a read computed before is not stored). */
  const forget = async (id: string) => {
    const name = items.cacheName(id);
    if (cache && name) await cache.delete(name);
  };
  const r = app.withTypeProvider<ZodTypeProvider>();
  const notFound = () => new TenantryError('NOT_FOUND', 'no such item');

  r.post(
    '/v1/items',
    {
      config: write,
      schema: {
        tags: ['items'],
        summary: 'Create an item',
        body: NewItem,
        response: { 201: Item, ...problems(400, 401, 403, 409, 429) },
      },
    },
    async (req, reply) => {
      const limit = req.tenant?.limits.maxStorageMb ?? null;
      const item = await req.tenantTransaction<z.infer<typeof Item>, ItemsDB>(async (tx) => {
        await items.assertStorage(tx, limit);
        const created = await items.create(tx, req.body);
        audit(tx, 'item.created', `item:${created.id}`, { title: created.title });
        emitItem(tx, 'item.created', { item: created });
        return created;
      });
      return reply.code(201).send(item);
    },
  );

  r.get(
    '/v1/items',
    {
      config: read,
      schema: {
        tags: ['items'],
        summary: 'List items, newest first; `q` searches title and description',
        querystring: z.object({
          q: z.string().trim().min(1).max(200).optional(),
          cursor: z.string().max(500).optional(),
          limit: z.coerce.number().int().min(1).max(100).default(20),
        }),
        response: {
          200: z.object({ items: z.array(Item), nextCursor: z.string().optional() }),
          ...problems(400, 401, 403, 429),
        },
      },
    },
    async (req) =>
      req.tenantTransaction<Awaited<ReturnType<typeof items.list>>, ItemsDB>((tx) => items.list(tx, req.query)),
  );

  r.get(
    '/v1/items/:id',
    {
      config: read,
      schema: {
        tags: ['items'],
        summary: 'One item',
        params: ItemParam,
        response: { 200: Item, ...problems(401, 403, 404, 429) },
      },
    },
    async (req) => {
      // Another tenant's item is invisible under RLS: it answers exactly like a missing one.
      // One statement, so the whole transaction is one round trip (tenantQuery).
      const query = items.getQuery(req.params.id);
      if (!query) throw notFound();
      const read = async () => items.fromRows((await req.tenantQuery(query)).rows);
      // The entry is in the request tenant's namespace: another tenant's id is its own miss.
      const name = items.cacheName(req.params.id);
      const item = cache && name ? await cache.getOrCompute(name, read, { ttlMs: ITEM_TTL_MS }) : await read();
      if (!item) throw notFound();
      return item;
    },
  );

  r.patch(
    '/v1/items/:id',
    {
      config: write,
      schema: {
        tags: ['items'],
        summary: 'Change an item',
        params: ItemParam,
        body: ItemPatch,
        response: { 200: Item, ...problems(400, 401, 403, 404, 409, 429) },
      },
    },
    async (req) => {
      const limit = req.tenant?.limits.maxStorageMb ?? null;
      const item = await req.tenantTransaction<z.infer<typeof Item> | undefined, ItemsDB>(async (tx) => {
        await items.assertStorage(tx, limit);
        const updated = await items.update(tx, req.params.id, req.body);
        if (updated) {
          audit(tx, 'item.updated', `item:${updated.id}`, { fields: Object.keys(req.body) });
          emitItem(tx, 'item.updated', { item: updated, fields: Object.keys(req.body) });
        }
        return updated;
      });
      // After COMMIT: a read computed before it is not stored (its lease is revoked).
      await forget(req.params.id);
      if (!item) throw notFound();
      return item;
    },
  );

  r.delete(
    '/v1/items/:id',
    {
      config: write,
      schema: {
        tags: ['items'],
        summary: 'Delete an item',
        params: ItemParam,
        response: { 204: z.null(), ...problems(401, 403, 404, 429) },
      },
    },
    async (req, reply) => {
      const removed = await req.tenantTransaction<boolean, ItemsDB>(async (tx) => {
        const gone = await items.remove(tx, req.params.id);
        if (gone) {
          audit(tx, 'item.deleted', `item:${req.params.id}`);
          emitItem(tx, 'item.deleted', { item: { id: req.params.id } });
        }
        return gone;
      });
      await forget(req.params.id);
      if (!removed) throw notFound();
      return reply.code(204).send(null);
    },
  );
}
