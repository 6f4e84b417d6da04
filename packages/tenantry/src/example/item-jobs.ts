import type { JobQueue } from '../jobs/job-queue.ts';
import type { JobType } from '../jobs/job-types.ts';

/**
 * The example application's job type: `items.count` counts the tenant's items in the
 * job's tenant transaction (row-level security sees only that tenant's) and reports it
 * as progress. What `tenantry serve` and `tenantry worker` run out of the box.
 *
 * @example
 * ```ts
 * const count = defineItemJobs(tenantry.jobs);
 * await tenantry.jobs.enqueue('acme', count, {});
 * ```
 */
export function defineItemJobs(jobs: JobQueue): JobType<Record<string, never>> {
  return jobs.define<Record<string, never>>('items.count', {
    run: async (_payload, job) => {
      const { rows } = await job.tx.query<{ n: number }>('SELECT count(*)::int AS n FROM items');
      await job.progress({ items: rows[0]?.n ?? 0 });
      return rows[0]?.n ?? 0;
    },
  });
}
