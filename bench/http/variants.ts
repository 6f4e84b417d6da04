import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { z } from 'zod';
import type { TenantContext } from '../../packages/tenantry/src/context/tenant-context.ts';
import { type ItemsDB, items, itemsMigrations } from '../../packages/tenantry/src/example/items.ts';
import { Tenantry } from '../../packages/tenantry/src/index.ts';
import { BARE_SQL } from './bare-server.ts';

/**
 * The two mixed variants of `--matrix`, which split the gap between Tenantry and the
 * baseline into its HTTP half and its database half:
 *
 * | | autocommit SELECT (superuser) | tenant transaction (`transaction` + Kysely) |
 * | --- | --- | --- |
 * | bare Fastify, tenant from `X-Tenant-ID` | **bare** | **bare HTTP + Tenantry tx** (`/v1/items-tx/:id`) |
 * | Tenantry's server (key, tenant, limit, …) | **Tenantry HTTP + autocommit** (`/v1/items-autocommit/:id`) | **tenantry** |
 *
 * and a fifth, **Tenantry's server without the tenant steps** (`/v1/items-plain/:id`): the
 * same app (helmet, CORS, request id, tracing and metrics hooks, Zod validation and
 * serialization) on a route without `config.tenantry`, the tenant from `X-Tenant-ID` as in
 * the baseline — so the HTTP half splits again into server plumbing and identify/auth/admit.
 */
export const VARIANT_PATHS = Object.freeze({
  autocommit: '/v1/items-autocommit',
  plain: '/v1/items-plain',
  transaction: '/v1/items-tx',
});

/** What the HTTP-only variant needs to know about the bench tenants. */
export type BenchTenantContext = Pick<TenantContext, 'id' | 'slug' | 'plan'>;

// The same schemas as the example app's `GET /v1/items/:id` (not exported from its route file).
const Item = z.object({
  id: z.uuid(),
  title: z.string(),
  description: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const ItemParam = z.object({ id: z.string().max(100) });

interface Row {
  id: string;
  title: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

/**
 * On Tenantry's server: a route with the same config and schemas as `GET /v1/items/:id`
 * (so identify, authenticate, admit, validate and serialize all run), whose handler runs
 * the baseline's autocommit SELECT on a superuser pool instead of a tenant transaction;
 * and the same route without `config.tenantry`, the tenant from `X-Tenant-ID`. Call after
 * `createServer()`, before `listen()`. Returns what closes the pool.
 */
export function addAutocommitRoute(
  app: FastifyInstance,
  options: { databaseUrl: string; poolMax: number; idleTimeoutMs: number },
): () => Promise<void> {
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.poolMax,
    idleTimeoutMillis: options.idleTimeoutMs,
  });
  pool.on('error', () => {});
  const select = async (tenantId: unknown, id: string) => {
    const { rows } = await pool.query<Row>(BARE_SQL, [tenantId, id]);
    const row = rows[0];
    return row
      ? {
          id: row.id,
          title: row.title,
          description: row.description,
          createdAt: row.created_at.toISOString(),
          updatedAt: row.updated_at.toISOString(),
        }
      : undefined;
  };
  const schema = { hide: true, params: ItemParam, response: { 200: Item, 404: z.object({ status: z.number() }) } };
  app.get(
    `${VARIANT_PATHS.autocommit}/:id`,
    { config: { tenantry: { tenant: true, permission: 'items:read' } }, schema },
    async (req, reply) => {
      const item = await select(req.tenant?.id, (req.params as { id: string }).id);
      return item ?? reply.code(404).send({ status: 404 });
    },
  );
  app.get(`${VARIANT_PATHS.plain}/:id`, { schema }, async (req, reply) => {
    const tenantId = req.headers['x-tenant-id'];
    const item = await select(typeof tenantId === 'string' ? tenantId : null, (req.params as { id: string }).id);
    return item ?? reply.code(404).send({ status: 404 });
  });
  return () => pool.end();
}

/**
 * On the bare server: the tenant taken from `X-Tenant-ID` on trust as in the baseline, then
 * exactly the example route's data access — `tenantry.transaction(context, tx => items.get(tx, id))`
 * (runtime pool, pipelined BEGIN + verified context, Kysely with the tenant filter, RLS,
 * COMMIT). A `TenantContext` is passed, so no registry lookup happens. Returns what closes
 * the Tenantry instance.
 */
export async function addTransactionRoute(
  app: FastifyInstance,
  options: {
    databaseUrl: string;
    secret: string;
    roles: { owner: string; runtime: string };
    tenants: readonly BenchTenantContext[];
  },
): Promise<() => Promise<void>> {
  const tenantry = await Tenantry.connect<ItemsDB>({
    databaseUrl: options.databaseUrl,
    secret: options.secret,
    roles: options.roles,
    migrations: itemsMigrations,
  });
  const contexts = new Map(
    options.tenants.map((t) => [
      t.id,
      { id: t.id, slug: t.slug, plan: t.plan, tier: 'pool', status: 'active' } as const,
    ]),
  );
  app.get<{ Params: { id: string } }>(`${VARIANT_PATHS.transaction}/:id`, async (req, reply) => {
    const tenant = contexts.get(String(req.headers['x-tenant-id']));
    if (!tenant) return reply.code(404).send({ status: 404 });
    const item = await tenantry.transaction({ ...tenant, requestId: req.id }, (tx) => items.get(tx, req.params.id));
    if (!item) return reply.code(404).send({ status: 404 });
    return item;
  });
  return () => tenantry.close();
}
