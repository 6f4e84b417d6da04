import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, type CliResult, cliEnvironment, runCli } from '../../../test-support/cli.ts';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';

let db: TestDatabase;
let env: NodeJS.ProcessEnv;

function cli(...args: string[]): Promise<CliResult> {
  return runCli(env, ...args);
}

beforeAll(async () => {
  db = await createTestDatabase('cli');
  // Roles are per server: give the CLI this test database's unique role names.
  env = cliEnvironment(db);
});

afterAll(async () => {
  await db?.drop();
});

describe('tenantry CLI', () => {
  it('tenants create / list / show / suspend / resume / delete, with exit codes', async () => {
    const created = await cli('tenants', 'create', 'acme', '--name', 'Acme Inc', '--plan', 'pro', '--json');
    expect(created.code).toBe(0);
    const tenant = JSON.parse(created.stdout) as { id: string; slug: string; status: string };
    expect(tenant).toMatchObject({ slug: 'acme', status: 'active' });

    const list = await cli('tenants', 'list', '--json');
    expect(JSON.parse(list.stdout).tenants.map((t: { slug: string }) => t.slug)).toEqual(['acme']);

    expect((await cli('tenants', 'show', tenant.id)).stdout).toContain('Acme Inc');
    expect(JSON.parse((await cli('tenants', 'suspend', 'acme', '--json')).stdout).status).toBe('suspended');
    expect(JSON.parse((await cli('tenants', 'resume', 'acme', '--json')).stdout).status).toBe('active');

    const dup = await cli('tenants', 'create', 'acme');
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain('TENANT_SLUG_TAKEN');
    expect(dup.stderr).not.toMatch(/\n\s+at /); // no stack trace

    const bad = await cli('tenants', 'create', 'Not A Slug');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('INVALID_INPUT');

    expect((await cli('tenants', 'show', 'missing')).code).toBe(2);

    const key = await cli('keys', 'create', 'acme', '--name', 'ci', '--scopes', 'items:read', '--json');
    expect(key.code).toBe(0);
    const { key: secret, apiKey } = JSON.parse(key.stdout) as { key: string; apiKey: { id: string } };
    expect(secret).toMatch(/^tnt_live_/);
    const listed = await cli('keys', 'list', 'acme');
    expect(listed.stdout).toContain(apiKey.id);
    expect(listed.stdout).not.toContain(secret);
    expect((await cli('keys', 'revoke', 'acme', apiKey.id)).code).toBe(0);
    expect((await cli('keys', 'list', 'acme')).stdout).toContain('revoked');
    expect((await cli('keys', 'create', 'acme', '--name', 'bad', '--scopes', 'NOT A SCOPE')).code).toBe(2);
    expect((await cli('tenants', 'delete', 'acme', '--hard')).code).not.toBe(0); // needs --yes
    expect((await cli('tenants', 'delete', 'acme', '--hard', '--yes')).code).toBe(0);
    expect(JSON.parse((await cli('tenants', 'list', '--json')).stdout).tenants).toEqual([]);
  }, 240_000); // ~20 CLI processes, each connecting and running the idempotent setup

  it('tenants create --tier schema, then tenants move --to pool, with a report', async () => {
    expect((await cli('migrate')).code).toBe(0);
    const created = await cli('tenants', 'create', 'globex', '--tier', 'schema', '--json');
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ tier: 'schema', schemaName: expect.stringMatching(/^t_/) });
    const moved = await cli('tenants', 'move', 'globex', '--to', 'pool');
    expect(moved.code).toBe(0);
    expect(moved.stdout).toMatch(/moved globex: schema\/schemas → pool\/shared in \d+ ms \(read-only for \d+ ms\)/);
    expect(JSON.parse((await cli('tenants', 'show', 'globex', '--json')).stdout).tier).toBe('pool');
    const bad = await cli('tenants', 'move', 'globex', '--to', 'moon');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('INVALID_INPUT');
  }, 120_000);

  it('tenants export, import (a truncated archive is refused with exit 2), delete --hard with its verification', async () => {
    expect((await cli('migrate')).code).toBe(0);
    expect((await cli('tenants', 'create', 'initech', '--tier', 'schema')).code).toBe(0);
    const dir = await mkdtemp(join(tmpdir(), 'tenantry-cli-'));
    try {
      const file = join(dir, 'initech.tar');
      const exported = await cli('tenants', 'export', 'initech', '--out', file);
      expect(exported.code).toBe(0);
      expect(exported.stdout).toMatch(/control\/tenants\.ndjson\s+1 rows/);
      const imported = await cli('tenants', 'import', file, '--slug', 'initech-2', '--tier', 'database', '--json');
      expect(imported.code).toBe(0);
      expect(JSON.parse(imported.stdout).tenant).toMatchObject({ slug: 'initech-2', tier: 'database' });
      const archive = await readFile(file);
      await writeFile(join(dir, 'cut.tar'), archive.subarray(0, 700));
      const cut = await cli('tenants', 'import', join(dir, 'cut.tar'), '--slug', 'initech-3');
      expect(cut.code).toBe(2);
      expect(cut.stderr).toContain('EXPORT_TRUNCATED');
      const unconfirmed = await cli('tenants', 'import', file, '--slug', 'initech', '--replace');
      expect(unconfirmed.code).not.toBe(0);
      expect(unconfirmed.stderr).toContain('--yes');
      const replaced = await cli('tenants', 'import', file, '--slug', 'initech', '--replace', '--yes');
      expect(replaced.code).toBe(0);
      expect(replaced.stdout).toMatch(/imported initech \(.*, schema\)\nreplaced and erased tenant /);
      const erased = await cli('tenants', 'delete', 'initech-2', '--hard', '--yes', '--json');
      expect(erased.code).toBe(0);
      const report = JSON.parse(erased.stdout) as { verification: { ok: boolean; rows: Record<string, number> } };
      expect(report.verification.ok).toBe(true);
      expect(Object.values(report.verification.rows).every((n) => n === 0)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses to run against a real server without TENANTRY_SECRET', async () => {
    const { TENANTRY_SECRET: _, ...rest } = env;
    const saved = env;
    env = rest;
    try {
      const r = await cli('tenants', 'list');
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('MISSING_SECRET');
    } finally {
      env = saved;
    }
  });

  it('serve answers /health and /health/ready over a real socket, then stops on SIGTERM', async () => {
    const child: ChildProcess = spawn(process.execPath, [CLI_MAIN, 'serve', '--port', '0'], { env });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const m = /serving on (http:\/\/[^\s]+)/.exec(out);
          if (m) resolve(m[1] as string);
        });
        child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
      });
      const health = await fetch(`${url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
      const ready = await fetch(`${url}/health/ready`, { headers: { 'x-request-id': 'req-123' } });
      expect(ready.status).toBe(200);
      expect(ready.headers.get('x-request-id')).toBe('req-123');
      const missing = await fetch(`${url}/nope`);
      expect(missing.status).toBe(404);
      expect(missing.headers.get('content-type')).toContain('application/problem+json');
      expect(await missing.json()).toMatchObject({ code: 'NOT_FOUND', status: 404 });
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  });
});
