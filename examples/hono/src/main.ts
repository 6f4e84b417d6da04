import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { type TenantryEnv, tenantryHono, tenantryNotFound, tenantryOnError } from 'tenantry/hono';
import { itemStore } from './items.ts';
import { connectTenantry } from './tenantry.ts';

const { tenantry, identification, close } = await connectTenantry();
const items = itemStore(tenantry);
// Steps 1–4 of every tenant request: API key → tenant → admitted → the handler in its context.
const tenant = tenantryHono(identification);

const app = new Hono<TenantryEnv>();
app.get('/health', (c) => c.json({ status: 'ok' }));
app.get('/v1/items', tenant({ permission: 'items:read' }), async (c) => c.json(await items.list()));
app.get('/v1/items/:id', tenant({ permission: 'items:read' }), async (c) => c.json(await items.get(c.req.param('id'))));
app.post('/v1/items', tenant({ permission: 'items:write' }), async (c) => {
  const body: unknown = await c.req.json().catch(() => undefined);
  return c.json(await items.create(body), 201);
});
app.notFound(tenantryNotFound());
app.onError(tenantryOnError({ onError: (error) => console.error(error) }));

const server = serve(
  { fetch: app.fetch, port: Number(process.env.PORT ?? 3000), hostname: process.env.HOST ?? '127.0.0.1' },
  (info) => console.log(`listening on http://127.0.0.1:${info.port}`),
);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => server.close(() => void close().then(() => process.exit(0))));
}
