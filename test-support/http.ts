import type { FastifyInstance } from 'fastify';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { createServer, type ServerOptions } from '../packages/tenantry/src/http/server.ts';
import { Tenantry, type TenantryOptions } from '../packages/tenantry/src/index.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

/** A reference server listening on a free loopback port, and a small JSON client for it. */
export interface TestServer {
  readonly app: FastifyInstance;
  readonly url: string;
  request(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string>; raw?: string },
    // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON the server sent
  ): Promise<{ status: number; headers: Headers; body: any }>;
  close(): Promise<void>;
}

export async function startServer(tenantry: Tenantry<unknown>, options: ServerOptions = {}): Promise<TestServer> {
  const app = await createServer(tenantry, { logger: false, ...options });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    app,
    url,
    async request(method, path, o = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      let body: string | undefined = o.raw;
      if (o.body !== undefined) {
        headers['content-type'] = 'application/json';
        body = JSON.stringify(o.body);
      } else if (o.raw !== undefined) {
        headers['content-type'] ??= 'application/json';
      }
      const res = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON
      }
      return { status: res.status, headers: res.headers, body: parsed };
    },
    close: () => app.close(),
  };
}

/** A database of its own with the example application's tables, set up and migrated. */
export async function createAppTenantry(
  label: string,
  options: Pick<TenantryOptions, 'usage'> = {},
): Promise<{ db: TestDatabase; tenantry: Tenantry<unknown> }> {
  const db = await createTestDatabase(label);
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    ...options,
  });
  await tenantry.setup();
  await tenantry.migrate();
  return { db, tenantry };
}
