import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createFixture, createTenants, type Fixture } from '../../../test-support/fixture.ts';
import {
  API_KEY_CHECKSUM_LENGTH,
  API_KEY_LOOKUP_LENGTH,
  API_KEY_SECRET_LENGTH,
  apiKeyChecksum,
  generateApiKey,
  parseApiKey,
} from '../src/auth/api-key-format.ts';
import type { ApiKeyStoreOptions } from '../src/auth/api-key-options.ts';
import { ApiKeyStore } from '../src/auth/api-key-store.ts';
import { postgresDialect, type TenantRecord, type TenantryError } from '../src/index.ts';
import { API_KEYS_CHANNEL, apiKeysMigration } from '../src/migrate/api-keys-migration.ts';
import { controlPlaneMigrations } from '../src/migrate/control-plane.ts';
import { applyMigrations } from '../src/migrate/runner.ts';
import { KeyRing } from '../src/secrets/keys.ts';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The part of a key that must exist nowhere but in the caller's hands. */
function secretOf(key: string): string {
  return key.slice(-(API_KEY_SECRET_LENGTH + API_KEY_CHECKSUM_LENGTH), -API_KEY_CHECKSUM_LENGTH);
}

/** `text` with the character at `i` replaced by another one of the same kind. */
function flip(text: string, i: number): string {
  const c = text[i] as string;
  const pool = /[a-z]/.test(c) && i < text.indexOf('_', text.indexOf('_') + 1) ? 'abcdefghijklmnopqrstuvwxyz' : BASE62;
  const replacement = c === '_' ? '-' : (pool[(pool.indexOf(c) + 1) % pool.length] as string);
  return text.slice(0, i) + replacement + text.slice(i + 1);
}

/** A well-formed key (valid checksum) with a different secret: only the database can reject it. */
function forge(key: string): string {
  const unchecked = key.slice(0, -API_KEY_CHECKSUM_LENGTH);
  const last = unchecked.length - 1;
  const changed = flip(unchecked, last);
  return changed + apiKeyChecksum(changed);
}

describe('key format (offline)', () => {
  it('generates <prefix>_<env>_<lookup><secret><checksum> that parses back', () => {
    const { key, parsed } = generateApiKey({ environment: 'live' });
    expect(key).toMatch(/^tnt_live_[0-9A-Za-z]{50}$/);
    expect(parsed).toEqual({
      prefix: 'tnt',
      environment: 'live',
      lookupId: key.slice(9, 9 + API_KEY_LOOKUP_LENGTH),
      displayPrefix: key.slice(0, 9 + API_KEY_LOOKUP_LENGTH),
    });
    expect(parseApiKey(key)).toEqual(parsed);
    expect(key.endsWith(apiKeyChecksum(key.slice(0, -API_KEY_CHECKSUM_LENGTH)))).toBe(true);
    expect(JSON.stringify(parsed)).not.toContain(secretOf(key));
    for (const environment of ['test', 'dev'] as const) {
      expect(parseApiKey(generateApiKey({ environment }).key)?.environment).toBe(environment);
    }
  });

  it('draws base62 characters uniformly (no modulo bias) and never repeats a key', () => {
    const counts = new Map<string, number>();
    const keys = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const { key } = generateApiKey({ environment: 'test' });
      keys.add(key);
      for (const c of key.slice(9, -API_KEY_CHECKSUM_LENGTH)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(keys.size).toBe(3000);
    expect(counts.size).toBe(62);
    const expected = (3000 * (API_KEY_LOOKUP_LENGTH + API_KEY_SECRET_LENGTH)) / 62;
    // `byte % 62` without rejection would give '0'..'7' 25% more often than the rest.
    for (const n of counts.values()) expect(Math.abs(n - expected) / expected).toBeLessThan(0.12);
  });

  it('rejects a key with any one character changed, offline', () => {
    const { key } = generateApiKey({ environment: 'live' });
    for (let i = 0; i < key.length; i++) {
      const changed = flip(key, i);
      expect(changed).not.toBe(key);
      expect(parseApiKey(changed), `position ${i}: ${changed}`).toBeUndefined();
    }
  });

  it('rejects malformed input of any type without throwing', () => {
    const { key } = generateApiKey({ environment: 'live' });
    const bad: unknown[] = [
      '',
      undefined,
      null,
      42,
      {},
      [key],
      `${key} `,
      ` ${key}`,
      `${key}\n`,
      key.slice(0, -1),
      `${key}0`,
      key.toUpperCase(),
      key.replace('_live_', '_prod_'),
      key.replace('_live_', '_LIVE_'),
      key.replace('tnt_', 'tnt-'),
      'x'.repeat(100_000),
      // The seed's example: 32 characters, no checksum.
      'frt_live_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6',
    ];
    for (const value of bad) expect(parseApiKey(value)).toBeUndefined();
  });

  it('supports a custom prefix such as frt, and only accepts the configured one', () => {
    const { key, parsed } = generateApiKey({ prefix: 'frt', environment: 'test' });
    expect(key).toMatch(/^frt_test_[0-9A-Za-z]{50}$/);
    expect(parsed.displayPrefix.startsWith('frt_test_')).toBe(true);
    expect(parseApiKey(key, { prefix: 'frt' })).toEqual(parsed);
    expect(parseApiKey(key, { prefix: 'tnt' })).toBeUndefined();
    expect(parseApiKey(generateApiKey({ environment: 'test' }).key, { prefix: 'frt' })).toBeUndefined();
    for (const prefix of ['', 'f', 'FRT', 'frt_', 'fr1', 'abcdefghi']) {
      expect(() => generateApiKey({ prefix, environment: 'live' })).toThrow(/prefix/);
    }
  });
});

let f: Fixture;
let a: TenantRecord;
let b: TenantRecord;
let hmacKey: Buffer;
let store: ApiKeyStore;
const opened: ApiKeyStore[] = [];
const pools: pg.Pool[] = [];

function newStore(options: ApiKeyStoreOptions = {}, pool: pg.Pool = f.tenantry.adminPool): ApiKeyStore {
  const s = new ApiKeyStore(pool, hmacKey, options);
  opened.push(s);
  return s;
}

function otherPool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: f.database.url, max: 2 });
  // Like the library's own pools: a connection the tests terminate must not crash the run.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  pools.push(pool);
  return pool;
}

const one = async <T>(text: string, values: unknown[] = []): Promise<T> =>
  (await f.tenantry.adminPool.query(text, values)).rows[0] as T;

async function snapshot(): Promise<{ keys: string; audit: number }> {
  return {
    keys: (
      await one<{ j: string }>(
        'SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY id), $$[]$$)::text AS j FROM tenantry.api_keys k',
      )
    ).j,
    audit: (await one<{ n: number }>('SELECT count(*)::int AS n FROM tenantry.audit_log')).n,
  };
}

interface AuditRow {
  action: string;
  actor: string;
  details: Record<string, unknown>;
  xmin: string;
}

async function auditOf(keyId: string): Promise<AuditRow[]> {
  const { rows } = await f.tenantry.adminPool.query<AuditRow>(
    `SELECT action, actor, details, xmin::text AS xmin FROM tenantry.audit_log
      WHERE details->>'keyId' = $1 ORDER BY id`,
    [keyId],
  );
  return rows;
}

/**
 * Counts what a store sends through `pool`: a store reaches PostgreSQL only through its
 * pool's `query` (one statement each) and `connect` (`query` checks out a client too).
 * Each counting test gives its store a pool of its own, so background work of other
 * stores (their usage flushes) cannot blur the count.
 */
function countQueries(pool: pg.Pool): { statements(): number; checkouts(): number; restore(): void } {
  const query = vi.spyOn(pool, 'query');
  const connect = vi.spyOn(pool, 'connect');
  return {
    statements: () => query.mock.calls.length,
    checkouts: () => connect.mock.calls.length,
    restore: () => {
      query.mockRestore();
      connect.mockRestore();
    },
  };
}

beforeAll(async () => {
  f = await createFixture('api_keys');
  const { owner, runtime } = f.database.roles;
  const migrations = controlPlaneMigrations(runtime);
  // Once control-plane.ts lists the migration itself, setup() has applied it already.
  if (!migrations.some((m) => m.id === apiKeysMigration.id)) migrations.push(apiKeysMigration);
  const client = await f.tenantry.adminPool.connect();
  try {
    await applyMigrations(client, {
      chain: 'control',
      target: 'main',
      schema: 'tenantry',
      ownerRole: owner,
      runtimeRole: runtime,
      dialect: postgresDialect,
      migrations,
    });
  } finally {
    client.release();
  }
  [a, b] = (await createTenants(f.tenantry, 'keys', 2)) as [TenantRecord, TenantRecord];
  hmacKey = new KeyRing(f.database.secret).key('api-key-hash');
  store = newStore({ lastUsedFlushMs: 3_600_000 });
});

afterAll(async () => {
  await Promise.all(opened.map((s) => s.close()));
  await Promise.all(pools.map((p) => p.end()));
  await f?.close();
});

describe('migration 0003_api_keys', () => {
  it('is recorded in the control chain; the owner role owns the table; the runtime role has no privilege', async () => {
    const { owner, runtime } = f.database.roles;
    expect(
      await one('SELECT id FROM tenantry.migrations WHERE chain = $1 AND id = $2', ['control', '0003_api_keys']),
    ).toEqual({ id: '0003_api_keys' });
    expect(
      await one("SELECT tableowner FROM pg_tables WHERE schemaname = 'tenantry' AND tablename = 'api_keys'"),
    ).toEqual({ tableowner: owner });
    const privileges = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];
    const granted = await one<{ any: boolean }>(
      `SELECT bool_or(has_table_privilege($1, 'tenantry.api_keys', p)) AS any FROM unnest($2::text[]) AS p`,
      [runtime, privileges],
    );
    expect(granted.any).toBe(false);
    expect(await one('SELECT has_schema_privilege($1, $2, $3) AS usage', [runtime, 'tenantry', 'USAGE'])).toEqual({
      usage: false,
    });
    await expect(f.tenantry.runtimePool.query('SELECT * FROM tenantry.api_keys')).rejects.toMatchObject({
      code: '42501',
    });
  });
});

describe('create, verify, list, revoke', () => {
  it('creates a key shown once, verifies it, lists it without hash or key, and revokes it', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000);
    const { key, record } = await store.create(
      a.id,
      { name: '  CI deploy  ', environment: 'live', scopes: ['items:read', 'items:write', 'items:read'], expiresAt },
      { actor: 'admin@keys.test' },
    );
    expect(parseApiKey(key)?.displayPrefix).toBe(record.displayPrefix);
    expect(record).toMatchObject({
      tenantId: a.id,
      name: 'CI deploy',
      environment: 'live',
      scopes: ['items:read', 'items:write'],
      expiresAt,
      revokedAt: null,
      lastUsedAt: null,
      createdBy: 'admin@keys.test',
    });
    expect(Object.isFrozen(record)).toBe(true);

    expect(await store.verify(key)).toEqual({
      keyId: record.id,
      tenantId: a.id,
      scopes: ['items:read', 'items:write'],
      environment: 'live',
    });

    const listed = await store.list(a.id);
    expect(listed).toContainEqual(record);
    for (const k of listed) {
      expect(Object.keys(k).sort()).toEqual(
        [
          'createdAt',
          'createdBy',
          'displayPrefix',
          'environment',
          'expiresAt',
          'id',
          'lastUsedAt',
          'name',
          'revokedAt',
          'scopes',
          'tenantId',
        ].sort(),
      );
    }
    expect(JSON.stringify(listed)).not.toContain(secretOf(key));
    expect(await store.get(a.id, record.id)).toEqual(record);

    const revoked = await store.revoke(a.id, record.id, { actor: 'admin@keys.test' });
    expect(revoked.revokedAt).toBeInstanceOf(Date);
    // Same instance: no waiting for the cache, the key is refused at once.
    expect(await store.verify(key)).toBeUndefined();
    expect((await store.list(a.id)).find((k) => k.id === record.id)?.revokedAt).toEqual(revoked.revokedAt);

    // Revoking again changes nothing and audits nothing.
    const before = await snapshot();
    expect((await store.revoke(a.id, record.id)).revokedAt).toEqual(revoked.revokedAt);
    expect(await snapshot()).toEqual(before);
  });

  it('refuses a well-formed key with a valid checksum but a wrong secret, environment or prefix', async () => {
    const { key } = await store.create(a.id, { name: 'forge target', environment: 'live' });
    expect(await store.verify(key)).toBeDefined();
    expect(await store.verify(forge(key))).toBeUndefined();
    const otherEnv = key.replace('_live_', '_test_').slice(0, -API_KEY_CHECKSUM_LENGTH);
    expect(await store.verify(otherEnv + apiKeyChecksum(otherEnv))).toBeUndefined();
    const otherPrefix = key.replace(/^tnt_/, 'frt_').slice(0, -API_KEY_CHECKSUM_LENGTH);
    expect(await store.verify(otherPrefix + apiKeyChecksum(otherPrefix))).toBeUndefined();
  });

  it('a store with prefix frt creates frt keys and accepts only those', async () => {
    const frt = newStore({ prefix: 'frt' });
    const { key, record } = await frt.create(a.id, { name: 'freight', environment: 'dev', scopes: ['tenant:read'] });
    expect(key).toMatch(/^frt_dev_[0-9A-Za-z]{50}$/);
    expect(record.displayPrefix).toMatch(/^frt_dev_[0-9A-Za-z]{12}$/);
    expect(await frt.verify(key)).toMatchObject({ keyId: record.id, environment: 'dev', scopes: ['tenant:read'] });
    // A store configured for another prefix refuses it offline.
    expect(await store.verify(key)).toBeUndefined();
  });

  const invalid: [string, unknown][] = [
    ['an empty name', { name: '', environment: 'live' }],
    ['a blank name', { name: '   ', environment: 'live' }],
    ['a name of 101 characters', { name: 'n'.repeat(101), environment: 'live' }],
    ['an unknown environment', { name: 'x', environment: 'prod' }],
    ['no environment', { name: 'x' }],
    ['an upper-case scope', { name: 'x', environment: 'live', scopes: ['Items:Read'] }],
    ['a scope without an action', { name: 'x', environment: 'live', scopes: ['admin'] }],
    ['scopes that are not a list', { name: 'x', environment: 'live', scopes: 'items:read' }],
    ['an expiry in the past', { name: 'x', environment: 'live', expiresAt: new Date(Date.now() - 1000) }],
    ['an expiry that is not a date', { name: 'x', environment: 'live', expiresAt: 'tomorrow' }],
    ['an expiry without a time zone', { name: 'x', environment: 'live', expiresAt: '2099-01-01T00:00:00' }],
    ['an unknown field', { name: 'x', environment: 'live', hash: 'abc' }],
    ['no input at all', undefined],
  ];
  for (const [what, input] of invalid) {
    it(`rejects ${what} with INVALID_INPUT and writes nothing`, async () => {
      const before = await snapshot();
      const error = (await store.create(a.id, input as never).catch((e: unknown) => e)) as TenantryError;
      expect(error).toMatchObject({ code: 'INVALID_INPUT', status: 400 });
      expect(error.details?.problems).toEqual(
        expect.arrayContaining([expect.objectContaining({ message: expect.any(String) })]),
      );
      expect(await snapshot()).toEqual(before);
    });
  }

  it('accepts a 100-character name and an ISO expiry with an offset', async () => {
    const { record } = await store.create(a.id, {
      name: 'n'.repeat(100),
      environment: 'test',
      expiresAt: '2099-01-01T00:00:00+02:00',
    });
    expect(record.expiresAt).toEqual(new Date('2098-12-31T22:00:00Z'));
  });

  it('an unknown, malformed or deleted tenant gets no key', async () => {
    const before = await snapshot();
    for (const id of ['00000000-0000-4000-8000-000000000000', 'keys-0', "'; DROP TABLE x; --"]) {
      await expect(store.create(id, { name: 'x', environment: 'live' })).rejects.toMatchObject({
        code: 'TENANT_NOT_FOUND',
      });
      expect(await store.list(id)).toEqual([]);
    }
    const gone = await f.tenantry.tenants.create({ slug: 'keys-gone', name: 'Gone' });
    await f.tenantry.tenants.delete(gone.id);
    const afterDelete = await snapshot();
    await expect(store.create(gone.id, { name: 'x', environment: 'live' })).rejects.toMatchObject({
      code: 'TENANT_NOT_ACTIVE',
    });
    expect(await snapshot()).toEqual(afterDelete);
    expect(afterDelete.keys).toBe(before.keys);
  });
});

describe('storage', () => {
  it('never stores the full key or its secret: not in any table, index or TOAST file of the control plane', async () => {
    const created = await Promise.all(
      ['a', 'b', 'c'].map((n) => store.create(a.id, { name: `stored ${n}`, environment: 'live' })),
    );
    await store.verify(created[0]?.key as string);
    await store.flush();
    await f.tenantry.adminPool.query('CHECKPOINT');
    const { rows } = await f.tenantry.adminPool.query<{ rel: string; bytes: Buffer }>(
      `SELECT c.oid::regclass::text AS rel, pg_read_binary_file(pg_relation_filepath(c.oid)) AS bytes
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (n.nspname = 'tenantry' OR c.oid IN (
                SELECT reltoastrelid FROM pg_class WHERE relnamespace = 'tenantry'::regnamespace))
          AND c.relkind IN ('r', 'i', 't') AND pg_relation_filepath(c.oid) IS NOT NULL`,
    );
    const files = new Map(rows.map((r) => [r.rel, r.bytes]));
    expect(files.has('tenantry.api_keys')).toBe(true);
    for (const { key, record } of created) {
      // The search works: the public part and the hash are in the table file.
      expect(files.get('tenantry.api_keys')?.includes(Buffer.from(record.displayPrefix))).toBe(true);
      const hash = await one<{ hash: Buffer }>('SELECT hash FROM tenantry.api_keys WHERE id = $1', [record.id]);
      expect(files.get('tenantry.api_keys')?.includes(hash.hash)).toBe(true);
      for (const [rel, bytes] of files) {
        expect(bytes.includes(Buffer.from(secretOf(key))), `${rel} holds a secret`).toBe(false);
        expect(bytes.includes(Buffer.from(key)), `${rel} holds a key`).toBe(false);
      }
    }
  });
});

describe('tenant isolation', () => {
  it('a key of tenant A can be neither revoked, read nor listed through tenant B', async () => {
    const { key, record } = await store.create(a.id, { name: 'A only', environment: 'live' });
    const before = await snapshot();
    await expect(store.revoke(b.id, record.id, { actor: 'mallory' })).rejects.toMatchObject({
      code: 'NOT_FOUND',
      status: 404,
    });
    await expect(store.get(b.id, record.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await store.list(b.id)).map((k) => k.id)).not.toContain(record.id);
    expect(await snapshot()).toEqual(before);
    expect(await store.verify(key)).toMatchObject({ keyId: record.id, tenantId: a.id });
  });

  it('a malformed or unknown key id is NOT_FOUND', async () => {
    for (const id of ['nope', '', '00000000-0000-4000-8000-000000000000']) {
      await expect(store.revoke(a.id, id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    }
  });
});

describe('expiry', () => {
  it('an expired key is refused, even while it would still be in the cache', async () => {
    const cached = newStore({ cacheTtlMs: 1000 });
    const { key } = await cached.create(a.id, {
      name: 'short-lived',
      environment: 'live',
      expiresAt: new Date(Date.now() + 700),
    });
    expect(await cached.verify(key)).toBeDefined();
    await sleep(750);
    expect(await cached.verify(key)).toBeUndefined();
    expect(await newStore({ cacheTtlMs: 0 }).verify(key)).toBeUndefined();
  });

  it('a key expired in the database (by an operator) is refused', async () => {
    const { key, record } = await store.create(a.id, { name: 'expire me', environment: 'live' });
    const uncached = newStore({ cacheTtlMs: 0 });
    expect(await uncached.verify(key)).toBeDefined();
    await f.tenantry.adminPool.query(
      "UPDATE tenantry.api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
      [record.id],
    );
    expect(await uncached.verify(key)).toBeUndefined();
  });
});

describe('revocation across instances', () => {
  /** Polls `verify` until it refuses the key; the elapsed ms since `from`, or Infinity after `limitMs`. */
  async function refusedAfter(s: ApiKeyStore, key: string, from: number, limitMs: number): Promise<number> {
    while (performance.now() - from <= limitMs) {
      if ((await s.verify(key)) === undefined) return performance.now() - from;
      await sleep(10);
    }
    return Number.POSITIVE_INFINITY;
  }

  it('a second instance on another pool, listening, refuses a revoked key before its cache entry expires', async () => {
    const second = newStore({ cacheTtlMs: 1000 }, otherPool());
    await second.start();
    const { key, record } = await store.create(a.id, { name: 'revoke me', environment: 'live' });
    const cachedFrom = performance.now();
    expect(await second.verify(key)).toBeDefined(); // cached for up to 1000 ms from now
    await store.revoke(a.id, record.id);
    // Refused before the cache entry could have expired: the NOTIFY evicted it.
    expect(await refusedAfter(second, key, cachedFrom, 1000)).toBeLessThan(1000);
  });

  it('a second instance without a listener refuses it within 1 s (cache TTL)', async () => {
    const second = newStore({}, otherPool());
    const { key, record } = await store.create(a.id, { name: 'revoke me too', environment: 'live' });
    expect(await second.verify(key)).toBeDefined();
    const cachedBy = performance.now();
    await store.revoke(a.id, record.id);
    // The entry was cached before `cachedBy`, so it is stale by cachedBy + 1000; allow one poll round trip.
    expect(await refusedAfter(second, key, cachedBy, 1100)).toBeLessThanOrEqual(1100);
  });

  it('the revoke transaction notifies tenantry_api_keys with the key id; purging a tenant notifies for its keys', async () => {
    const listener = new pg.Client({ connectionString: f.database.url });
    await listener.connect();
    const payloads: string[] = [];
    listener.on('notification', (m) => {
      if (m.channel === API_KEYS_CHANNEL && m.payload) payloads.push(m.payload);
    });
    try {
      await listener.query(`LISTEN ${API_KEYS_CHANNEL}`);
      const { record } = await store.create(a.id, { name: 'notify', environment: 'live' });
      await store.revoke(a.id, record.id);
      const doomed = await f.tenantry.tenants.create({ slug: 'keys-doomed', name: 'Doomed' });
      const { key, record: doomedKey } = await store.create(doomed.id, { name: 'doomed', environment: 'live' });
      const watcher = newStore({}, otherPool());
      await watcher.start();
      expect(await watcher.verify(key)).toBeDefined();
      await f.tenantry.tenants.delete(doomed.id, { hard: true });
      const from = performance.now();
      expect(await refusedAfter(watcher, key, from, 1000)).toBeLessThan(1000);
      await vi.waitFor(() => expect(payloads).toEqual([record.id, doomedKey.id]), { timeout: 2000 });
    } finally {
      await listener.end();
    }
  });

  it('a listener that loses its connection empties the cache and listens again', async () => {
    const second = newStore({ cacheTtlMs: 1000 }, otherPool());
    await second.start();
    const { key, record } = await store.create(a.id, { name: 'reconnect', environment: 'live' });
    expect(await second.verify(key)).toBeDefined();
    const listen = `LISTEN ${API_KEYS_CHANNEL}`;
    // Every listening store of this file loses its connection; each must come back.
    const killed = await one<{ at: Date; n: number }>(
      `SELECT clock_timestamp() AS at, count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND query = $1 AND pid <> pg_backend_pid()`,
      [listen],
    );
    expect(killed.n).toBeGreaterThan(0);
    await vi.waitFor(
      async () => {
        const back = await one<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND query = $1 AND backend_start > $2`,
          [listen, killed.at],
        );
        expect(back.n).toBeGreaterThanOrEqual(killed.n);
      },
      { timeout: 5000, interval: 100 },
    );
    expect(await second.verify(key)).toBeDefined();
    const cachedFrom = performance.now();
    await store.revoke(a.id, record.id);
    expect(await refusedAfter(second, key, cachedFrom, 1000)).toBeLessThan(1000);
  });
});

describe('offline rejection', () => {
  it('100,000 malformed or wrong-checksum keys cause zero database queries', async () => {
    const { key } = await store.create(a.id, { name: 'template', environment: 'live' });
    const other = generateApiKey({ prefix: 'frt', environment: 'live' }).key;
    const variants: ((i: number) => string)[] = [
      (i) => flip(key, 9 + (i % 50)), // one body character changed: wrong checksum
      (i) => flip(key, i % key.length), // any character changed
      (i) => `tnt_live_${String(i).padStart(50, 'x')}`, // right shape, checksum by chance only
      () => other, // valid checksum, another prefix
      (i) => key.slice(0, i % key.length), // truncated
      (i) => `${key}${i}`, // too long
      (i) => `Bearer ${i}`,
      () => '',
    ];
    const pool = otherPool();
    const s = newStore({ cacheTtlMs: 0 }, pool);
    expect(await s.verify(key)).toBeDefined(); // the pool has connected: what follows is all counted
    const counter = countQueries(pool);
    let accepted = 0;
    try {
      for (let i = 0; i < 100_000; i++) {
        if ((await s.verify((variants[i % variants.length] as (i: number) => string)(i))) !== undefined) accepted++;
      }
      expect(accepted).toBe(0);
      expect(counter.statements()).toBe(0);
      expect(counter.checkouts()).toBe(0);
      // The counter does see queries: a well-formed key with a wrong secret needs one lookup.
      expect(await s.verify(forge(key))).toBeUndefined();
      expect(counter.statements()).toBe(1);
    } finally {
      counter.restore();
    }
  });
});

describe('usage', () => {
  it('writes last_used_at and one audit row per key with its use count, in one statement per flush', async () => {
    const pool = otherPool();
    const s = newStore({ lastUsedFlushMs: 3_600_000 }, pool);
    const k1 = await s.create(a.id, { name: 'busy', environment: 'live' });
    const k2 = await s.create(b.id, { name: 'quiet', environment: 'live' });
    for (let i = 0; i < 50; i++) expect(await s.verify(k1.key)).toBeDefined();
    for (let i = 0; i < 3; i++) expect(await s.verify(k2.key)).toBeDefined();
    expect((await s.get(a.id, k1.record.id)).lastUsedAt).toBeNull();

    const counter = countQueries(pool);
    try {
      await s.flush();
      expect(counter.statements()).toBe(1);
      await s.flush(); // nothing new: no statement at all
      expect(counter.statements()).toBe(1);
    } finally {
      counter.restore();
    }
    const used1 = (await auditOf(k1.record.id)).filter((r) => r.action === 'api_key.used');
    const used2 = (await auditOf(k2.record.id)).filter((r) => r.action === 'api_key.used');
    expect(used1).toHaveLength(1);
    expect(used1[0]).toMatchObject({ actor: `api-key:${k1.record.id}`, details: { keyId: k1.record.id, uses: 50 } });
    expect(used2).toHaveLength(1);
    expect(used2[0]?.details.uses).toBe(3);
    const after = await s.get(a.id, k1.record.id);
    expect(after.lastUsedAt).toBeInstanceOf(Date);
    expect(Math.abs((after.lastUsedAt as Date).getTime() - Date.now())).toBeLessThan(60_000);
    const tenantOf = await one<{ tenant_id: string }>(
      "SELECT tenant_id FROM tenantry.audit_log WHERE action = 'api_key.used' AND details->>'keyId' = $1",
      [k2.record.id],
    );
    expect(tenantOf.tenant_id).toBe(b.id);
  });

  it('flushes on its own every lastUsedFlushMs, and on close()', async () => {
    const timed = newStore({ lastUsedFlushMs: 100 });
    const { key, record } = await timed.create(a.id, { name: 'timed', environment: 'live' });
    await timed.verify(key);
    await vi.waitFor(async () => expect((await timed.get(a.id, record.id)).lastUsedAt).not.toBeNull(), {
      timeout: 3000,
      interval: 50,
    });

    const closing = newStore({ lastUsedFlushMs: 3_600_000 });
    const other = await closing.create(a.id, { name: 'closing', environment: 'live' });
    await closing.verify(other.key);
    await closing.verify(other.key);
    await closing.close();
    expect((await auditOf(other.record.id)).find((r) => r.action === 'api_key.used')?.details.uses).toBe(2);
  });
});

describe('audit', () => {
  it('create and revoke are audited in their own transaction, without the key', async () => {
    const { key, record } = await store.create(
      a.id,
      { name: 'audited', environment: 'test', scopes: ['keys:read'] },
      { actor: 'ops' },
    );
    const created = await auditOf(record.id);
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({
      action: 'api_key.created',
      actor: 'ops',
      details: { keyId: record.id, name: 'audited', environment: 'test', scopes: ['keys:read'] },
    });
    const rowXmin = async () =>
      (await one<{ xmin: string }>('SELECT xmin::text AS xmin FROM tenantry.api_keys WHERE id = $1', [record.id])).xmin;
    expect(created[0]?.xmin).toBe(await rowXmin());
    expect(JSON.stringify(created)).not.toContain(secretOf(key));

    await store.revoke(a.id, record.id, { actor: 'security' });
    const revoked = (await auditOf(record.id)).filter((r) => r.action === 'api_key.revoked');
    expect(revoked).toHaveLength(1);
    expect(revoked[0]).toMatchObject({ actor: 'security', details: { keyId: record.id } });
    expect(revoked[0]?.xmin).toBe(await rowXmin());
  });
});

describe('configuration', () => {
  it('rejects a bad prefix, a cache TTL above 1 s and a short HMAC key', () => {
    const pool = f.tenantry.adminPool;
    for (const options of [
      { prefix: 'TNT' },
      { prefix: 't' },
      { cacheTtlMs: 1001 },
      { cacheTtlMs: -1 },
      { cacheTtlMs: 1.5 },
      { lastUsedFlushMs: 0 },
    ]) {
      expect(() => new ApiKeyStore(pool, hmacKey, options)).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID' }),
      );
    }
    expect(() => new ApiKeyStore(pool, Buffer.alloc(16))).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
