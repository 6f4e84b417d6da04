import type { AddressInfo } from 'node:net';
import { setImmediate as tick } from 'node:timers/promises';
import { serve } from '@hono/node-server';
import { Body, Controller, Get, Module, Param, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import express from 'express';
import { Hono } from 'hono';
import { tenantryErrorHandler, tenantryExpress, tenantryNotFound } from '../packages/tenantry/src/adapters/express.ts';
import {
  tenantryNotFound as honoNotFound,
  type TenantryEnv,
  tenantryHono,
  tenantryOnError,
} from '../packages/tenantry/src/adapters/hono.ts';
import { CurrentTenant, TenantRoute, TenantryModule } from '../packages/tenantry/src/adapters/nestjs.ts';
import type { TenantRequestOptions } from '../packages/tenantry/src/http/tenant-request.ts';
import { getTenant, type TenantRecord, type Tenantry, TenantryError } from '../packages/tenantry/src/index.ts';

/**
 * The same small tenant application over each HTTP adapter, for the cross-tenant suite:
 * `GET /v1/whoami` (the admitted tenant and, after an await, the context's), `GET /v1/items`,
 * `GET /v1/items/:id` (404 when RLS hides it), `POST /v1/items` (`items:write`) and
 * `GET /v1/boom` (an unexpected error whose message must not leave the server).
 */
export interface AdapterApp {
  readonly url: string;
  close(): Promise<void>;
}

export type AdapterName = 'express' | 'hono' | 'nestjs';

type Options = Omit<TenantRequestOptions<unknown>, 'onIdentified'>;

/** The handlers, shared by every adapter: what runs inside the tenant context. */
function handlers(tenantry: Tenantry<unknown>) {
  return {
    async whoami(admitted: TenantRecord | undefined) {
      await tick();
      return { admitted: admitted?.slug, context: getTenant().slug };
    },
    async list() {
      const { rows } = await tenantry.transaction((tx) => tx.query('SELECT id, title FROM items ORDER BY title'));
      return { items: rows };
    },
    async get(id: string) {
      const { rows } = await tenantry.transaction((tx) =>
        tx.query('SELECT id, title FROM items WHERE id::text = $1', [id]),
      );
      if (!rows[0]) throw new TenantryError('NOT_FOUND');
      return rows[0];
    },
    async create(title: unknown) {
      if (typeof title !== 'string') throw new TenantryError('INVALID_INPUT', 'title: a string');
      const db = tenantry as Tenantry<{ items: { id: string; title: string; tenant_id: string } }>;
      return db.transaction((tx) =>
        tx.db
          .insertInto('items')
          .values({ title } as never)
          .returning(['id', 'title'])
          .executeTakeFirstOrThrow(),
      );
    },
    boom(): never {
      throw new Error('password=hunter2 at relation "secret_table" of tenant 0000');
    },
  };
}

async function expressApp(tenantry: Tenantry<unknown>, options: Options): Promise<AdapterApp> {
  const h = handlers(tenantry);
  const tenant = tenantryExpress(options);
  const app = express();
  app.use(express.json());
  app.get('/v1/whoami', tenant(), async (req, res) => void res.json(await h.whoami(req.tenant)));
  app.get('/v1/items', tenant({ permission: 'items:read' }), async (_req, res) => void res.json(await h.list()));
  app.get('/v1/items/:id', tenant({ permission: 'items:read' }), async (req, res) => {
    res.json(await h.get(req.params.id as string));
  });
  app.post('/v1/items', tenant({ permission: 'items:write' }), async (req, res) => {
    res.status(201).json(await h.create(req.body?.title));
  });
  app.get('/v1/boom', tenant(), () => h.boom());
  app.use(tenantryNotFound());
  app.use(tenantryErrorHandler());
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function honoApp(tenantry: Tenantry<unknown>, options: Options): Promise<AdapterApp> {
  const h = handlers(tenantry);
  const tenant = tenantryHono(options);
  const app = new Hono<TenantryEnv>();
  app.get('/v1/whoami', tenant(), async (c) => c.json(await h.whoami(c.get('tenant'))));
  app.get('/v1/items', tenant({ permission: 'items:read' }), async (c) => c.json(await h.list()));
  app.get('/v1/items/:id', tenant({ permission: 'items:read' }), async (c) => c.json(await h.get(c.req.param('id'))));
  app.post('/v1/items', tenant({ permission: 'items:write' }), async (c) => {
    const body = (await c.req.json().catch(() => ({}))) as { title?: unknown };
    return c.json(await h.create(body.title), 201);
  });
  app.get('/v1/boom', tenant(), () => h.boom());
  app.notFound(honoNotFound());
  app.onError(tenantryOnError());
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', resolve)));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Applies legacy decorators without decorator syntax (Node's type stripping has none). */
function decorate(
  target: object,
  key: string,
  ...decorators: ((t: object, k: string, d: PropertyDescriptor) => unknown)[]
) {
  const descriptor = Object.getOwnPropertyDescriptor(target, key) as PropertyDescriptor;
  for (const d of decorators.reverse()) d(target, key, descriptor);
}

async function nestApp(tenantry: Tenantry<unknown>, options: Options): Promise<AdapterApp> {
  const h = handlers(tenantry);
  class ItemsController {
    whoami(tenant: TenantRecord) {
      return h.whoami(tenant);
    }
    list() {
      return h.list();
    }
    get(id: string) {
      return h.get(id);
    }
    create(body: { title?: unknown }) {
      return h.create(body?.title);
    }
    boom() {
      return h.boom();
    }
  }
  const proto = ItemsController.prototype;
  Controller('v1')(ItemsController);
  decorate(proto, 'whoami', Get('whoami'), TenantRoute(), (t, k) => CurrentTenant()(t, k, 0));
  decorate(proto, 'list', Get('items'), TenantRoute({ permission: 'items:read' }));
  decorate(proto, 'get', Get('items/:id'), TenantRoute({ permission: 'items:read' }), (t, k) => Param('id')(t, k, 0));
  decorate(proto, 'create', Post('items'), TenantRoute({ permission: 'items:write' }), (t, k) => Body()(t, k, 0));
  decorate(proto, 'boom', Get('boom'), TenantRoute());
  class AppModule {}
  Module({ imports: [TenantryModule.forRoot(options)], controllers: [ItemsController] })(AppModule);
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const server = app.getHttpServer() as import('node:http').Server;
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => app.close() };
}

/** Starts the test application over `adapter` on a free loopback port. */
export function startAdapterApp(
  adapter: AdapterName,
  tenantry: Tenantry<unknown>,
  options: Options,
): Promise<AdapterApp> {
  if (adapter === 'express') return expressApp(tenantry, options);
  if (adapter === 'hono') return honoApp(tenantry, options);
  return nestApp(tenantry, options);
}
