import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Kysely } from 'kysely';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type * as admit from '../src/admit/index.ts';
import type * as auth from '../src/auth/index.ts';
import type * as fastify from '../src/http/fastify.ts';
import type * as root from '../src/index.ts';
import type {
  ErrorCode,
  QueryResult,
  TenantContext,
  TenantRecord,
  TenantRef,
  Tenantry,
  TenantTransaction,
} from '../src/index.ts';

const run = promisify(execFile);
const SRC = new URL('../src/', import.meta.url);

/** The package files a fresh process resolves while importing `entry` (type stripping runs the sources). */
async function modulesLoadedBy(entry: string): Promise<string[]> {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
    await import(${JSON.stringify(new URL(entry, SRC).href)});
    console.log(JSON.stringify(seen));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
  return JSON.parse(stdout) as string[];
}

/** Which of `names` (npm packages) appear among loaded module URLs. */
function packagesAmong(urls: readonly string[], names: readonly string[]): string[] {
  return names.filter((name) => urls.some((url) => url.includes(`/node_modules/${name}/`)));
}

const HEAVY = [
  'fastify',
  '@fastify/cors',
  'fastify-plugin',
  'redis',
  '@redis/client',
  'prom-client',
  '@node-rs/argon2',
  'jose',
  '@opentelemetry/api',
  'express',
  'hono',
  '@nestjs/common',
  '@nestjs/core',
  'reflect-metadata',
  'rxjs',
  'openapi-fetch',
  'drizzle-orm',
  '@prisma/client',
  '@prisma/adapter-pg',
] as const;

describe('the root entry point is the core', () => {
  it('loads none of fastify, redis, prom-client, argon2, jose, OpenTelemetry, the web frameworks or the client', async () => {
    const loaded = await modulesLoadedBy('index.ts');
    // The hook does see packages: the core's own dependencies are there.
    expect(packagesAmong(loaded, ['pg', 'kysely'])).toEqual(['pg', 'kysely']);
    expect(packagesAmong(loaded, HEAVY)).toEqual([]);
  });

  it('leaves the integrations to their subpaths', async () => {
    expect(packagesAmong(await modulesLoadedBy('http/fastify.ts'), HEAVY)).toContain('fastify-plugin');
    expect(packagesAmong(await modulesLoadedBy('admit/index.ts'), HEAVY)).toContain('prom-client');
    // Each web framework adapter loads its framework, and only that one.
    expect(packagesAmong(await modulesLoadedBy('adapters/express.ts'), HEAVY)).toEqual([]);
    expect(packagesAmong(await modulesLoadedBy('adapters/hono.ts'), HEAVY)).toEqual([]);
    expect(packagesAmong(await modulesLoadedBy('adapters/nestjs.ts'), HEAVY)).toEqual(
      expect.arrayContaining(['@nestjs/common', '@nestjs/core', 'reflect-metadata']),
    );
    expect(packagesAmong(await modulesLoadedBy('client/index.ts'), HEAVY)).toEqual(['openapi-fetch']);
    // The cache imports redis only when it connects to a URL itself.
    expect(packagesAmong(await modulesLoadedBy('cache/index.ts'), HEAVY)).toEqual([]);
  });

  it('leaves Drizzle and Prisma to tenantry/drizzle and tenantry/prisma', async () => {
    // tenantry/drizzle is the client Drizzle's own driver runs on: it loads only pg.
    expect(packagesAmong(await modulesLoadedBy('drizzle/index.ts'), HEAVY)).toEqual([]);
    expect(packagesAmong(await modulesLoadedBy('prisma/index.ts'), HEAVY)).toEqual(['@prisma/adapter-pg']);
  });

  it('exports no internals', () => {
    expectTypeOf<typeof root>().not.toHaveProperty('mintContextToken');
    expectTypeOf<typeof root>().not.toHaveProperty('CONTEXT_SETTING');
    expectTypeOf<typeof root>().not.toHaveProperty('PoolMap');
    expectTypeOf<typeof root>().not.toHaveProperty('Provisioner');
    expectTypeOf<typeof root>().not.toHaveProperty('ApiKeyStore');
    expectTypeOf<typeof auth>().toHaveProperty('ApiKeyStore');
    expectTypeOf<typeof admit>().toHaveProperty('TenantRateLimiter');
    expectTypeOf<typeof fastify>().toHaveProperty('tenantryPlugin');
  });
});

describe('types of the public API', () => {
  interface DB {
    items: { tenant_id: string; id: string; title: string };
  }

  it('runs a transaction for the current tenant or a named one, typed by the Kysely DB', () => {
    type Run = Tenantry<DB>['transaction'];
    expectTypeOf<Run>().toBeCallableWith(async (tx: TenantTransaction<DB>) => tx.tenant.id);
    expectTypeOf<Run>().toBeCallableWith('acme', async (tx: TenantTransaction<DB>) => tx.tenant.id);
    expectTypeOf<TenantTransaction<DB>['db']>().toEqualTypeOf<Kysely<DB>>();
    expectTypeOf<TenantTransaction<DB>['tenant']>().toEqualTypeOf<TenantContext>();
    expectTypeOf<Tenantry<DB>['query']>().toBeCallableWith('acme', 'SELECT * FROM items WHERE id = $1', ['x']);
    expectTypeOf<Awaited<ReturnType<Tenantry<DB>['query']>>>().toExtend<QueryResult<Record<string, unknown>>>();
  });

  it('names a tenant by context, record, id or slug', () => {
    expectTypeOf<TenantContext>().toExtend<TenantRef>();
    expectTypeOf<TenantRecord>().toExtend<TenantRef>();
    expectTypeOf<string>().toExtend<TenantRef>();
  });

  it('reads the context as a pair: getTenant throws, tryGetTenant may be undefined', () => {
    expectTypeOf<typeof root.getTenant>().returns.toEqualTypeOf<TenantContext>();
    expectTypeOf<typeof root.tryGetTenant>().returns.toEqualTypeOf<TenantContext | undefined>();
    expectTypeOf<typeof root.withTenant>().toBeCallableWith({} as TenantContext, () => 1);
  });

  it('has stable error codes, the usage error among them', () => {
    expectTypeOf<'USAGE_ERROR'>().toExtend<ErrorCode>();
    expectTypeOf<'NO_TENANT_CONTEXT'>().toExtend<ErrorCode>();
    expectTypeOf<root.TenantryError['code']>().toEqualTypeOf<ErrorCode>();
  });
});
