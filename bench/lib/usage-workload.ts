import type { TenantContext, Tenantry } from '../../packages/tenantry/src/index.ts';
import type { BenchDB } from './dataset.ts';
import { pick, type Side, type SideCheck, type SideEnv, type Workload, type WorkloadData } from './workloads.ts';

/** The target of the usage workload: accounting on / off, same run, median latency. */
export const USAGE_TARGET = 1.03;

interface Params {
  readonly tenant: TenantContext;
  readonly id: string;
}

/**
 * The core's tenant transaction (point lookup by id through Kysely `tx.db`) on three
 * Tenantry instances of the same database, alternating in the same run:
 * - `a`: usage accounting off (`usage: false`) — the reference here;
 * - `b`: the default — per-tenant counters;
 * - `b-named`: counters and `application_name` naming the tenant (`usage: { applicationName: true }`,
 *   what `tenantry serve` runs).
 * The ratio b/a is the cost of accounting (target ≤ {@link USAGE_TARGET}); b-named against b
 * is what `application_name` costs.
 */
export function usageWorkload(data: WorkloadData): Workload {
  const { tenants, sample } = data;
  const next = (): Params => {
    const row = pick(sample);
    return { tenant: tenants[row.tenant] as TenantContext, id: row.id };
  };
  const lookup = (tenantry: Tenantry<BenchDB>, p: Params) =>
    tenantry.transaction(p.tenant, (tx) =>
      tx.db.selectFrom('items').select(['id', 'title', 'description', 'created_at']).where('id', '=', p.id).execute(),
    );
  const instances = (env: SideEnv): [string, string, Tenantry<BenchDB>][] => {
    if (!env.usage) throw new Error('the usage workload needs the usage-off instances (openEnv with usage sides)');
    return [
      ['a', 'tenantry.transaction + Kysely, usage accounting off', env.usage.off],
      ['b', 'same, usage counters on: the default', env.tenantry],
      ['b-named', 'same, counters + application_name (applicationName: true)', env.usage.named],
    ];
  };
  return {
    key: 'usage',
    title: '6. point lookup, usage accounting off (a) / counters (b) / counters + application_name (b-named)',
    writes: false,
    sides: (env): Side[] => instances(env).map(([key, label, t]) => ({ key, label, run: () => lookup(t, next()) })),
    async check(env): Promise<SideCheck[]> {
      const p = next();
      const out: SideCheck[] = [];
      for (const [key, , t] of instances(env)) {
        const rows = await lookup(t, p);
        out.push({ key, rows: rows.length, ids: rows.map((r) => r.id).join(','), plan: undefined });
      }
      return out;
    },
  };
}
