import type { Command } from 'commander';
import { TenantryError } from '../../errors/catalog.ts';
import { defineItemJobs } from '../../example/item-jobs.ts';
import type { JobQueue } from '../../jobs/job-queue.ts';
import type { JobState } from '../../jobs/job-types.ts';
import type { Tenantry } from '../../tenantry.ts';
import { connectFromEnvironment, note, withTenantry } from '../run.ts';

function wholeNumber(value: string, name: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new TenantryError('INVALID_INPUT', `${name} is a whole number ≥ ${min}`);
  return n;
}

/**
 * Defines the example application's job types, then the application's own from `path`:
 * a module whose `defineJobs` (or default) export takes the job queue.
 */
export async function defineJobs(jobs: JobQueue, path: string | undefined): Promise<void> {
  defineItemJobs(jobs);
  if (!path) return;
  const { pathToFileURL } = await import('node:url');
  const { resolve } = await import('node:path');
  const mod = (await import(pathToFileURL(resolve(path)).href)) as {
    defineJobs?: (jobs: JobQueue) => unknown;
    default?: (jobs: JobQueue) => unknown;
  };
  const define = mod.defineJobs ?? mod.default;
  if (typeof define !== 'function') throw new Error(`${path} exports no \`defineJobs(jobs)\` function`);
  await define(jobs);
}

/** Worker options from the environment: `TENANTRY_JOB_PLANS` is JSON `{ "<plan>": { weight, concurrency } }`. */
export function workerPlans(): Record<string, { weight?: number; concurrency?: number }> | undefined {
  const raw = process.env.TENANTRY_JOB_PLANS;
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as Record<string, { weight?: number; concurrency?: number }>;
  } catch {
    throw new TenantryError('CONFIG_INVALID', 'TENANTRY_JOB_PLANS is JSON: {"pro": {"weight": 4, "concurrency": 8}}');
  }
}

async function tenantId(t: Tenantry, ref: string | undefined): Promise<string | undefined> {
  return ref === undefined ? undefined : (await t.tenants.get(ref)).id;
}

/** `tenantry jobs list|retry|cancel|stats` and `tenantry worker`. */
export function registerJobs(program: Command): void {
  const jobs = program.command('jobs').description('inspect and operate the background job queue');

  jobs
    .command('list')
    .description('jobs, newest first')
    .option('--tenant <tenant>', "only this tenant's jobs (id or slug)")
    .option('--state <state>', 'pending | running | completed | failed | cancelled')
    .option('--type <type>', 'only this job type')
    .option('--limit <n>', 'how many, 1–500', '50')
    .option('--json', 'print JSON')
    .action(async (o: { tenant?: string; state?: string; type?: string; limit: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const list = await t.jobs.list({
          tenantId: await tenantId(t, o.tenant),
          state: o.state as JobState | undefined,
          type: o.type,
          limit: wholeNumber(o.limit, '--limit', 1),
        });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        for (const j of list) {
          const error = j.lastError ? `  ${j.lastError}` : '';
          process.stdout.write(
            `${j.id}  ${j.tenantId}  ${j.type}  ${j.state}  attempts ${j.attempts}/${j.maxAttempts}  ${j.createdAt.toISOString()}${error}\n`,
          );
        }
      });
    });

  jobs
    .command('retry <id>')
    .description('run a dead-lettered or cancelled job again')
    .action(async (id: string) => {
      await withTenantry(async (t) => {
        const job = await t.jobs.retry(id);
        process.stdout.write(`job ${job.id} is ${job.state}\n`);
      });
    });

  jobs
    .command('cancel <id>')
    .description('cancel a pending job, or ask a running one to stop')
    .action(async (id: string) => {
      await withTenantry(async (t) => {
        const job = await t.jobs.cancel(id);
        process.stdout.write(`job ${job.id} is ${job.cancelRequested ? 'being cancelled' : job.state}\n`);
      });
    });

  jobs
    .command('stats')
    .description('backlog, running jobs, dead letters and oldest waiting age per tenant')
    .option('--tenant <tenant>', 'only this tenant (id or slug)')
    .option('--json', 'print JSON')
    .action(async (o: { tenant?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const stats = await t.jobs.stats({ tenantId: await tenantId(t, o.tenant) });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
          return;
        }
        process.stdout.write('tenant  plan  backlog  scheduled  running  failed  oldest(s)\n');
        for (const s of stats) {
          process.stdout.write(
            `${s.slug}  ${s.plan}  ${s.backlog}  ${s.scheduled}  ${s.running}  ${s.failed}  ${s.oldestAgeSeconds}\n`,
          );
        }
      });
    });

  program
    .command('worker')
    .description('run background job workers until SIGINT/SIGTERM (finishes or releases running jobs)')
    .option('--concurrency <n>', 'jobs at once (env TENANTRY_WORKERS)', process.env.TENANTRY_WORKERS ?? '4')
    .option('--jobs <module>', 'module exporting defineJobs(jobs): the application’s job types')
    .option('--order <order>', 'fair (across tenants, by plan weight) or fifo', 'fair')
    .action(async (o: { concurrency: string; jobs?: string; order: string }) => {
      if (o.order !== 'fair' && o.order !== 'fifo') throw new TenantryError('INVALID_INPUT', '--order is fair or fifo');
      const concurrency = wholeNumber(o.concurrency, '--concurrency', 1);
      const { tenantry, env } = await connectFromEnvironment();
      await defineJobs(tenantry.jobs, o.jobs);
      const plans = workerPlans();
      const worker = tenantry.jobs.worker({ concurrency, order: o.order, ...(plans ? { plans } : {}) });
      await worker.start();
      process.stdout.write(`Tenantry worker running ${concurrency} jobs at once\n`);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        note(`${signal}: finishing running jobs`);
        await tenantry.close(); // closes the worker first: running jobs finish or are released
        await env.embedded?.stop();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
    });
}
