import { serve } from '@hono/node-server';
import { drizzle } from 'drizzle-orm/node-postgres';
import { Hono } from 'hono';
import { tenantDrizzleClient } from 'tenantry/drizzle';
import { type TenantryEnv, tenantryHono, tenantryNotFound, tenantryOnError } from 'tenantry/hono';
import { itemStore } from './items.ts';
import * as schema from './schema.ts';
import { connectTenantry } from './tenantry.ts';

const { tenantry, identification, close } = await connectTenantry();
// One Drizzle instance for the application, on a client that lends Tenantry's connections:
// every statement runs in a tenant transaction of the current request's tenant.
const db = drizzle({ client: tenantDrizzleClient(tenantry), schema });
const items = itemStore(db);
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
