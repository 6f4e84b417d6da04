import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { createTenantryClient } from '../src/client/index.ts';
import { type IsolationTier, Tenantry } from '../src/index.ts';

// Each example in examples/ started the way its README says (`npm start`), on a database of
// this file's own, then driven over HTTP with the typed client by three tenants (TIERS).

const EXAMPLES = ['prisma-express', 'drizzle-hono', 'nestjs'] as const;
/**
 * Tiers of the tenants a, b and c. Every example migrates every tier at start-up
 * (`migrateFleet`), so its tenants live on all three.
 */
const TIERS: Record<(typeof EXAMPLES)[number], readonly IsolationTier[]> = {
  'prisma-express': ['pool', 'schema', 'database'],
  'drizzle-hono': ['pool', 'schema', 'database'],
  nestjs: ['pool', 'schema', 'database'],
};
const root = fileURLToPath(new URL('../../../', import.meta.url));

interface Started {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
}

/** `npm start` in `examples/<name>`, resolved once it prints the URL it listens on. */
async function start(name: string, db: TestDatabase): Promise<Started> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')),
  );
  Object.assign(env, {
    DATABASE_URL: db.url,
    TENANTRY_SECRET: db.secret,
    TENANTRY_OWNER_ROLE: db.roles.owner,
    TENANTRY_RUNTIME_ROLE: db.roles.runtime,
    PORT: '0',
  });
  // Its own process group, so the test ends npm and the server it started together.
  const child = spawn('npm', ['start'], {
    cwd: `${root}examples/${name}`,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not listen within 90 s:\n${output}`)), 90_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      const listening = /listening on (http:\/\/\S+)/.exec(output);
      if (listening?.[1]) {
        clearTimeout(timer);
        resolve(listening[1]);
      }
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${output}`));
    });
  });
  return { url, child, output: () => output };
}

async function stop(started: Started | undefined): Promise<void> {
  if (!started?.child.pid || started.child.exitCode !== null) return;
  const exited = once(started.child, 'exit');
  process.kill(-started.child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    try {
      process.kill(-(started.child.pid as number), 'SIGKILL');
    } catch {
      // gone already
    }
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

describe.each(EXAMPLES)('examples/%s', (name) => {
  let db: TestDatabase;
  let app: Started | undefined;
  let tenantry: Tenantry | undefined;

  afterAll(async () => {
    await stop(app);
    await tenantry?.close();
    await db?.drop();
  });

  it('starts with npm start and keeps two tenants apart over HTTP', async () => {
    db = await createTestDatabase(`example_${name}`);
    // Tenants and keys come from the library, before the example first starts (on the tiers
    // of TIERS); the example's start-up migration then creates its table where they live, and
    // its data access (Prisma, Drizzle, Kysely) must reach each tenant's rows there.
    tenantry = await Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles });
    await tenantry.setup();
    const keys: string[] = [];
    for (const [i, tier] of TIERS[name].entries()) {
      const slug = `${name}-${'abc'[i]}`;
      const tenant = await tenantry.tenants.create({ slug, name: slug, tier });
      expect(tenant.tier).toBe(tier);
      const { key } = await tenantry.apiKeys.create(tenant.id, {
        name: 'example test',
        environment: 'test',
        scopes: ['items:read', 'items:write'],
      });
      keys.push(key);
    }
    app = await start(name, db);
    const [a, b, c] = keys.map((token) => createTenantryClient({ baseUrl: app?.url as string, token })) as [
      ReturnType<typeof createTenantryClient>,
      ReturnType<typeof createTenantryClient>,
      ReturnType<typeof createTenantryClient>,
    ];

    const mine = await a.POST('/v1/items', { body: { title: 'alpha roadmap' } });
    expect(mine.response.status).toBe(201);
    const theirs = await b.POST('/v1/items', { body: { title: 'bravo secret', description: 'only bravo' } });
    expect(theirs.response.status).toBe(201);

    const listA = await a.GET('/v1/items', {});
    expect(listA.data?.items.map((i) => i.title)).toEqual(['alpha roadmap']);
    const listB = await b.GET('/v1/items', {});
    expect(listB.data?.items.map((i) => i.title)).toEqual(['bravo secret']);
    const third = await c.POST('/v1/items', { body: { title: 'charlie plan' } });
    expect(third.response.status).toBe(201);
    expect((await c.GET('/v1/items', {})).data?.items.map((i) => i.title)).toEqual(['charlie plan']);
    for (const other of [a, b]) {
      const path = { id: third.data?.id as string };
      expect((await other.GET('/v1/items/{id}', { params: { path } })).response.status).toBe(404);
    }

    const own = await a.GET('/v1/items/{id}', { params: { path: { id: mine.data?.id as string } } });
    expect(own.data?.title).toBe('alpha roadmap');
    const stolen = await a.GET('/v1/items/{id}', { params: { path: { id: theirs.data?.id as string } } });
    expect(stolen.response.status).toBe(404);
    expect(stolen.response.headers.get('content-type')).toContain('application/problem+json');
    expect(stolen.error).toMatchObject({ code: 'NOT_FOUND', status: 404 });
    expect(JSON.stringify(stolen.error)).not.toContain('bravo');

    const anonymous = await createTenantryClient({ baseUrl: app.url }).GET('/v1/items', {});
    expect(anonymous.response.status).toBe(401);
    expect(anonymous.error).toMatchObject({ code: 'UNAUTHORIZED' });
    const invalid = await a.POST('/v1/items', { body: { title: '' } as never });
    expect(invalid.error).toMatchObject({ code: 'INVALID_INPUT', status: 400 });
    expect((await a.GET('/v1/items', {})).data?.items).toHaveLength(1);
  });
});
