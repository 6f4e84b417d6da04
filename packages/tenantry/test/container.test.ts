import { readFileSync } from 'node:fs';
import { DockerfileParser } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { resolveEnvironment } from '../src/cli/environment.ts';

// No container engine runs where this suite runs (a Docker client without a daemon), so the
// image is not built here: the Dockerfile is linted (dockerfile-utils, the linter of the
// Dockerfile language server; hadolint has no package) and its promises are checked, and
// compose.yaml is parsed and checked. See docs/container.md.

const read = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8');
const dockerfileText = read('Dockerfile');
const dockerfile = DockerfileParser.parse(dockerfileText);
const pkg = JSON.parse(read('packages/tenantry/package.json')) as {
  bin: Record<string, string>;
  peerDependencies: Record<string, string>;
};

describe('Dockerfile', () => {
  it('has no lint findings', () => {
    expect(validate(dockerfileText).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  it('is multi-stage; the runtime stage runs as a non-root user, checks /health/ready and runs tenantry serve', () => {
    const froms = dockerfile.getFROMs();
    expect(froms.length).toBeGreaterThanOrEqual(2);
    const runtimeStart = froms[froms.length - 1]?.getRange().start.line ?? 0;
    const runtime = dockerfile.getInstructions().filter((i) => i.getRange().start.line >= runtimeStart);
    expect(runtime[0]?.getKeyword()).toBe('FROM');
    const keyword = (k: string) =>
      runtime.filter((i) => i.getKeyword() === k).map((i) => i.getArgumentsContent() ?? '');
    const user = keyword('USER');
    expect(user).toHaveLength(1);
    expect(user[0]).not.toMatch(/^(root|0)(:|$)/);
    // The build tools stay behind: the runtime stage copies from another stage only.
    const copies = runtime.filter((i) => i.getKeyword() === 'COPY');
    expect(copies.length).toBeGreaterThan(0);
    expect(
      copies.every((i) =>
        (i as unknown as { getFlags(): { getName(): string }[] }).getFlags().some((f) => f.getName() === 'from'),
      ),
    ).toBe(true);
    expect(keyword('HEALTHCHECK').join(' ')).toContain('/health/ready');
    const entrypoint = JSON.parse(keyword('ENTRYPOINT')[0] ?? '[]') as string[];
    expect(entrypoint.at(-1)).toBe(`/app/node_modules/tenantry/${pkg.bin.tenantry?.replace(/^\.\//, '')}`);
    expect(JSON.parse(keyword('CMD')[0] ?? '[]')).toEqual(['serve']);
  });

  it('installs the server peers at the versions the package declares', () => {
    const server = JSON.parse(read('docker/server-package.json')) as { dependencies: Record<string, string> };
    for (const [name, range] of Object.entries(server.dependencies)) expect(range).toBe(pkg.peerDependencies[name]);
    expect(Object.keys(server.dependencies)).toEqual(expect.arrayContaining(['fastify', 'redis', 'prom-client']));
  });
});

describe('compose.yaml', () => {
  const compose = parse(read('compose.yaml')) as {
    services: Record<string, { environment?: Record<string, string>; volumes?: string[]; depends_on?: object }>;
  };

  it('runs PostgreSQL, Redis, PgBouncer and the server; tenant work goes through PgBouncer in transaction mode', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['pgbouncer', 'postgres', 'redis', 'server']);
    const env = compose.services.server?.environment ?? {};
    expect(new URL(env.TENANTRY_RUNTIME_URL as string).host).toBe('pgbouncer:6432');
    expect(new URL(env.DATABASE_URL as string).host).toBe('postgres:5432');
    expect(env.TENANTRY_CONTEXT_BINDING).toBe('pooler');
    expect(new URL(env.REDIS_URL as string).host).toBe('redis:6379');
    const ini = read('docker/pgbouncer.ini');
    expect(ini).toMatch(/^pool_mode = transaction$/m);
    expect(compose.services.pgbouncer?.volumes?.join(' ')).toContain('docker/pgbouncer.ini');
  });

  it('the server reads TENANTRY_RUNTIME_URL and TENANTRY_CONTEXT_BINDING', async () => {
    const base = { DATABASE_URL: 'postgres://postgres@db:5432/t', TENANTRY_SECRET: 'x'.repeat(64) };
    const env = await resolveEnvironment({
      ...base,
      TENANTRY_RUNTIME_URL: 'postgres://tenantry_runtime@pgbouncer:6432/t',
      TENANTRY_CONTEXT_BINDING: 'pooler',
    });
    expect(env).toMatchObject({ runtimeUrl: 'postgres://tenantry_runtime@pgbouncer:6432/t', contextBinding: 'pooler' });
    await expect(resolveEnvironment({ ...base, TENANTRY_CONTEXT_BINDING: 'sometimes' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    expect(await resolveEnvironment(base)).not.toHaveProperty('runtimeUrl');
  });

  it('the server reads the Citus peer binding: TENANTRY_CITUS_PEER_DN and TENANTRY_CITUS_PEER_BINDING', async () => {
    const base = { DATABASE_URL: 'postgres://postgres@db:5432/t', TENANTRY_SECRET: 'x'.repeat(64) };
    expect(await resolveEnvironment({ ...base, TENANTRY_CITUS_PEER_DN: '/CN=tenantry-coordinator' })).toMatchObject({
      citus: { peerCertificateDn: '/CN=tenantry-coordinator' },
    });
    expect(await resolveEnvironment({ ...base, TENANTRY_CITUS_PEER_BINDING: 'network' })).toMatchObject({
      citus: { peerBinding: 'network' },
    });
    await expect(resolveEnvironment({ ...base, TENANTRY_CITUS_PEER_BINDING: 'trust' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    expect(await resolveEnvironment(base)).not.toHaveProperty('citus');
  });
});
