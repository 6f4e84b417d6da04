import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { type AppDB, appMigrations } from '../../../test-support/fixture.ts';
import { type TenantRecord, Tenantry } from '../src/index.ts';

/**
 * The runtime pool's lender: schema-tier tenants come back to the connections that served
 * them (so each backend keeps a bounded, warm set of schemas), one busy tenant cannot take
 * every connection nor jump the queue, and a connection that served one tenant serves the
 * next with the next one's context, rows and schema only.
 */

let database: TestDatabase;
let tenantry: Tenantry<AppDB>;
/** Schema-tier tenants, each with one item titled with its slug. */
let schemaTenants: TenantRecord[];
let poolTenant: TenantRecord;

const POOL_MAX = 4;

function connect(pool: { max: number; maxPerTenant?: number; affinityWaitMs?: number }): Promise<Tenantry<AppDB>> {
  return Tenantry.connect<AppDB>({
    databaseUrl: database.url,
    secret: database.secret,
    roles: database.roles,
    migrations: appMigrations,
    pool,
  });
}

/** The backend a transaction of `tenant` ran on, and what it saw. */
async function probe(t: Tenantry<AppDB>, tenant: TenantRecord) {
  return t.transaction(tenant, async (tx) => {
    const { rows } = await tx.query<{ pid: number; path: string; titles: string[] }>(
      `SELECT pg_backend_pid() AS pid, current_setting('search_path') AS path,
              (SELECT coalesce(array_agg(title ORDER BY title), '{}') FROM items) AS titles`,
    );
    return rows[0] as { pid: number; path: string; titles: string[] };
  });
}

/** Fills the pool: `n` transactions at once on distinct tenants, so `n` connections are open and idle after. */
async function openConnections(t: Tenantry<AppDB>, n: number): Promise<void> {
  const tenants = [poolTenant, ...schemaTenants].slice(0, n);
  let inside = 0;
  let release: () => void = () => {};
  const all = new Promise<void>((resolve) => {
    release = resolve;
  });
  await Promise.all(
    tenants.map((tenant) =>
      t.transaction(tenant, async (tx) => {
        await tx.query('SELECT 1');
        if (++inside === n) release();
        await all;
      }),
    ),
  );
}

beforeAll(async () => {
  database = await createTestDatabase('affine_lender');
  tenantry = await connect({ max: POOL_MAX });
  await tenantry.setup();
  await tenantry.migrate();
  schemaTenants = [];
  for (let i = 0; i < 10; i++) {
    schemaTenants.push(await tenantry.tenants.create({ slug: `aff-${i}`, name: `Affine ${i}`, tier: 'schema' }));
  }
  poolTenant = await tenantry.tenants.create({ slug: 'aff-pool', name: 'Pool tenant' });
  for (const tenant of [...schemaTenants, poolTenant]) {
    await tenantry.transaction(tenant, (tx) => tx.db.insertInto('items').values({ title: tenant.slug }).execute());
  }
}, 120_000);

afterAll(async () => {
  await tenantry?.close();
  await database?.drop();
});

describe('tenant affinity', () => {
  it('brings each schema-tier tenant back to the same backend, and spreads tenants over backends', async () => {
    await openConnections(tenantry, POOL_MAX);
    const pids = new Map<string, Set<number>>();
    // Interleaved: with plain most-recently-used pooling every tenant would land on one backend.
    for (let round = 0; round < 4; round++) {
      for (const tenant of schemaTenants) {
        const { pid } = await probe(tenantry, tenant);
        pids.set(tenant.id, (pids.get(tenant.id) ?? new Set()).add(pid));
      }
    }
    for (const tenant of schemaTenants) expect(pids.get(tenant.id)?.size, tenant.slug).toBe(1);
    const used = new Set([...pids.values()].map((s) => [...s][0]));
    expect(used.size).toBeGreaterThanOrEqual(2);
  });

  it('a connection that served tenant A serves tenant B with B’s context only', async () => {
    await openConnections(tenantry, POOL_MAX);
    const seen = new Map<number, TenantRecord[]>();
    for (const tenant of schemaTenants) {
      const { pid } = await probe(tenantry, tenant);
      seen.set(pid, [...(seen.get(pid) ?? []), tenant]);
    }
    // Ten tenants over four backends: some backend serves at least two of them.
    const [a, b] = [...seen.values()].find((group) => group.length >= 2) as [TenantRecord, TenantRecord];
    const first = await probe(tenantry, a);
    const second = await probe(tenantry, b);
    const pool = await probe(tenantry, poolTenant);
    expect(second.pid).toBe(first.pid);
    expect(first.titles).toEqual([a.slug]);
    expect(second.titles).toEqual([b.slug]);
    expect(second.path).not.toBe(first.path);
    expect(second.path).not.toContain(first.path.split(',')[0]);
    expect(pool.titles).toEqual([poolTenant.slug]);
    // And the A-context is gone from the backend once A's transaction ended.
    const again = await probe(tenantry, b);
    expect(again.titles).toEqual([b.slug]);
  });
});

/** Pids of the backends each schema-tier tenant ran on, with as many transactions at once as connections. */
async function underLoad(t: Tenantry<AppDB>, loops: number, transactions: number): Promise<Map<string, Set<number>>> {
  const pids = new Map<string, Set<number>>();
  const busy = new Set<number>();
  let started = 0;
  await Promise.all(
    Array.from({ length: loops }, async (_, loop) => {
      // Each loop walks the tenants from its own offset; no two loops on one tenant at once.
      let i = loop * 3;
      while (started++ < transactions) {
        while (busy.has(i % schemaTenants.length)) i++;
        const k = i++ % schemaTenants.length;
        busy.add(k);
        try {
          const tenant = schemaTenants[k] as TenantRecord;
          const { pid } = await probe(t, tenant);
          pids.set(tenant.id, (pids.get(tenant.id) ?? new Set()).add(pid));
        } finally {
          busy.delete(k);
        }
      }
    }),
  );
  return pids;
}

describe('tenant affinity under load', () => {
  it('keeps each schema-tier tenant on its own backend when every connection is busy', async () => {
    // A wait bound far above a transaction here, so a slow machine never falls back.
    const t = await connect({ max: POOL_MAX, affinityWaitMs: 5_000 });
    try {
      await openConnections(t, POOL_MAX);
      const pids = await underLoad(t, POOL_MAX, 200);
      // Taking whatever connection was idle put every tenant on every backend here.
      for (const tenant of schemaTenants) expect(pids.get(tenant.id)?.size, tenant.slug).toBe(1);
    } finally {
      await t.close();
    }
  });

  it('a tenant waits for its own connection, at most pool.affinityWaitMs, then takes another', async () => {
    const patient = await connect({ max: POOL_MAX, affinityWaitMs: 5_000 });
    const hurried = await connect({ max: POOL_MAX, affinityWaitMs: 50 });
    try {
      for (const t of [patient, hurried]) {
        await openConnections(t, POOL_MAX);
        // One at a time, every connection idle: each tenant lands on its own connection.
        const byPid = new Map<number, TenantRecord[]>();
        for (const tenant of schemaTenants) {
          const { pid } = await probe(t, tenant);
          byPid.set(pid, [...(byPid.get(pid) ?? []), tenant]);
        }
        // Ten tenants over four connections: two of them share one.
        const [holder, waiter] = [...byPid.values()].find((group) => group.length >= 2) as [TenantRecord, TenantRecord];
        const home = (await probe(t, waiter)).pid;
        const order: string[] = [];
        const holding = t.transaction(holder, async (tx) => {
          await tx.query('SELECT pg_sleep(0.4)');
          order.push('holder');
        });
        await new Promise((resolve) => setTimeout(resolve, 100)); // the holder is inside
        const seen = await probe(t, waiter);
        order.push('waiter');
        await holding;
        if (t === patient) {
          expect(seen.pid).toBe(home);
          expect(order).toEqual(['holder', 'waiter']);
        } else {
          expect(seen.pid).not.toBe(home);
          expect(order).toEqual(['waiter', 'holder']);
        }
        expect(seen.titles).toEqual([waiter.slug]);
      }
    } finally {
      await patient.close();
      await hurried.close();
    }
  });
});

describe('fairness', () => {
  it('one busy tenant holds at most pool.maxPerTenant connections; another tenant is served at once', async () => {
    const busy = schemaTenants[0] as TenantRecord;
    const other = schemaTenants[1] as TenantRecord;
    const lender = tenantry.runtimeLender;
    let maxHeld = 0;
    const sleeps = Array.from({ length: 8 }, () =>
      tenantry.transaction(busy, async (tx) => {
        maxHeld = Math.max(maxHeld, lender.heldBy(busy.id));
        await tx.query('SELECT pg_sleep(0.3)');
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    let busyDone = 0;
    for (const s of sleeps) void s.then(() => busyDone++);
    const titles = await tenantry.transaction(other, async (tx) => {
      const { rows } = await tx.query<{ title: string }>('SELECT title FROM items');
      return rows.map((r) => r.title);
    });
    // The other tenant's transaction ran while the busy one still had most of its work queued.
    expect(busyDone).toBeLessThan(8);
    expect(titles).toEqual([other.slug]);
    await Promise.all(sleeps);
    expect(maxHeld).toBe(POOL_MAX - 1);
  });

  it('when connections are short, the next free one goes to the next waiting tenant, not the busy one’s queue', async () => {
    const fair = await connect({ max: 2, maxPerTenant: 2 });
    try {
      const busy = schemaTenants[2] as TenantRecord;
      const other = schemaTenants[3] as TenantRecord;
      const started: string[] = [];
      const work = (tenant: TenantRecord) =>
        fair.transaction(tenant, async (tx) => {
          started.push(tenant.slug);
          await tx.query('SELECT pg_sleep(0.2)');
        });
      const busyWork = Array.from({ length: 6 }, () => work(busy));
      await new Promise((resolve) => setTimeout(resolve, 50)); // two run, four wait
      const otherWork = work(other);
      await Promise.all([...busyWork, otherWork]);
      // Plain FIFO would start it seventh; round robin over waiting tenants starts it third.
      expect(started.indexOf(other.slug)).toBe(2);
    } finally {
      await fair.close();
    }
  });
});
