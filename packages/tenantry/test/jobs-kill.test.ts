import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { getTenant, type TenantRecord } from '../src/index.ts';

let fx: Fixture;

beforeAll(async () => {
  fx = await createFixture('jobs_kill');
});

afterAll(async () => {
  await fx?.close();
});

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts the worker process, waits until it finished `runs` jobs, SIGKILLs it; jobs running then. */
async function killMidJob(runs: number): Promise<number> {
  const script = fileURLToPath(new URL('./fixtures/jobs-worker.ts', import.meta.url));
  const child = spawn(process.execPath, [script], {
    env: {
      ...process.env,
      JOBS_DATABASE_URL: fx.database.url,
      JOBS_SECRET: fx.database.secret,
      JOBS_ROLES: JSON.stringify(fx.database.roles),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let last = 0;
  child.stdout.on('data', (chunk: Buffer) => {
    for (const m of chunk.toString().matchAll(/ran (\d+)/g)) last = Number(m[1]);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await until(() => last >= runs);
  const { rows } = await fx.tenantry.adminPool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM tenantry.jobs WHERE state = 'running'",
  );
  child.kill('SIGKILL');
  await exited;
  return rows[0]?.n ?? 0;
}

describe('a worker killed (SIGKILL) mid-job, 10 times, under load', () => {
  it('every job completes at least once, none is lost, none runs in the wrong tenant (all tiers)', async () => {
    const tenants: TenantRecord[] = [];
    for (const tier of ['pool', 'schema', 'database'] as const) {
      tenants.push(await fx.tenantry.tenants.create({ slug: `kill-${tier}`, name: tier, tier }));
    }
    const perTenant = 120;
    for (const t of tenants) {
      for (let n = 0; n < perTenant; n++) {
        await fx.tenantry.jobs.enqueue(t.id, 'kill.work', { tenant: t.id, tag: `${t.slug}:${n}` });
      }
    }
    let runningAtKill = 0;
    for (let kill = 0; kill < 10; kill++) runningAtKill += await killMidJob(5);
    expect(runningAtKill).toBeGreaterThan(0); // the kills did hit jobs in flight

    // A surviving worker takes back the dead workers' leases and finishes the rest.
    fx.tenantry.jobs.define<{ tenant: string; tag: string }>('kill.work', {
      maxAttempts: 50,
      run: async (payload, job) => {
        if (getTenant().id !== payload.tenant) throw new Error('wrong tenant');
        await job.tx.query('INSERT INTO items (title) VALUES ($1)', [payload.tag]);
      },
    });
    const worker = fx.tenantry.jobs.worker({ concurrency: 4, leaseMs: 900, pollIntervalMs: 50 });
    await worker.start();
    await until(async () => {
      const { rows } = await fx.tenantry.adminPool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM tenantry.jobs WHERE state <> 'completed'",
      );
      return rows[0]?.n === 0;
    }, 60_000);
    await worker.close();

    for (const t of tenants) {
      const { rows } = await fx.tenantry.transaction(t, (tx) => tx.query<{ title: string }>('SELECT title FROM items'));
      const titles = new Set(rows.map((r) => r.title));
      for (let n = 0; n < perTenant; n++) expect(titles.has(`${t.slug}:${n}`)).toBe(true);
      expect(rows.every((r) => r.title.startsWith(`${t.slug}:`))).toBe(true);
      if (t.tier !== 'database') {
        // The completion commits with the job's write: exactly once in the main database.
        expect(rows).toHaveLength(perTenant);
      }
    }
    const { rows } = await fx.tenantry.adminPool.query<{ n: number }>(
      'SELECT coalesce(sum(running), 0)::int AS n FROM tenantry.job_queues',
    );
    expect(rows[0]?.n).toBe(0);
  }, 240_000);
});
