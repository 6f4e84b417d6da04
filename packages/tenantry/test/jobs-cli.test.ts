import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, type CliResult, cliEnvironment, runCli } from '../../../test-support/cli.ts';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';

let db: TestDatabase;
let env: NodeJS.ProcessEnv;

function cli(...args: string[]): Promise<CliResult> {
  return runCli(env, ...args);
}

beforeAll(async () => {
  db = await createTestDatabase('jobs_cli');
  env = cliEnvironment(db);
});

afterAll(async () => {
  await db?.drop();
});

describe('tenantry jobs and tenantry worker', () => {
  it('a worker process runs the jobs, stats and list show them, retry and cancel act, SIGTERM stops it', async () => {
    expect((await cli('migrate')).code).toBe(0);
    const tenant = JSON.parse((await cli('tenants', 'create', 'acme', '--json')).stdout) as { id: string };
    // Enqueue through the library, as an application would.
    const { Tenantry } = await import('../src/index.ts');
    const { itemsMigrations } = await import('../src/example/items.ts');
    const { defineItemJobs } = await import('../src/example/item-jobs.ts');
    const t = await Tenantry.connect({
      databaseUrl: db.url,
      secret: db.secret,
      roles: db.roles,
      migrations: itemsMigrations,
    });
    try {
      defineItemJobs(t.jobs);
      const first = await t.jobs.enqueue(tenant.id, 'items.count', {});
      const later = await t.jobs.enqueue(tenant.id, 'items.count', {}, { delayMs: 3_600_000 });

      const stats = JSON.parse((await cli('jobs', 'stats', '--json')).stdout) as { slug: string; backlog: number }[];
      expect(stats).toEqual([expect.objectContaining({ slug: 'acme', backlog: 1, scheduled: 1 })]);

      const worker = spawn(process.execPath, [CLI_MAIN, 'worker', '--concurrency', '2'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      worker.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      const exited = new Promise<number | null>((resolve) => worker.once('exit', resolve));
      const end = Date.now() + 30_000;
      while ((await t.jobs.get(first)).state !== 'completed') {
        if (Date.now() > end) throw new Error(`the worker did not run the job: ${out}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(out).toContain('worker running 2 jobs at once');
      worker.kill('SIGTERM');
      expect(await exited).toBe(0);

      const list = JSON.parse((await cli('jobs', 'list', '--tenant', 'acme', '--json')).stdout) as { id: string }[];
      expect(list.map((j) => j.id)).toEqual([later, first]);
      expect((await cli('jobs', 'cancel', later)).stdout).toContain('cancelled');
      expect((await cli('jobs', 'retry', later)).stdout).toContain('pending');
      const missing = await cli('jobs', 'retry', '999999');
      expect(missing.code).toBe(1); // a failure, like revoking an unknown key
      expect(missing.stderr).toContain('NOT_FOUND');
      expect((await cli('jobs', 'list', '--state', 'lost')).code).toBe(2);
    } finally {
      await t.close();
    }
  }, 120_000);
});
