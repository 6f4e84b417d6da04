import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { getTenant, type IsolationTier, type TenantRecord } from '../src/index.ts';
import { retryDelayMs } from '../src/jobs/index.ts';

let fx: Fixture;

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function jobRows(tenantId: string) {
  const { rows } = await fx.tenantry.adminPool.query<{ id: string; type: string; state: string; attempts: number }>(
    'SELECT id::text, type, state, attempts FROM tenantry.jobs WHERE tenant_id = $1 ORDER BY id',
    [tenantId],
  );
  return rows;
}

async function tenant(slug: string, tier: IsolationTier = 'pool'): Promise<TenantRecord> {
  return fx.tenantry.tenants.create({ slug, name: slug, tier });
}

beforeAll(async () => {
  fx = await createFixture('jobs');
});

afterAll(async () => {
  await fx?.close();
});

describe('enqueue', () => {
  it('a job enqueued in a transaction that rolls back never exists nor runs; one that commits runs once', async () => {
    const t = await tenant('jq-rollback');
    const ran: string[] = [];
    fx.tenantry.jobs.define('rollback.probe', {
      schema: z.object({ label: z.string() }),
      run: async (payload) => {
        ran.push(payload.label);
      },
    });
    await expect(
      fx.tenantry.transaction(t, async (tx) => {
        await fx.tenantry.jobs.enqueue(tx, 'rollback.probe', { label: 'rolled back' });
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await jobRows(t.id)).toEqual([]);
    await fx.tenantry.transaction(t, async (tx) => {
      await fx.tenantry.jobs.enqueue(tx, 'rollback.probe', { label: 'committed' });
    });
    await fx.tenantry.jobs.worker().drain();
    expect(ran).toEqual(['committed']);
    expect((await jobRows(t.id)).map((r) => r.state)).toEqual(['completed']);
  });

  it('validates the payload against the schema and changes nothing when it is refused', async () => {
    const t = await tenant('jq-invalid');
    const typed = fx.tenantry.jobs.define('invalid.probe', { schema: z.object({ n: z.number() }), run: () => {} });
    await expect(fx.tenantry.jobs.enqueue(t.id, typed, { n: 'x' } as never)).rejects.toMatchObject({
      code: 'JOB_PAYLOAD_INVALID',
    });
    await expect(fx.tenantry.jobs.enqueue(t.id, 'Not A Type', {})).rejects.toMatchObject({ code: 'USAGE_ERROR' });
    await expect(fx.tenantry.jobs.enqueue(t.id, 'invalid.probe', [] as never)).rejects.toMatchObject({
      code: 'JOB_PAYLOAD_INVALID',
    });
    expect(await jobRows(t.id)).toEqual([]);
  });

  it('a key makes a singleton: the live job is returned, not a second one', async () => {
    const t = await tenant('jq-key');
    const a = await fx.tenantry.jobs.enqueue(t.id, 'key.probe', {}, { key: 'nightly' });
    const b = await fx.tenantry.jobs.enqueue(t.slug, 'key.probe', {}, { key: 'nightly' });
    const other = await tenant('jq-key-other');
    const c = await fx.tenantry.jobs.enqueue(other.id, 'key.probe', {}, { key: 'nightly' });
    expect(b).toBe(a);
    expect(c).not.toBe(a);
    expect(await jobRows(t.id)).toHaveLength(1);
  });

  it('in a database-tier transaction enqueue is JOBS_UNAVAILABLE; with the tenant named it works', async () => {
    const own = await tenant('jq-own-db', 'database');
    await expect(
      fx.tenantry.transaction(own, async (tx) => {
        await fx.tenantry.jobs.enqueue(tx, 'dbtier.probe', {});
      }),
    ).rejects.toMatchObject({ code: 'JOBS_UNAVAILABLE' });
    expect(await jobRows(own.id)).toEqual([]);
    await fx.tenantry.jobs.enqueue(own, 'dbtier.probe', {});
    expect(await jobRows(own.id)).toHaveLength(1);
  });

  it('the runtime role reads no job and completes none without the lease; job_enqueue needs a context', async () => {
    const t = await tenant('jq-runtime');
    const other = await tenant('jq-runtime-other');
    const id = await fx.tenantry.jobs.enqueue(other.id, 'runtime.probe', { secret: 'other' });
    await expect(fx.tenantry.transaction(t, (tx) => tx.query('SELECT * FROM tenantry.jobs'))).rejects.toThrow();
    await expect(fx.tenantry.transaction(t, (tx) => tx.query('SELECT * FROM tenantry.job_queues'))).rejects.toThrow();
    await expect(
      fx.tenantry.transaction(t, (tx) => tx.query('SELECT tenantry_context.job_complete($1, gen_random_uuid())', [id])),
    ).rejects.toThrow(/lease was lost/);
    const runtime = fx.tenantry.runtimePool;
    await expect(
      runtime.query("SELECT tenantry_context.job_enqueue('x.y', '{}', 0, NULL, 5, 1000, NULL, NULL, NULL)"),
    ).rejects.toThrow(/verified tenant context/);
    expect((await jobRows(other.id)).map((r) => r.state)).toEqual(['pending']);
  });
});

describe('running in the tenant', () => {
  for (const tier of ['pool', 'schema', 'database'] as const) {
    it(`${tier} tier: a job sees exactly its tenant's rows and nothing of another's`, async () => {
      const mine = await tenant(`jq-iso-${tier}`, tier);
      const theirs = await tenant(`jq-iso-${tier}-other`, tier);
      await fx.tenantry.transaction(mine, (tx) => tx.query("INSERT INTO items (title) VALUES ('mine-1'), ('mine-2')"));
      await fx.tenantry.transaction(theirs, (tx) => tx.query("INSERT INTO items (title) VALUES ('theirs')"));
      const seen: Record<string, { tenant: string; titles: string[]; stolen: number }> = {};
      const type = `iso_${tier}.look`;
      fx.tenantry.jobs.define(type, {
        schema: z.object({ other: z.string() }),
        run: async (payload, job) => {
          const { rows } = await job.tx.query<{ title: string }>('SELECT title FROM items ORDER BY title');
          const stolen = await job.tx.query('SELECT 1 FROM items WHERE tenant_id = $1', [payload.other]);
          await job.tx.query('UPDATE items SET title = title WHERE tenant_id = $1', [payload.other]);
          seen[job.id] = { tenant: getTenant().id, titles: rows.map((r) => r.title), stolen: stolen.rows.length };
          await job.tx.query("INSERT INTO items (title) VALUES ('written by job')");
        },
      });
      const a = await fx.tenantry.jobs.enqueue(mine.id, type, { other: theirs.id });
      const b = await fx.tenantry.jobs.enqueue(theirs.id, type, { other: mine.id });
      await fx.tenantry.jobs.worker().drain();
      expect(seen[a]).toEqual({ tenant: mine.id, titles: ['mine-1', 'mine-2'], stolen: 0 });
      expect(seen[b]).toEqual({ tenant: theirs.id, titles: ['theirs'], stolen: 0 });
      const titles = await fx.tenantry.transaction(theirs, (tx) =>
        tx.query<{ title: string }>('SELECT title FROM items ORDER BY title'),
      );
      expect(titles.rows.map((r) => r.title)).toEqual(['theirs', 'written by job']);
      expect((await jobRows(mine.id)).map((r) => r.state)).toEqual(['completed']);
    });
  }

  it('a moved tenant keeps its pending jobs, which then run in its new tier', async () => {
    const t = await tenant('jq-move');
    await fx.tenantry.transaction(t, (tx) => tx.query("INSERT INTO items (title) VALUES ('before the move')"));
    const seen: string[] = [];
    fx.tenantry.jobs.define('move.look', {
      run: async (_p, job) => {
        const { rows } = await job.tx.query<{ title: string }>('SELECT title FROM items');
        seen.push(`${job.tenant.tier}:${rows.map((r) => r.title).join(',')}`);
      },
    });
    await fx.tenantry.jobs.enqueue(t.id, 'move.look', {});
    await fx.tenantry.moveTenant(t.slug, { to: 'schema' });
    await fx.tenantry.jobs.worker().drain();
    expect(seen).toEqual(['schema:before the move']);
  });
});

describe('retries, timeouts, cancellation, progress', () => {
  it('a failing job is retried with backoff, then dead-lettered; retry() puts it back', async () => {
    const t = await tenant('jq-retry');
    let runs = 0;
    fx.tenantry.jobs.define('retry.fail', {
      maxAttempts: 3,
      backoffMs: 10,
      maxBackoffMs: 20,
      run: async (_p, job) => {
        runs++;
        await job.tx.query("INSERT INTO items (title) VALUES ('never kept')");
        throw new Error(`boom ${job.attempt}`);
      },
    });
    const id = await fx.tenantry.jobs.enqueue(t.id, 'retry.fail', {});
    const worker = fx.tenantry.jobs.worker();
    await until(async () => {
      await worker.drain();
      return (await fx.tenantry.jobs.get(id)).state === 'failed';
    });
    const job = await fx.tenantry.jobs.get(id, { tenantId: t.id });
    expect(job).toMatchObject({ attempts: 3, lastError: 'boom 3' });
    expect(runs).toBe(3);
    const items = await fx.tenantry.transaction(t, (tx) => tx.query('SELECT 1 FROM items'));
    expect(items.rows).toEqual([]);
    expect((await fx.tenantry.jobs.retry(id, { tenantId: t.id })).state).toBe('pending');
    const other = await tenant('jq-retry-other');
    await expect(fx.tenantry.jobs.retry(id, { tenantId: other.id })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(fx.tenantry.jobs.get(id, { tenantId: other.id })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('the backoff grows exponentially with jitter, within its bounds', () => {
    const policy = { baseMs: 1000, maxMs: 60_000 };
    expect(retryDelayMs(1, policy, () => 0)).toBe(500);
    expect(retryDelayMs(1, policy, () => 1)).toBe(1000);
    expect(retryDelayMs(3, policy, () => 0.5)).toBe(3000);
    expect(retryDelayMs(30, policy, () => 1)).toBe(60_000);
  });

  it('a job over its timeout is rolled back and retried', async () => {
    const t = await tenant('jq-timeout');
    fx.tenantry.jobs.define('timeout.slow', {
      maxAttempts: 1,
      timeoutMs: 100,
      run: async (_p, job) => {
        await job.tx.query("INSERT INTO items (title) VALUES ('too late')");
        await new Promise((resolve) => setTimeout(resolve, 1000));
      },
    });
    const id = await fx.tenantry.jobs.enqueue(t.id, 'timeout.slow', {});
    await fx.tenantry.jobs.worker().drain();
    expect(await fx.tenantry.jobs.get(id)).toMatchObject({ state: 'failed' });
    expect((await fx.tenantry.jobs.get(id)).lastError).toMatch(/timeout/);
    expect((await fx.tenantry.transaction(t, (tx) => tx.query('SELECT 1 FROM items'))).rows).toEqual([]);
  });

  it('cancel: a pending job never runs; a running one is aborted and rolled back; progress is visible', async () => {
    const t = await tenant('jq-cancel');
    let started = false;
    fx.tenantry.jobs.define('cancel.long', {
      run: async (_p, job) => {
        await job.tx.query("INSERT INTO items (title) VALUES ('cancelled work')");
        await job.progress({ done: 1, of: 10 });
        started = true;
        await new Promise((resolve) => job.signal.addEventListener('abort', resolve));
        throw job.signal.reason;
      },
    });
    const pending = await fx.tenantry.jobs.enqueue(t.id, 'cancel.long', {}, { runAt: new Date(Date.now() + 60_000) });
    expect((await fx.tenantry.jobs.cancel(pending, { tenantId: t.id })).state).toBe('cancelled');
    const id = await fx.tenantry.jobs.enqueue(t.id, 'cancel.long', {});
    const worker = fx.tenantry.jobs.worker({ leaseMs: 300, pollIntervalMs: 50 });
    await worker.start();
    await until(() => started);
    expect((await fx.tenantry.jobs.get(id)).progress).toEqual({ done: 1, of: 10 });
    await fx.tenantry.jobs.cancel(id);
    await until(async () => (await fx.tenantry.jobs.get(id)).state === 'cancelled');
    await worker.close();
    expect((await fx.tenantry.transaction(t, (tx) => tx.query('SELECT 1 FROM items'))).rows).toEqual([]);
  });

  it('graceful shutdown: a job still running after the timeout is rolled back and released, its attempt given back', async () => {
    const t = await tenant('jq-shutdown');
    let started = false;
    fx.tenantry.jobs.define('shutdown.long', {
      run: async (_p, job) => {
        await job.tx.query("INSERT INTO items (title) VALUES ('half done')");
        started = true;
        await new Promise((resolve) => setTimeout(resolve, 60_000));
      },
    });
    const id = await fx.tenantry.jobs.enqueue(t.id, 'shutdown.long', {});
    const worker = fx.tenantry.jobs.worker({ shutdownTimeoutMs: 100, pollIntervalMs: 50 });
    await worker.start();
    await until(() => started);
    await worker.close();
    expect(await fx.tenantry.jobs.get(id)).toMatchObject({ state: 'pending', attempts: 0 });
    expect((await fx.tenantry.transaction(t, (tx) => tx.query('SELECT 1 FROM items'))).rows).toEqual([]);
    await fx.tenantry.jobs.cancel(id);
  });

  it('priorities order the jobs inside a tenant', async () => {
    const t = await tenant('jq-priority');
    const order: number[] = [];
    fx.tenantry.jobs.define('priority.probe', {
      schema: z.object({ p: z.number() }),
      run: async ({ p }) => {
        order.push(p);
      },
    });
    for (const p of [0, 5, -3, 10]) await fx.tenantry.jobs.enqueue(t.id, 'priority.probe', { p }, { priority: p });
    await fx.tenantry.jobs.worker().drain();
    expect(order).toEqual([10, 5, 0, -3]);
  });
});

describe('lifecycle', () => {
  it('suspend: the jobs wait; resume: they run; hard delete: they are gone', async () => {
    const t = await tenant('jq-suspend');
    const ran: string[] = [];
    fx.tenantry.jobs.define('suspend.probe', {
      run: async () => {
        ran.push(getTenant().slug);
      },
    });
    await fx.tenantry.jobs.enqueue(t.id, 'suspend.probe', {});
    await fx.tenantry.tenants.suspend(t.id);
    await fx.tenantry.jobs.enqueue(t.id, 'suspend.probe', {}); // a suspended tenant may still receive jobs
    const worker = fx.tenantry.jobs.worker();
    await worker.drain();
    expect(ran).toEqual([]);
    expect((await jobRows(t.id)).map((r) => r.state)).toEqual(['pending', 'pending']);
    await fx.tenantry.tenants.resume(t.id);
    await worker.drain();
    expect(ran).toEqual(['jq-suspend', 'jq-suspend']);

    await fx.tenantry.jobs.enqueue(t.id, 'suspend.probe', {});
    await fx.tenantry.jobs.schedule(t.id, 'every-second', { type: 'suspend.probe', cron: '* * * * * *' });
    await fx.tenantry.eraseTenant(t.id);
    const { rows } = await fx.tenantry.adminPool.query(
      `SELECT (SELECT count(*) FROM tenantry.jobs WHERE tenant_id = $1)::int AS jobs,
              (SELECT count(*) FROM tenantry.job_queues WHERE tenant_id = $1)::int AS queues,
              (SELECT count(*) FROM tenantry.job_schedules WHERE tenant_id = $1)::int AS schedules`,
      [t.id],
    );
    expect(rows[0]).toEqual({ jobs: 0, queues: 0, schedules: 0 });
  });

  it('a cron schedule enqueues one job per tick, whatever the number of workers', async () => {
    const t = await tenant('jq-cron');
    fx.tenantry.jobs.define('cron.tick', { run: () => {} });
    await expect(
      fx.tenantry.jobs.schedule(t.id, 'bad', { type: 'cron.tick', cron: 'every day' }),
    ).rejects.toMatchObject({ code: 'USAGE_ERROR' });
    const s = await fx.tenantry.jobs.schedule(t.id, 'tick', { type: 'cron.tick', cron: '* * * * * *' });
    expect(s.nextRunAt.getTime()).toBeGreaterThan(Date.now() - 1000);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const [a, b] = [fx.tenantry.jobs.worker(), fx.tenantry.jobs.worker()];
    await Promise.all([a.drain(), b.drain()]);
    const rows = (await jobRows(t.id)).filter((r) => r.type === 'cron.tick');
    expect(rows).toHaveLength(1);
    expect(rows[0]?.state).toBe('completed');
    expect(await fx.tenantry.jobs.unschedule(t.id, 'tick')).toBe(true);
    expect(await fx.tenantry.jobs.schedules(t.id)).toEqual([]);
  });
});

describe('fairness', () => {
  it('per-tenant cap: a tenant never runs more than its plan allows, and does not block the others', async () => {
    const busy = await tenant('jq-cap-busy');
    const quiet = await tenant('jq-cap-quiet');
    let now = 0;
    let max = 0;
    let quietDone = 0;
    fx.tenantry.jobs.define('cap.work', {
      run: async () => {
        if (getTenant().id === quiet.id) {
          quietDone++;
          return;
        }
        now++;
        max = Math.max(max, now);
        await new Promise((resolve) => setTimeout(resolve, 30));
        now--;
      },
    });
    for (let i = 0; i < 12; i++) await fx.tenantry.jobs.enqueue(busy.id, 'cap.work', {});
    const worker = fx.tenantry.jobs.worker({ concurrency: 4, defaultConcurrency: 2, pollIntervalMs: 20 });
    await worker.start();
    for (let i = 0; i < 3; i++) await fx.tenantry.jobs.enqueue(quiet.id, 'cap.work', {});
    await until(async () => (await jobRows(busy.id)).every((r) => r.state === 'completed'));
    await worker.close();
    expect(max).toBe(2);
    expect(quietDone).toBe(3);
    const { rows } = await fx.tenantry.adminPool.query('SELECT sum(running)::int AS n FROM tenantry.job_queues');
    expect(rows[0]).toEqual({ n: 0 });
  });

  it('plan weights: a tenant of weight 3 gets three claims for each one of a tenant of weight 1', async () => {
    const pro = await fx.tenantry.tenants.create({ slug: 'jq-weight-pro', name: 'Pro', plan: 'pro' });
    const free = await tenant('jq-weight-free');
    const order: string[] = [];
    fx.tenantry.jobs.define('weight.work', {
      run: async () => {
        order.push(getTenant().plan);
      },
    });
    for (let i = 0; i < 30; i++) {
      await fx.tenantry.jobs.enqueue(pro.id, 'weight.work', {});
      await fx.tenantry.jobs.enqueue(free.id, 'weight.work', {});
    }
    await fx.tenantry.jobs.worker({ concurrency: 1, plans: { pro: { weight: 3 } } }).drain();
    const first = order.slice(0, 20);
    expect(first.filter((p) => p === 'pro').length).toBe(15);
    expect(order).toHaveLength(60);
  });

  it('A enqueues 5,000, then 20 others enqueue 10 each: every B job finishes before half of A is done', async () => {
    const a = await tenant('jq-fair-a');
    const bs: TenantRecord[] = [];
    for (let i = 0; i < 20; i++) bs.push(await tenant(`jq-fair-b${i}`));
    let aDone = 0;
    let bDone = 0;
    let aDoneWhenLastB = -1;
    fx.tenantry.jobs.define('fair.work', {
      run: async (_p, job) => {
        await job.tx.query('SELECT 1');
        if (job.tenant.id === a.id) aDone++;
        else if (++bDone === 200) aDoneWhenLastB = aDone;
      },
    });
    // A's burst through the same function as enqueue, in one statement.
    await fx.tenantry.adminPool.query(
      `SELECT tenantry.job_insert($1, 'fair.work', '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL) FROM generate_series(1, 5000)`,
      [a.id],
    );
    const worker = fx.tenantry.jobs.worker({ concurrency: 4, defaultConcurrency: 4, pollIntervalMs: 50 });
    await worker.start();
    await until(() => aDone >= 50);
    for (const b of bs) for (let i = 0; i < 10; i++) await fx.tenantry.jobs.enqueue(b.id, 'fair.work', { i });
    await until(() => bDone === 200, 120_000);
    await worker.close();
    expect(aDoneWhenLastB).toBeGreaterThan(0);
    expect(aDoneWhenLastB).toBeLessThan(2500);
    const stats = await fx.tenantry.jobs.stats({ tenantId: a.id });
    expect(stats[0]?.backlog).toBeGreaterThan(0);
  }, 180_000);
});

describe('locks', () => {
  it('withLock serialises one tenant, not two tenants; wait: false is LOCK_BUSY', async () => {
    const [t1, t2] = [await tenant('jq-lock-1'), await tenant('jq-lock-2')];
    const { withTenant } = await import('../src/index.ts');
    const events: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = withTenant(t1, () =>
      fx.tenantry.locks.withLock('report', async () => {
        events.push('t1 in');
        await held;
        events.push('t1 out');
      }),
    );
    await until(() => events.includes('t1 in'));
    await withTenant(t2, () => fx.tenantry.locks.withLock('report', async () => events.push('t2 in')));
    await expect(
      withTenant(t1, () => fx.tenantry.locks.withLock('report', async () => {}, { wait: false })),
    ).rejects.toMatchObject({ code: 'LOCK_BUSY' });
    await expect(
      withTenant(t1, () => fx.tenantry.locks.withLock('report', async () => {}, { timeoutMs: 50 })),
    ).rejects.toMatchObject({ code: 'LOCK_BUSY' });
    const second = withTenant(t1, () => fx.tenantry.locks.withLock('report', async () => events.push('t1 again')));
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    await Promise.all([first, second]);
    expect(events).toEqual(['t1 in', 't2 in', 't1 out', 't1 again']);
    await expect(fx.tenantry.locks.withLock('report', async () => {})).rejects.toMatchObject({
      code: 'NO_TENANT_CONTEXT',
    });
  });
});
