import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The embedded-PostgreSQL path (DATABASE_URL unset) once lost every exit code: a dependency's
// `beforeExit` hook called process.exit(0). CI sets DATABASE_URL for the rest of the suite, so
// these tests take that path on purpose, in child processes.

const exec = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const vitest = join(root, 'node_modules/vitest/vitest.mjs');
const fixtureConfig = fileURLToPath(new URL('./fixtures/exit-code/vitest.config.ts', import.meta.url));
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

/** The environment of a newcomer's shell: no database, no secret, no Redis, no CI. */
function embeddedEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'TENANTRY_SECRET', 'TENANTRY_OWNER_ROLE', 'TENANTRY_RUNTIME_ROLE']) {
    delete env[name];
  }
  // Set by the vitest running this file; the child must behave as a top-level run.
  for (const name of Object.keys(env)) if (name.startsWith('VITEST')) delete env[name];
  return env;
}

async function run(
  args: string[],
  cwd: string,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, args, { cwd, env: embeddedEnv(), timeout: 150_000 });
    return { code: 0, signal: null, stdout, stderr };
  } catch (error) {
    const e = error as { code: number | null; signal: string | null; stdout: string; stderr: string };
    return { code: e.code, signal: e.signal, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('exit codes on the embedded PostgreSQL path', () => {
  let cwd: string;

  beforeAll(async () => {
    // The CLI keeps its embedded server under ./.tenantry; as root that server runs as another
    // OS user, which must be able to reach it (see embedded-postgres.ts).
    cwd = await mkdtemp(join(tmpdir(), 'tenantry-exit-codes-'));
    await chmod(cwd, 0o755);
  });

  afterAll(async () => {
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it('vitest with the project global setup exits non-zero when a test fails', async () => {
    const result = await run([vitest, 'run', '--config', fixtureConfig], root);
    const output = result.stdout + result.stderr;
    expect(output).toContain('starting embedded PostgreSQL');
    expect(output).toContain('fails on purpose');
    expect(result.signal).toBeNull();
    expect(result.code).toBe(1);
  }, 180_000);

  it('a CLI command that starts embedded PostgreSQL exits 2 on bad input', async () => {
    const missing = await run([main, 'tenants', 'show', 'nosuch'], cwd);
    expect(missing.stderr).toContain('starting embedded PostgreSQL');
    expect(missing.stderr).toContain('TENANT_NOT_FOUND');
    expect(missing.code).toBe(2);

    const badSlug = await run([main, 'tenants', 'create', 'Bad Slug'], cwd);
    expect(badSlug.stderr).toContain('INVALID_INPUT');
    expect(badSlug.code).toBe(2);
  }, 180_000);

  it('a CLI command that succeeds there exits 0', async () => {
    const list = await run([main, 'tenants', 'list', '--json'], cwd);
    expect(list.stderr).toContain('embedded PostgreSQL');
    expect(JSON.parse(list.stdout)).toEqual({ tenants: [] });
    expect(list.code).toBe(0);
  }, 180_000);

  it('the example application, migrated there, passes its own doctor with no finding', async () => {
    expect((await run([main, 'migrate'], cwd)).code).toBe(0);
    const doctor = await run([main, 'doctor', '--json'], cwd);
    expect(doctor.code).toBe(0);
    const report = JSON.parse(doctor.stdout) as { ok: boolean; tablesChecked: number; findings: { code: string }[] };
    expect(report.findings.map((f) => f.code)).toEqual([]);
    expect(report).toMatchObject({ ok: true, tablesChecked: 2 }); // items, tenant_usage
  }, 180_000);
});
