/**
 * The soak's tenants and the operator that changes them under load: moves between tiers and
 * suspensions. Each change opens a window on the tenant during which its requests may answer
 * either the old state's status or the new one's (the HTTP server learns of the change from
 * the change feed, so a request in flight may see either); outside windows, only one is right.
 */
import type { IsolationTier, Tenantry } from '../../packages/tenantry/src/index.ts';
import { log } from './print.ts';

/** How long after a change answers of the state before it are still accepted. */
export const GRACE_MS = 2_000;
/** How long a suspension lasts. */
const SUSPEND_MS = 10_000;
const NEXT_TIER: Record<IsolationTier, IsolationTier> = { pool: 'schema', schema: 'database', database: 'pool' };

export interface SoakTenant {
  readonly id: string;
  readonly slug: string;
  readonly key: string;
  /** Items created before the load and never changed: what reads and cross-tenant reads aim at. */
  readonly seeded: readonly string[];
  tier: IsolationTier;
  suspended: boolean;
  moving: boolean;
  /** The last change's window (performance.now() times); `windowEnd` is Infinity while it runs. */
  windowStart: number;
  windowEnd: number;
}

/** What an answer means for a tenant's request that ran from `t0` to `t1`. */
export type Verdict = 'ok' | 'refused' | 'error';

export function judge(
  tenant: SoakTenant,
  expected: number,
  status: number,
  code: string | undefined,
  t0: number,
  t1: number,
): Verdict {
  const inWindow = t0 <= tenant.windowEnd && t1 >= tenant.windowStart;
  const suspendedAnswer = status === 403 && code === 'TENANT_SUSPENDED';
  const movingAnswer = status === 503 && (code === 'TENANT_MOVING' || code === 'TENANT_MOVED');
  if (status === expected && (!tenant.suspended || inWindow)) return 'ok';
  if (suspendedAnswer && (tenant.suspended || inWindow)) return 'refused';
  if (movingAnswer && (tenant.moving || inWindow)) return 'refused';
  return 'error';
}

/** Counts of what the operator did, for the samples. */
export interface ChurnCounts {
  moves: number;
  suspensions: number;
  failures: number;
  /** Longest freeze of a move, in ms. */
  maxFrozenMs: number;
}

/**
 * Every `everyMs`, alternately moves the next tenant of `movers` to its next tier
 * (pool → schema → database → pool) or suspends a random other tenant for 10 s. A failed
 * move or suspension is counted as a failure (and the soak then fails).
 */
export function startChurn(
  tenantry: Tenantry,
  tenants: readonly SoakTenant[],
  movers: readonly SoakTenant[],
  everyMs: number,
  random: () => number,
): { counts: ChurnCounts; stop(): Promise<void> } {
  const counts: ChurnCounts = { moves: 0, suspensions: 0, failures: 0, maxFrozenMs: 0 };
  const running = new Set<Promise<void>>();
  let tick = 0;
  let nextMover = 0;
  const track = (work: Promise<void>) => {
    const p = work.catch((error: unknown) => {
      counts.failures++;
      log(`churn failed: ${(error as Error).message}`);
    });
    running.add(p);
    void p.finally(() => running.delete(p));
  };
  const open = (t: SoakTenant) => {
    t.windowStart = performance.now();
    t.windowEnd = Number.POSITIVE_INFINITY;
  };
  const close = (t: SoakTenant) => {
    t.windowEnd = performance.now() + GRACE_MS;
  };

  const move = async (t: SoakTenant) => {
    const to = NEXT_TIER[t.tier];
    t.moving = true;
    open(t);
    try {
      const report = await tenantry.moveTenant(t.id, { to, actor: 'soak' });
      t.tier = to;
      counts.moves++;
      counts.maxFrozenMs = Math.max(counts.maxFrozenMs, report.frozenMs);
    } finally {
      t.moving = false;
      close(t);
    }
  };
  const suspend = async (t: SoakTenant) => {
    open(t);
    try {
      await tenantry.tenants.suspend(t.id, { actor: 'soak' });
      t.suspended = true;
    } finally {
      close(t);
    }
    await new Promise((resolve) => setTimeout(resolve, SUSPEND_MS));
    open(t);
    try {
      await tenantry.tenants.resume(t.id, { actor: 'soak' });
      t.suspended = false;
      counts.suspensions++;
    } finally {
      close(t);
    }
  };

  const busy = (t: SoakTenant) => t.moving || t.suspended || t.windowEnd === Number.POSITIVE_INFINITY;
  const timer = setInterval(() => {
    tick++;
    if (tick % 2 === 1) {
      const t = movers[nextMover++ % movers.length] as SoakTenant;
      if (!busy(t)) track(move(t));
    } else {
      const candidates = tenants.filter((t) => !busy(t) && !movers.includes(t));
      const t = candidates[Math.floor(random() * candidates.length)];
      if (t) track(suspend(t));
    }
  }, everyMs);

  return {
    counts,
    async stop() {
      clearInterval(timer);
      await Promise.all(running);
    },
  };
}
