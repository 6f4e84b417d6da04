import express from 'express';
import { tenantryErrorHandler, tenantryExpress, tenantryNotFound } from 'tenantry/express';
import { createTenantPrismaAdapter, tenantPrisma } from 'tenantry/prisma';
import { PrismaClient } from '../prisma/generated/client.ts';
import { itemStore } from './items.ts';
import { connectTenantry } from './tenantry.ts';

const { tenantry, identification, close } = await connectTenantry();
// One Prisma client for the application: the adapter runs its SQL in tenant transactions on
// Tenantry's connections; `tenantPrisma` keeps Prisma's batching within one tenant.
const prisma = tenantPrisma(new PrismaClient({ adapter: createTenantPrismaAdapter(tenantry) }));
const items = itemStore(prisma);
// Steps 1–4 of every tenant request: API key → tenant → admitted → the handler in its context.
const tenant = tenantryExpress(identification);

const app = express();
app.use(express.json());
app.get('/health', (_req, res) => void res.json({ status: 'ok' }));
app.get('/v1/items', tenant({ permission: 'items:read' }), async (_req, res) => {
  res.json(await items.list());
});
app.get('/v1/items/:id', tenant({ permission: 'items:read' }), async (req, res) => {
  res.json(await items.get(req.params.id as string));
});
app.post('/v1/items', tenant({ permission: 'items:write' }), async (req, res) => {
  res.status(201).json(await items.create(req.body));
});
app.use(tenantryNotFound());
app.use(tenantryErrorHandler({ onError: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1', () => {
  const address = server.address();
  if (address && typeof address === 'object') console.log(`listening on http://127.0.0.1:${address.port}`);
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () =>
    server.close(
      () =>
        void prisma
          .$disconnect()
          .then(close)
          .then(() => process.exit(0)),
    ),
  );
}
