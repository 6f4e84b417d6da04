import { definePlans, type PlanCatalog } from '../../packages/tenantry/src/admit/plans.ts';
import type { IsolationTier, Tenantry } from '../../packages/tenantry/src/index.ts';
import type { ApiKey, Model, TenantState } from './model.ts';
import { type IsolationFuzzOptions, RunError } from './options.ts';

/** The plan the fuzzer's tenants are on: a rate limit no run reaches, so a 429 never hides an answer. */
export const FUZZ_PLAN = 'isolation-fuzz';

/** Plans for `createServer(tenantry, { plans })` of the server a run talks to. */
export const fuzzPlans = (): PlanCatalog => definePlans({ [FUZZ_PLAN]: { requestsPerMinute: 1_000_000_000 } });

/** Tenants per tier when the options do not say. */
export const DEFAULT_TENANTS: Readonly<Record<IsolationTier, number>> = { pool: 6, schema: 4, database: 2 };

/**
 * Creates the run's tenants on the three tiers, each with a primary key, a spare key (which
 * `ctl.rotate-key` rotates) and a key revoked before the run, and adds them to the model.
 */
export async function createTenants(
  tenantry: Tenantry<unknown>,
  model: Model,
  options: Pick<IsolationFuzzOptions, 'tenants' | 'slugPrefix'>,
): Promise<void> {
  const counts = options.tenants ?? DEFAULT_TENANTS;
  const tiers = (['pool', 'schema', 'database'] as const).flatMap((tier) =>
    Array.from({ length: counts[tier] }, () => tier),
  );
  if (tiers.length < 2 || tiers.length > 99) throw new RunError('between 2 and 99 tenants');
  const scopes = ['items:read', 'items:write'];
  for (const [i, tier] of tiers.entries()) {
    const record = await tenantry.tenants.create({
      slug: `${options.slugPrefix ?? 'iso-fuzz'}-${String(i).padStart(2, '0')}-${tier}`,
      name: `Isolation fuzz ${i} (${tier})`,
      tier,
      plan: FUZZ_PLAN,
    });
    const key = async (name: string): Promise<ApiKey> => {
      const created = await tenantry.apiKeys.create(record.id, { name, environment: 'test', scopes });
      return { key: created.key, id: created.record.id };
    };
    const primary = await key('primary');
    const spare = await key('spare 0');
    // One key revoked before the run, so revoked-key checks have a subject from the start.
    const doomed = await key('revoked before the run');
    await tenantry.apiKeys.revoke(record.id, doomed.id);
    const t: TenantState = {
      i,
      record,
      live: new Map(),
      gone: new Map(),
      inflight: new Map(),
      reserved: new Set(),
      uncertain: new Set(),
      planted: new Set(),
      primary,
      spare,
      revoked: [{ key: doomed.key, at: Date.now() }],
      rotating: false,
    };
    model.add(t);
  }
}
