import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { hasRedisServer, killProcess, startRedisServer } from '../../../test-support/redis.ts';
import { DEFAULT_PLANS, definePlans, resolvePlan, validatePlans } from '../src/admit/plans.ts';
import { type RateLimitDecision, TenantRateLimiter, type TenantRateLimiterOptions } from '../src/admit/rate-limit.ts';
import { rateLimitHeaders } from '../src/admit/rate-limit-headers.ts';

type Redis = ReturnType<typeof createClient>;

/** Small limits so a test can walk to the edge: free 5/min, pro 8/min, bursty 2/min + 3 per 10 min. */
const plans = definePlans({
  free: { requestsPerMinute: 5 },
  pro: { requestsPerMinute: 8 },
  bursty: { requestsPerMinute: 2, burst: 3 },
});

const redisUrl = inject('redisUrl');
if (!redisUrl) {
  console.warn(
    'rate-limit.test.ts: the shared-Redis tests were skipped because no Redis is reachable (REDIS_URL unset)',
  );
}
if (!hasRedisServer) {
  console.warn('rate-limit.test.ts: the Redis outage tests were skipped because the redis-server binary is missing');
}

async function consumeTimes(limiter: TenantRateLimiter, tenant: string, plan: string, n: number) {
  const decisions: RateLimitDecision[] = [];
  for (let i = 0; i < n; i++) decisions.push(await limiter.consume(tenant, plan));
  return decisions;
}

async function metric(limiter: TenantRateLimiter, name: string): Promise<string> {
  return limiter.registry.getSingleMetricAsString(name);
}

/** A node-redis client that reconnects fast and keeps its 'error' events (an unheard one crashes the process). */
async function connect(url: string, errors: unknown[] = []): Promise<Redis> {
  const client = createClient({ url, socket: { reconnectStrategy: () => 100, connectTimeout: 2000 } });
  client.on('error', (error) => errors.push(error));
  await client.connect();
  return client;
}

describe('plans', () => {
  it('has defaults for free, pro and enterprise, and overrides replace a plan whole', () => {
    expect(Object.keys(DEFAULT_PLANS).sort()).toEqual(['enterprise', 'free', 'pro']);
    const catalog = definePlans({ pro: { requestsPerMinute: 1200 }, startup: { requestsPerMinute: 300, burst: 50 } });
    expect(catalog.pro).toEqual({ requestsPerMinute: 1200 });
    expect(catalog.startup).toEqual({ requestsPerMinute: 300, burst: 50 });
    expect(catalog.free).toEqual(DEFAULT_PLANS.free);
    expect(Object.isFrozen(catalog)).toBe(true);
  });

  it('resolves an unknown plan, including Object.prototype names, to the free limits', () => {
    expect(resolvePlan(plans, 'pro')).toEqual({ name: 'pro', limits: { requestsPerMinute: 8 } });
    for (const unknown of ['gold', '', 'constructor', '__proto__', 'toString']) {
      expect(resolvePlan(plans, unknown)).toEqual({ name: 'free', limits: { requestsPerMinute: 5 } });
    }
  });

  it.each([
    ['no free plan', { pro: { requestsPerMinute: 5 } }],
    ['a zero limit', { free: { requestsPerMinute: 0 } }],
    ['a fractional limit', { free: { requestsPerMinute: 1.5 } }],
    ['a negative burst', { free: { requestsPerMinute: 5, burst: -1 } }],
    ['a plan name with a hash-tag brace', { free: { requestsPerMinute: 5 }, 'a{b}': { requestsPerMinute: 5 } }],
    ['a plan name with a quote', { free: { requestsPerMinute: 5 }, 'a"b': { requestsPerMinute: 5 } }],
  ])('rejects a catalog with %s (CONFIG_INVALID)', (_what, catalog) => {
    expect(() => validatePlans(catalog)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('TenantRateLimiter without Redis (in-process)', () => {
  it('allows exactly the limit, then limits with a Retry-After within the window', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const tenant = randomUUID();
    const decisions = await consumeTimes(limiter, tenant, 'free', 6);
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false]);
    expect(decisions.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0, 0]);
    const limited = decisions[5] as RateLimitDecision;
    expect(limited).toMatchObject({ policy: 'free', limit: 5, windowSeconds: 60 });
    expect(limited.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(limited.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect(limited.degraded).toBeUndefined();
  });

  it('keeps each tenant on its own budget', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const [a, b] = [randomUUID(), randomUUID()];
    await consumeTimes(limiter, a, 'free', 5);
    expect((await limiter.consume(a, 'free')).allowed).toBe(false);
    expect(await limiter.consume(b, 'free')).toMatchObject({ allowed: true, remaining: 4 });
  });

  it('applies each plan its own limit, and the free limit to an unknown plan', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const count = async (plan: string) =>
      (await consumeTimes(limiter, randomUUID(), plan, 12)).filter((d) => d.allowed).length;
    expect(await count('free')).toBe(5);
    expect(await count('pro')).toBe(8);
    expect(await count('no-such-plan')).toBe(5);
    expect((await limiter.consume(randomUUID(), 'no-such-plan')).policy).toBe('free');
  });

  it('lets a tenant spend its burst allowance once the minute is used up', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const decisions = await consumeTimes(limiter, randomUUID(), 'bursty', 7);
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false, false]);
    expect(decisions[0]?.burst).toEqual({ policy: 'bursty-burst', limit: 3, windowSeconds: 600 });
    expect(decisions.slice(2).map((d) => d.burst?.remaining)).toEqual([2, 1, 0, 0, 0]);
    expect(decisions.slice(2).every((d) => d.remaining === 0)).toBe(true);
    // Both exhausted: the minute window ends first, so that is when a retry can succeed.
    expect(decisions[6]?.retryAfterSeconds).toBeLessThanOrEqual(60);
  });

  it('counts decisions by outcome only: no tenant id reaches a metric label', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const tenant = randomUUID();
    await consumeTimes(limiter, tenant, 'free', 7);
    const decisions = await metric(limiter, 'tenantry_rate_limit_decisions_total');
    expect(decisions).toContain('tenantry_rate_limit_decisions_total{outcome="allowed"} 5');
    expect(decisions).toContain('tenantry_rate_limit_decisions_total{outcome="limited"} 2');
    expect(await metric(limiter, 'tenantry_rate_limit_degraded_total')).toContain(
      'tenantry_rate_limit_degraded_total{policy="fail-open"} 0',
    );
    expect(await limiter.registry.metrics()).not.toContain(tenant);
  });

  it('uses a registry of its own unless given one, and two limiters can share one', async () => {
    expect(new TenantRateLimiter().registry).not.toBe(new TenantRateLimiter().registry);
    const registry = new Registry();
    const a = new TenantRateLimiter({ plans, registry });
    const b = new TenantRateLimiter({ plans, registry });
    await a.consume(randomUUID(), 'free');
    await b.consume(randomUUID(), 'free');
    expect(await registry.getSingleMetricAsString('tenantry_rate_limit_decisions_total')).toContain(
      '{outcome="allowed"} 2',
    );
  });

  it.each([
    ['an empty tenant id', ''],
    ['a tenant id with a closing brace', 'a}b'],
    ['a tenant id with an opening brace', '{x'],
    ['a tenant id of 256 characters', 'x'.repeat(256)],
  ])('refuses %s with USAGE_ERROR', async (_what, id) => {
    await expect(new TenantRateLimiter({ plans }).consume(id, 'free')).rejects.toMatchObject({ code: 'USAGE_ERROR' });
  });

  it.each<[string, TenantRateLimiterOptions]>([
    ['an unknown Redis error policy', { onRedisError: 'ignore' as 'fail-open' }],
    ['a zero timeout', { redisTimeoutMs: 0 }],
    ['a key prefix with a brace', { keyPrefix: 'rl:{all}' }],
    ['an empty key prefix', { keyPrefix: '' }],
  ])('refuses %s with CONFIG_INVALID', (_what, options) => {
    expect(() => new TenantRateLimiter({ plans, ...options })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});

describe('rateLimitHeaders', () => {
  /** The draft's items: a quoted policy name and integer parameters, comma-separated. */
  const ITEM = /^"[a-z0-9_.-]+"(;[a-z]+=\d+)+$/;

  it('writes RateLimit-Policy and RateLimit in the draft syntax, without Retry-After while allowed', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const headers = rateLimitHeaders(await limiter.consume(randomUUID(), 'free'));
    expect(Object.keys(headers).sort()).toEqual(['RateLimit', 'RateLimit-Policy']);
    expect(headers['RateLimit-Policy']).toBe('"free";q=5;w=60');
    expect(headers.RateLimit).toMatch(/^"free";r=4;t=(\d+)$/);
    const t = Number(headers.RateLimit?.split('t=')[1]);
    expect(t).toBeGreaterThanOrEqual(59);
    expect(t).toBeLessThanOrEqual(60);
  });

  it('adds Retry-After (delay-seconds) when limited', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const tenant = randomUUID();
    await consumeTimes(limiter, tenant, 'free', 5);
    const decision = await limiter.consume(tenant, 'free');
    const headers = rateLimitHeaders(decision);
    expect(headers.RateLimit).toMatch(/^"free";r=0;t=\d+$/);
    expect(headers['Retry-After']).toBe(String(decision.retryAfterSeconds));
    expect(headers['Retry-After']).toMatch(/^[1-9]\d*$/);
  });

  it('lists the burst policy, and its counter once the tenant draws on it', async () => {
    const limiter = new TenantRateLimiter({ plans });
    const tenant = randomUUID();
    const first = rateLimitHeaders(await limiter.consume(tenant, 'bursty'));
    expect(first['RateLimit-Policy']).toBe('"bursty";q=2;w=60, "bursty-burst";q=3;w=600');
    expect(first.RateLimit).toMatch(/^"bursty";r=1;t=\d+$/);
    await limiter.consume(tenant, 'bursty');
    const third = rateLimitHeaders(await limiter.consume(tenant, 'bursty'));
    expect(third.RateLimit).toMatch(/^"bursty";r=0;t=\d+, "bursty-burst";r=2;t=\d+$/);
    for (const field of [third['RateLimit-Policy'], third.RateLimit]) {
      for (const item of (field as string).split(', ')) expect(item).toMatch(ITEM);
    }
  });

  it('leaves out the live counters of a degraded decision', () => {
    const base = { policy: 'free', limit: 5, windowSeconds: 60 };
    const open = rateLimitHeaders({ ...base, allowed: true, remaining: 5, resetSeconds: 60, degraded: 'fail-open' });
    expect(open).toEqual({ 'RateLimit-Policy': '"free";q=5;w=60' });
    const closed = rateLimitHeaders({
      ...base,
      allowed: false,
      remaining: 0,
      resetSeconds: 5,
      retryAfterSeconds: 5,
      degraded: 'fail-closed',
    });
    expect(closed).toEqual({ 'RateLimit-Policy': '"free";q=5;w=60', 'Retry-After': '5' });
  });

  it('escapes a policy name into a valid sf-string', () => {
    const headers = rateLimitHeaders({
      policy: 'we"ird\\',
      limit: 1,
      windowSeconds: 60,
      allowed: true,
      remaining: 1,
      resetSeconds: 1,
    });
    expect(headers['RateLimit-Policy']).toBe('"we\\"ird\\\\";q=1;w=60');
  });
});

describe.skipIf(!redisUrl)('TenantRateLimiter with the shared Redis', () => {
  // A prefix of this run's own: the server keeps state between runs and other files share it.
  const keyPrefix = `tenantry:rl-test:${randomUUID()}`;
  const errors: unknown[] = [];
  let first: Redis;
  let second: Redis;

  beforeAll(async () => {
    first = await connect(redisUrl as string, errors);
    second = await connect(redisUrl as string, errors);
  });

  afterAll(async () => {
    if (!first) return;
    for await (const keys of first.scanIterator({ MATCH: `${keyPrefix}:*`, COUNT: 1000 })) {
      if (keys.length > 0) await first.del(keys);
    }
    expect(await first.keys(`${keyPrefix}:*`)).toEqual([]);
    await first.close();
    await second?.close();
    expect(errors).toEqual([]);
  });

  it('allows exactly the limit, then limits with Retry-After', async () => {
    const limiter = new TenantRateLimiter({ redis: first, plans, keyPrefix });
    const decisions = await consumeTimes(limiter, randomUUID(), 'free', 6);
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false]);
    expect(decisions.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0, 0]);
    expect(decisions.every((d) => d.degraded === undefined)).toBe(true);
    const retryAfter = rateLimitHeaders(decisions[5] as RateLimitDecision)['Retry-After'];
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);
  });

  it('shares one budget between instances with separate Redis connections, even when they race', async () => {
    const a = new TenantRateLimiter({ redis: first, plans, keyPrefix });
    const b = new TenantRateLimiter({ redis: second, plans, keyPrefix });
    const tenant = randomUUID();
    // Concurrent calls from both instances: an atomic counter admits exactly 5 of 12.
    const decisions = await Promise.all(
      Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).consume(tenant, 'free')),
    );
    expect(decisions.filter((d) => d.allowed)).toHaveLength(5);
    expect((await a.consume(tenant, 'free')).allowed).toBe(false);
    expect((await b.consume(tenant, 'free')).allowed).toBe(false);
  });

  it('keeps tenants on separate budgets and plans on their own limits', async () => {
    const limiter = new TenantRateLimiter({ redis: first, plans, keyPrefix });
    const [a, b] = [randomUUID(), randomUUID()];
    expect((await consumeTimes(limiter, a, 'free', 7)).filter((d) => d.allowed)).toHaveLength(5);
    expect((await consumeTimes(limiter, b, 'pro', 10)).filter((d) => d.allowed)).toHaveLength(8);
    expect((await consumeTimes(limiter, randomUUID(), 'bursty', 7)).filter((d) => d.allowed)).toHaveLength(5);
  });

  it("puts a tenant's keys under the tenant's hash tag, expiring with their window", async () => {
    const limiter = new TenantRateLimiter({ redis: first, plans, keyPrefix });
    const tenant = randomUUID();
    await consumeTimes(limiter, tenant, 'bursty', 3);
    const keys = (await first.keys(`${keyPrefix}:*${tenant}*`)).sort();
    expect(keys).toEqual([`${keyPrefix}:{${tenant}}:bursty`, `${keyPrefix}:{${tenant}}:bursty:burst`]);
    // Redis Cluster hashes only what is inside the first {…}: the tenant id, for every key.
    expect(new Set(keys.map((key) => /\{([^}]*)\}/.exec(key)?.[1]))).toEqual(new Set([tenant]));
    const ttl = await first.ttl(`${keyPrefix}:{${tenant}}:bursty`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60);
    expect(await first.ttl(`${keyPrefix}:{${tenant}}:bursty:burst`)).toBeGreaterThan(60);
  });
});

/** A free TCP port on the loopback interface. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(25);
  }
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await work();
  return [result, performance.now() - start];
}

describe.skipIf(!hasRedisServer)('TenantRateLimiter when Redis fails (own redis-server child)', () => {
  const errors: unknown[] = [];
  let dir: string;
  let port: number;
  let server: ChildProcess | undefined;
  let client: Redis | undefined;
  let admin: Redis | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tenantry-redis-'));
    port = await freePort();
    server = await startRedisServer(port, dir);
    client = await connect(`redis://127.0.0.1:${port}`, errors);
    admin = await connect(`redis://127.0.0.1:${port}`, errors);
  });

  afterAll(async () => {
    client?.destroy();
    admin?.destroy();
    await killProcess(server);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers by its policy within redisTimeoutMs when Redis is stalled, and counts it', async () => {
    const limiter = new TenantRateLimiter({ redis: client, plans, redisTimeoutMs: 200 });
    const tenant = randomUUID();
    expect((await limiter.consume(tenant, 'free')).degraded).toBeUndefined();
    // The connection stays up but the server answers nothing: only the deadline can end the wait.
    await admin?.sendCommand(['CLIENT', 'PAUSE', '1500', 'ALL']);
    const [decision, ms] = await timed(() => limiter.consume(tenant, 'free'));
    expect(decision).toMatchObject({ allowed: true, degraded: 'fail-open', policy: 'free', limit: 5 });
    expect(ms).toBeGreaterThanOrEqual(150);
    expect(ms).toBeLessThan(1000);
    expect(await metric(limiter, 'tenantry_rate_limit_degraded_total')).toContain('{policy="fail-open"} 1');
    // A PING is held like every command until the pause ends; then the stalled increment has
    // landed too. It was served (fail-open), so it counts.
    expect(await admin?.ping()).toBe('PONG');
    expect(await limiter.consume(tenant, 'free')).toMatchObject({ allowed: true, remaining: 2 });
  });

  it('fails open or closed within ~redisTimeoutMs when Redis dies, and resumes when it is back', async () => {
    const logs: [string, string | undefined][] = [];
    const logger = {
      info: (_: object, msg?: string) => logs.push(['info', msg]),
      warn: (_: object, msg?: string) => logs.push(['warn', msg]),
      error: (_: object, msg?: string) => logs.push(['error', msg]),
    };
    const open = new TenantRateLimiter({ redis: client, plans, redisTimeoutMs: 200, logger });
    const closed = new TenantRateLimiter({ redis: client, plans, redisTimeoutMs: 200, onRedisError: 'fail-closed' });
    const tenant = randomUUID();
    expect((await open.consume(tenant, 'free')).degraded).toBeUndefined();

    await killProcess(server);
    for (let i = 0; i < 3; i++) {
      const [allowed, openMs] = await timed(() => open.consume(tenant, 'free'));
      expect(allowed).toMatchObject({ allowed: true, degraded: 'fail-open', remaining: 5 });
      expect(openMs).toBeLessThan(1000);
      const [denied, closedMs] = await timed(() => closed.consume(tenant, 'free'));
      expect(denied).toMatchObject({ allowed: false, degraded: 'fail-closed', retryAfterSeconds: 5 });
      expect(closedMs).toBeLessThan(1000);
    }
    expect(await metric(open, 'tenantry_rate_limit_degraded_total')).toContain('{policy="fail-open"} 3');
    expect(await metric(closed, 'tenantry_rate_limit_degraded_total')).toContain('{policy="fail-closed"} 3');
    expect(await metric(closed, 'tenantry_rate_limit_decisions_total')).toContain('{outcome="limited"} 3');
    expect(logs.filter(([level]) => level === 'warn')).toHaveLength(1);
    // node-redis reported the lost connection through 'error', which the test listens to.
    expect(errors.length).toBeGreaterThan(0);

    server = await startRedisServer(port, dir);
    await waitUntil(() => client?.isReady === true, 10_000);
    // The restarted server has no data (no persistence): the tenant starts a fresh window.
    const decisions = await consumeTimes(open, tenant, 'free', 6);
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false]);
    expect(decisions.every((d) => d.degraded === undefined)).toBe(true);
    expect((await closed.consume(tenant, 'free')).degraded).toBeUndefined();
    expect(logs.map(([level]) => level)).toEqual(['warn', 'info']);
  });
});
