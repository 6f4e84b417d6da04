/**
 * What each HTTP adapter adds to a request: the same framework and route with and without
 * Tenantry's steps 1–4 (API key → tenant → permission → admit → the handler in the tenant's
 * context), for Fastify (the plugin), Express, Hono (on @hono/node-server) and NestJS (Express
 * platform). The handler awaits one tick and answers the tenant's slug (Tenantry: read from
 * `getTenant()`; bare: a constant), so the ratio is the adapter's cost, not PostgreSQL's:
 * the API key and the tenant are served from Tenantry's caches after the first request.
 * Sides alternate round by round in one process; autocannon runs in the same process.
 *
 *   node_modules/.bin/node bench/adapters.ts [--seconds 5] [--rounds 3] [--connections 16]
 */
import type { AddressInfo } from 'node:net';
import { setImmediate as tick } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { tenantryExpress } from '../packages/tenantry/src/adapters/express.ts';
import { tenantryHono } from '../packages/tenantry/src/adapters/hono.ts';
import { CurrentTenant, TenantRoute, TenantryModule } from '../packages/tenantry/src/adapters/nestjs.ts';
import { apiKeyAuthenticator } from '../packages/tenantry/src/auth/authenticators.ts';
import { tenantryPlugin } from '../packages/tenantry/src/http/plugin.ts';
import { TenantCache } from '../packages/tenantry/src/identify/tenant-cache.ts';
import { getTenant, Tenantry } from '../packages/tenantry/src/index.ts';
import { runLoad } from './http/load.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { fixed, log } from './lib/print.ts';

type Framework = 'fastify' | 'express' | 'hono' | 'nestjs';
interface Options {
  tenants: TenantCache;
  authenticators: ReturnType<typeof apiKeyAuthenticator>[];
}
interface Server {
  url: string;
  close(): Promise<void>;
}

async function listen(server: import('node:http').Server): Promise<string> {
  if (!server.listening) await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const closeOf = (server: import('node:http').Server) => () =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

async function start(framework: Framework, options: Options | undefined): Promise<Server> {
  const slug = async () => {
    await tick();
    return { slug: options ? getTenant().slug : 'bare' };
  };
  if (framework === 'fastify') {
    const app = Fastify({ logger: false });
    if (options) await app.register(tenantryPlugin, { ...options, tenantry: undefined as never });
    app.get('/v1/whoami', { config: options ? { tenantry: { tenant: true, permission: 'items:read' } } : {} }, slug);
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url, close: () => app.close() };
  }
  if (framework === 'express') {
    const app = express();
    if (options) app.use('/v1/whoami', tenantryExpress(options)({ permission: 'items:read' }));
    app.get('/v1/whoami', async (_req, res) => void res.json(await slug()));
    const server = app.listen(0, '127.0.0.1');
    return { url: await listen(server), close: closeOf(server) };
  }
  if (framework === 'hono') {
    const app = new Hono();
    if (options) app.use('/v1/whoami', tenantryHono(options)({ permission: 'items:read' }) as never);
    app.get('/v1/whoami', async (c) => c.json(await slug()));
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as import('node:http').Server;
    return { url: await listen(server), close: closeOf(server) };
  }
  class WhoamiController {
    whoami(_tenant: unknown) {
      return slug();
    }
  }
  const proto = WhoamiController.prototype;
  const descriptor = Object.getOwnPropertyDescriptor(proto, 'whoami') as PropertyDescriptor;
  Controller('v1')(WhoamiController);
  Get('whoami')(proto, 'whoami', descriptor);
  if (options) {
    TenantRoute({ permission: 'items:read' })(proto, 'whoami', descriptor);
    CurrentTenant()(proto, 'whoami', 0);
  }
  class AppModule {}
  Module({ imports: options ? [TenantryModule.forRoot(options)] : [], controllers: [WhoamiController] })(AppModule);
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  return { url: await listen(app.getHttpServer()), close: () => app.close() };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { seconds: { type: 'string' }, rounds: { type: 'string' }, connections: { type: 'string' } },
  });
  const seconds = positive(values.seconds, 5, '--seconds', false);
  const rounds = positive(values.rounds, 3, '--rounds', true);
  const connections = positive(values.connections, 16, '--connections', true);
  const db = await createBenchDatabase(benchDatabaseUrl());
  const tenantry = await Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles });
  try {
    await tenantry.setup();
    const tenant = await tenantry.tenants.create({ slug: 'bench-adapters', name: 'Bench' });
    const { key } = await tenantry.apiKeys.create(tenant.id, {
      name: 'bench',
      environment: 'test',
      scopes: ['items:read'],
    });
    const options: Options = {
      tenants: new TenantCache(tenantry.tenants),
      authenticators: [apiKeyAuthenticator(tenantry.apiKeys)],
    };
    const requests = [{ method: 'GET' as const, path: '/v1/whoami', headers: { authorization: `Bearer ${key}` } }];
    log(`adapters: ${seconds} s per side, ${rounds} rounds, ${connections} connections; handler awaits one tick`);
    log('| framework | bare req/s | Tenantry req/s | × bare | bare p50 ms | Tenantry p50 ms |');
    log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const framework of ['fastify', 'express', 'hono', 'nestjs'] as const) {
      const bare = await start(framework, undefined);
      const withTenantry = await start(framework, options);
      try {
        // Warm both (JIT, the key and tenant caches), then alternate.
        for (const server of [bare, withTenantry])
          await runLoad({ url: server.url, connections, requests, seconds: 1 });
        const got: Record<'bare' | 'tenantry', { rps: number[]; p50: number[] }> = {
          bare: { rps: [], p50: [] },
          tenantry: { rps: [], p50: [] },
        };
        for (let round = 0; round < rounds; round++) {
          const order = round % 2 === 0 ? (['bare', 'tenantry'] as const) : (['tenantry', 'bare'] as const);
          for (const side of order) {
            const result = await runLoad({
              url: (side === 'bare' ? bare : withTenantry).url,
              connections,
              requests,
              seconds,
            });
            if (result.non2xx || result.errors)
              throw new Error(`${framework} ${side}: ${JSON.stringify(result.statuses)}`);
            got[side].rps.push(result.rps);
            got[side].p50.push(result.p50);
          }
        }
        const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
        const b = median(got.bare.rps);
        const t = median(got.tenantry.rps);
        log(
          `| ${framework} | ${fixed(b, 0)} | ${fixed(t, 0)} | ${fixed(t / b, 3)} | ${fixed(median(got.bare.p50), 2)} | ${fixed(median(got.tenantry.p50), 2)} |`,
        );
      } finally {
        await bare.close();
        await withTenantry.close();
      }
    }
  } finally {
    await tenantry.close();
    await db.drop();
  }
}

if (import.meta.main) await main(process.argv.slice(2));
