import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverUrl } from '../../../test-support/database.ts';
import { isTenantryError, TenantryError } from '../src/errors/catalog.ts';
import { registerPoolMapMetrics } from '../src/http/metrics.ts';
import { type PooledConnection, PoolMap, type PoolMapOptions } from '../src/transaction/pool-map.ts';

const DATABASES = 60;
// Named as test-support names a test file's tenant databases (`…_<born>_<hex>_t_<n>`):
// global-setup of a run going on beside this one reads the creation time from the name and
// keeps them; a name it cannot read is dropped as a leftover, in the middle of this run.
const prefix = `tenantry_test_poolmap_${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(4).toString('hex')}_t_`;
const names = Array.from({ length: DATABASES }, (_, n) => `${prefix}${n}`);
/** `_` is a LIKE wildcard: escaped, the pattern matches this run's databases only. */
const likeOurs = `${prefix.replaceAll('_', '\\_')}%`;

let admin: pg.Client;

function urlOf(database: string): string {
  const url = new URL(serverUrl());
  url.pathname = `/${database}`;
  return url.toString();
}

/** The `config` argument of acquire() for the n-th test database. */
function configOf(n: number): () => pg.ClientConfig {
  return () => ({ connectionString: urlOf(names[n] as string) });
}

/** Server processes connected to this run's databases (or to one of them), as PostgreSQL counts them. */
async function backends(database?: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname LIKE $1 AND ($2::text IS NULL OR datname = $2)',
    [likeOurs, database ?? null],
  );
  return rows[0]?.n ?? 0;
}

/**
 * Runs statements over several admin connections at once. Each DROP DATABASE (and CREATE
 * DATABASE with the file-copy strategy) waits for a checkpoint, and concurrent ones share
 * it: 60 in a row take a minute on a busy 2-core machine.
 */
async function runSpread(statements: readonly string[], connections = 10): Promise<void> {
  const queue = [...statements];
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = new pg.Client({ connectionString: serverUrl() });
      await client.connect();
      try {
        for (let sql = queue.shift(); sql; sql = queue.shift()) await client.query(sql);
      } finally {
        await client.end();
      }
    }),
  );
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

function pid(conn: PooledConnection): number {
  return (conn.client as unknown as { processID: number }).processID;
}

async function currentDatabase(conn: PooledConnection): Promise<string> {
  const { rows } = await conn.client.query<{ db: string }>('SELECT current_database() AS db');
  return rows[0]?.db ?? '';
}

/**
 * acquire(), tried again while a connect is slower than a test's short `acquireTimeoutMs`
 * (a busy machine): the connection opens anyway and serves the next try of its key.
 */
async function acquirePatiently(
  map: PoolMap,
  key: string,
  config: () => pg.ClientConfig | Promise<pg.ClientConfig>,
): Promise<PooledConnection> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await map.acquire(key, config);
    } catch (error) {
      const slow = isTenantryError(error, 'POOL_CONNECT_FAILED') || isTenantryError(error, 'POOL_EXHAUSTED');
      if (!slow || attempt === 50) throw error;
    }
  }
}

/** A map for one test, closed afterwards whatever happens. */
async function withMap(options: Partial<PoolMapOptions>, fn: (map: PoolMap) => Promise<void>): Promise<void> {
  const map = new PoolMap({ globalMax: 5, perPoolMax: 3, idleTimeoutMs: 10_000, acquireTimeoutMs: 5_000, ...options });
  try {
    await fn(map);
  } finally {
    await map.close();
  }
}

beforeAll(async () => {
  admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  const { rows } = await admin.query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v");
  // PostgreSQL 15 copies the template through shared buffers by default: 60 databases leave
  // ~450 MB of dirty pages for the checkpoints of the drops to write. Copying files does not.
  const strategy = (rows[0]?.v ?? 0) >= 150000 ? ' STRATEGY FILE_COPY' : '';
  await runSpread(names.map((name) => `CREATE DATABASE "${name}"${strategy}`));
});

afterAll(async () => {
  if (!admin) return;
  try {
    const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [
      likeOurs,
    ]);
    await runSpread(rows.map(({ datname }) => `DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`));
  } finally {
    await admin.end();
  }
});

describe('PoolMap', () => {
  it('holds 600 concurrent requests over 60 tenant databases to a budget of 20 connections', async () => {
    // The run takes 3–5 s on a busy 2-core machine: the first connection to a fresh
    // database builds its catalog caches, and a closed backend takes a while to exit (its slot
    // stays taken until it has). The 10 s wait keeps a slower machine from failing the test.
    const map = new PoolMap({ globalMax: 20, perPoolMax: 3, idleTimeoutMs: 10_000, acquireTimeoutMs: 10_000 });
    let maxBackends = 0;
    let samples = 0;
    let maxOpen = 0;
    let maxInUse = 0;
    const watchStats = () => {
      const stats = map.stats();
      maxOpen = Math.max(maxOpen, stats.connectionsOpen);
      maxInUse = Math.max(maxInUse, stats.connectionsInUse);
    };
    const statsTimer = setInterval(watchStats, 1);
    let running = true;
    const sampler = (async () => {
      while (running) {
        maxBackends = Math.max(maxBackends, await backends());
        samples++;
        await sleep(20);
      }
    })();
    let served = 0;
    let exhausted = 0;
    try {
      await Promise.all(
        Array.from({ length: 600 }, async (_, i) => {
          // 37 is prime to 60: each database gets 10 requests, spread through the run.
          const n = (i * 37) % DATABASES;
          let conn: PooledConnection;
          try {
            conn = await map.acquire(`tenant-${n}`, configOf(n));
          } catch (error) {
            if (!isTenantryError(error, 'POOL_EXHAUSTED')) throw error;
            exhausted++;
            return;
          }
          watchStats();
          try {
            const { rows } = await conn.client.query<{ db: string }>(
              'SELECT pg_sleep(0.005), current_database() AS db',
            );
            // A connection never serves another key.
            expect(rows[0]?.db).toBe(names[n]);
            served++;
          } finally {
            conn.release();
          }
          watchStats();
        }),
      );
    } finally {
      running = false;
      clearInterval(statsTimer);
      await sampler;
      if (served + exhausted < 600) await map.close(); // a request failed: leave nothing open
    }
    expect(served + exhausted).toBe(600);
    expect(served).toBe(600);
    expect(samples).toBeGreaterThan(3);
    expect(maxBackends).toBeGreaterThan(0);
    expect(maxBackends).toBeLessThanOrEqual(20);
    expect(maxOpen).toBe(20); // the budget was used, and never exceeded
    expect(maxInUse).toBeLessThanOrEqual(20);
    const stats = map.stats();
    expect(stats.evictions).toBeGreaterThan(0);
    expect(stats).toMatchObject({ connectionsInUse: 0, waiters: 0 });
    expect(stats.connectionsOpen).toBeLessThanOrEqual(20);
    await map.close();
    expect(map.stats()).toMatchObject({ poolsOpen: 0, connectionsOpen: 0 });
    expect(await backends()).toBe(0);
  });

  it('fails a waiter with POOL_EXHAUSTED when the budget stays held, without losing a slot', async () => {
    await withMap({ globalMax: 2, perPoolMax: 1, acquireTimeoutMs: 200 }, async (map) => {
      const held = [await acquirePatiently(map, 'a', configOf(0)), await acquirePatiently(map, 'b', configOf(1))];
      const started = Date.now();
      const error = await map.acquire('c', configOf(2)).catch((e: unknown) => e);
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(error).toBeInstanceOf(TenantryError);
      expect(error).toMatchObject({ code: 'POOL_EXHAUSTED', status: 503 });
      expect((error as Error).message).toContain('no database connection free within 200 ms (global budget 2)');
      expect(map.stats()).toEqual({ poolsOpen: 2, connectionsOpen: 2, connectionsInUse: 2, waiters: 0, evictions: 0 });

      for (const conn of held) conn.release();
      expect(map.stats()).toMatchObject({ connectionsOpen: 2, connectionsInUse: 0 });
      const c = await acquirePatiently(map, 'c', configOf(2));
      expect(await currentDatabase(c)).toBe(names[2]);
      // One idle connection made way for it; the other is still idle for its key.
      expect(map.stats()).toEqual({ poolsOpen: 2, connectionsOpen: 2, connectionsInUse: 1, waiters: 0, evictions: 1 });
      expect(await backends()).toBe(2);
      c.release();
    });
  });

  it('hands a released connection to a waiter of its key, and otherwise makes way for the first waiter', async () => {
    await withMap({ globalMax: 2, perPoolMax: 2 }, async (map) => {
      const a1 = await map.acquire('a', configOf(0));
      const a2 = await map.acquire('a', configOf(0));
      const waitingB = map.acquire('b', configOf(1));
      const waitingA = map.acquire('a', configOf(0));
      await waitFor('both wait', () => map.stats().waiters === 2);
      // b waits longer, but a's connection is worth more to a's own waiter.
      const a1Pid = pid(a1);
      a1.release();
      const a3 = await waitingA;
      expect(pid(a3)).toBe(a1Pid);
      // No waiter of a is left: a's connection closes and b opens in its slot.
      a2.release();
      const b = await waitingB;
      expect(await currentDatabase(b)).toBe(names[1]);
      expect(map.stats()).toMatchObject({ connectionsOpen: 2, connectionsInUse: 2, waiters: 0, evictions: 1 });
      expect(await backends(names[0])).toBe(1);
      a3.release();
      b.release();
    });
  });

  it('reuses the most recently released connection of a key', async () => {
    await withMap({}, async (map) => {
      const first = await map.acquire('a', configOf(0));
      const second = await map.acquire('a', configOf(0));
      first.release();
      second.release();
      const again = await map.acquire('a', configOf(0));
      expect(pid(again)).toBe(pid(second));
      again.release();
      expect(() => again.release()).toThrow(/twice/);
      expect(map.stats()).toMatchObject({ poolsOpen: 1, connectionsOpen: 2, connectionsInUse: 0 });
    });
  });

  it('closePool closes idle connections now, a busy one on release, and opens afresh later', async () => {
    await withMap({}, async (map) => {
      const busy = await map.acquire('a', configOf(0));
      const idle = await map.acquire('a', configOf(0));
      const other = await map.acquire('b', configOf(1));
      const pids = [pid(busy), pid(idle)];
      idle.release();
      other.release();
      expect(await backends(names[0])).toBe(2);

      await map.closePool('a');
      expect(await backends(names[0])).toBe(1);
      expect(map.stats()).toMatchObject({ poolsOpen: 1, connectionsOpen: 2, connectionsInUse: 1 });
      // The borrowed connection keeps working until it is given back.
      expect(await currentDatabase(busy)).toBe(names[0]);
      busy.release();
      await waitFor('the busy connection is closed', () => map.stats().connectionsOpen === 1);
      expect(await backends(names[0])).toBe(0);
      expect(await backends(names[1])).toBe(1); // other keys are untouched

      const fresh = await map.acquire('a', configOf(0));
      expect(pids).not.toContain(pid(fresh));
      expect(await currentDatabase(fresh)).toBe(names[0]);
      expect(map.stats()).toMatchObject({ poolsOpen: 2, connectionsOpen: 2, connectionsInUse: 1 });
      fresh.release();
      await map.closePool('never-opened'); // a no-op
    });
  });

  it('drops an idle connection whose server process was terminated, without crashing', async () => {
    const errors: [string, string][] = [];
    await withMap({ onError: (error, key) => errors.push([key, error.message]) }, async (map) => {
      const conn = await map.acquire('a', configOf(0));
      const dead = pid(conn);
      conn.release();
      await admin.query('SELECT pg_terminate_backend($1)', [dead]);
      await waitFor('the map noticed', () => map.stats().connectionsOpen === 0);
      expect(errors).toHaveLength(1);
      expect(errors[0]?.[0]).toBe('a');
      expect(map.stats().poolsOpen).toBe(0);

      const next = await map.acquire('a', configOf(0));
      expect(pid(next)).not.toBe(dead);
      expect(await currentDatabase(next)).toBe(names[0]);

      // Terminated while borrowed: the borrower sees the error, and release() does not pool it.
      await admin.query('SELECT pg_terminate_backend($1)', [pid(next)]);
      await waitFor('the borrowed connection died', () => map.stats().connectionsOpen === 0);
      await expect(next.client.query('SELECT 1')).rejects.toThrow();
      next.release();
      const after = await map.acquire('a', configOf(0));
      expect(pid(after)).not.toBe(pid(next));
      expect(await currentDatabase(after)).toBe(names[0]);
      after.release();
      expect(errors).toHaveLength(1); // errors of borrowed connections go to their borrower
    });
  });

  it('closes idle connections after idleTimeoutMs and removes the empty pools', async () => {
    await withMap({ idleTimeoutMs: 100 }, async (map) => {
      const a = await map.acquire('a', configOf(0));
      const b = await map.acquire('b', configOf(1));
      a.release();
      b.release();
      expect(map.stats()).toMatchObject({ poolsOpen: 2, connectionsOpen: 2 });
      await waitFor('the idle connections closed', () => map.stats().connectionsOpen === 0, 2_000);
      expect(map.stats().poolsOpen).toBe(0);
      expect(await backends()).toBe(0);
    });
  });

  it('release(true) and release(error) close the connection instead of reusing it', async () => {
    await withMap({}, async (map) => {
      const first = await map.acquire('a', configOf(0));
      first.release(true);
      expect(map.stats().connectionsInUse).toBe(0);
      await waitFor('it is closed', () => map.stats().connectionsOpen === 0);
      expect(await backends()).toBe(0);
      const second = await map.acquire('a', configOf(0));
      expect(pid(second)).not.toBe(pid(first));
      second.release(new Error('the borrower broke the session'));
      await waitFor('it is closed', () => map.stats().connectionsOpen === 0);
      const third = await map.acquire('a', configOf(0));
      expect(pid(third)).not.toBe(pid(second));
      third.release();
    });
  });

  it('rejects a failed connect with POOL_CONNECT_FAILED, frees its slot and keeps credentials out of the message', async () => {
    await withMap({ globalMax: 1 }, async (map) => {
      // The server's own credentials, so that whatever its authentication method (trust in CI,
      // a password on the embedded server) the login succeeds and the missing database is what
      // fails. Under trust there is no password in the URL: any one given is ignored.
      const url = new URL(urlOf(`${prefix}missing`));
      url.password ||= 'hunter2-s3cret';
      const error = await map.acquire('gone', () => ({ connectionString: url.toString() })).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'POOL_CONNECT_FAILED', status: 503 });
      expect((error as Error).message).toContain('3D000'); // invalid_catalog_name
      expect((error as Error).message).not.toContain(url.password);
      expect((error as Error).message).not.toContain(prefix);
      await waitFor('its slot is free', () => map.stats().connectionsOpen === 0);
      expect(map.stats().poolsOpen).toBe(0);
      // The one slot of the budget is usable again.
      const conn = await map.acquire('a', configOf(0));
      expect(await currentDatabase(conn)).toBe(names[0]);
      conn.release();
    });
  });

  it('a connect that outlives its acquire keeps its slot and serves the next request of the key', async () => {
    await withMap({ globalMax: 1, acquireTimeoutMs: 100 }, async (map) => {
      let configCalls = 0;
      const slowConfig = async () => {
        configCalls++;
        await sleep(300);
        return configOf(0)();
      };
      const error = await map.acquire('a', slowConfig).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'POOL_CONNECT_FAILED', status: 503 });
      expect((error as Error).message).toContain('did not open within 100 ms');
      expect(map.stats()).toMatchObject({ connectionsOpen: 1, connectionsInUse: 0, waiters: 0 });
      const conn = await acquirePatiently(map, 'a', slowConfig);
      expect(configCalls).toBe(1);
      expect(await currentDatabase(conn)).toBe(names[0]);
      conn.release();
    });
  });

  it('close() rejects waiters with POOL_CLOSED and resolves once borrowed connections are back', async () => {
    const map = new PoolMap({ globalMax: 1, perPoolMax: 1, idleTimeoutMs: 10_000, acquireTimeoutMs: 5_000 });
    const held = await map.acquire('a', configOf(0));
    const waiting = map.acquire('b', configOf(1)).catch((e: unknown) => e);
    let closed = false;
    const closing = map.close().then(() => {
      closed = true;
    });
    expect(await waiting).toMatchObject({ code: 'POOL_CLOSED', status: 503 });
    await expect(map.acquire('a', configOf(0))).rejects.toMatchObject({ code: 'POOL_CLOSED' });
    await sleep(20);
    expect(closed).toBe(false);
    held.release();
    await closing;
    expect(map.stats()).toEqual({ poolsOpen: 0, connectionsOpen: 0, connectionsInUse: 0, waiters: 0, evictions: 0 });
    expect(await backends()).toBe(0);
  });

  it('exposes its stats as Prometheus gauges', async () => {
    await withMap({}, async (map) => {
      const registry = new Registry();
      registerPoolMapMetrics(registry, map);
      const conn = await map.acquire('a', configOf(0));
      const text = await registry.metrics();
      expect(text).toContain('tenantry_pool_map_pools_open 1');
      expect(text).toContain('tenantry_pool_map_connections_open 1');
      expect(text).toContain('tenantry_pool_map_connections_in_use 1');
      expect(text).toContain('tenantry_pool_map_waiters 0');
      expect(text).toContain('tenantry_pool_map_evictions_total 0');
      conn.release();
    });
  });

  it('rejects invalid options', () => {
    expect(() => new PoolMap({ globalMax: 0, perPoolMax: 1, idleTimeoutMs: 1, acquireTimeoutMs: 1 })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
    expect(() => new PoolMap({ globalMax: 1, perPoolMax: 1, idleTimeoutMs: 1, acquireTimeoutMs: Number.NaN })).toThrow(
      /acquireTimeoutMs/,
    );
  });
});
