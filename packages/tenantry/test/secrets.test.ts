import { createHmac, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { hmacHex, hmacPads, KeyRing, safeEqualHex } from '../src/secrets/keys.ts';
import { open, seal } from '../src/secrets/secret-box.ts';

const SECRET = 'a'.repeat(16) + 'b'.repeat(16);

describe('secret box', () => {
  const key = new KeyRing(SECRET).key('credential-encryption');

  it('opens what it sealed, for any text; the plaintext does not show and no two seals are equal', () => {
    for (const plaintext of ['', 'postgres://u:p@db.internal:5432/acme', 'ünïcødé ✓ 租户 🔑', 'x'.repeat(10_000)]) {
      const blob = seal(key, plaintext, 'placement-1');
      expect(open(key, blob, 'placement-1')).toBe(plaintext);
      expect(blob.length).toBe(1 + 12 + 16 + Buffer.byteLength(plaintext));
      if (plaintext.length > 8) expect(blob.includes(Buffer.from(plaintext.slice(0, 8)))).toBe(false);
      expect(seal(key, plaintext, 'placement-1').equals(blob)).toBe(false);
    }
  });

  const blob = seal(key, 'the database password', 'placement-1');
  const failures: [string, () => unknown][] = [
    ['a wrong key', () => open(new KeyRing('z'.repeat(32)).key('credential-encryption'), blob, 'placement-1')],
    ['another purpose’s key', () => open(new KeyRing(SECRET).key('context-hmac'), blob, 'placement-1')],
    ['a wrong context (copied onto another row)', () => open(key, blob, 'placement-2')],
    ['an empty context', () => open(key, blob, '')],
    ['a truncated blob', () => open(key, blob.subarray(0, 20), 'placement-1')],
    ['an empty blob', () => open(key, Buffer.alloc(0), 'placement-1')],
    ['an unknown version', () => open(key, Buffer.concat([Buffer.from([2]), blob.subarray(1)]), 'placement-1')],
    ['a key of the wrong length', () => open(Buffer.alloc(16), blob, 'placement-1')],
  ];
  for (let i = 1; i < blob.length; i++) {
    const part = i < 13 ? 'iv' : i < 29 ? 'tag' : 'ciphertext';
    failures.push([
      `a flipped bit in byte ${i} (${part})`,
      () => {
        const tampered = Buffer.from(blob);
        tampered[i] = (tampered[i] as number) ^ 0x01;
        return open(key, tampered, 'placement-1');
      },
    ]);
  }
  it.each(failures)('refuses %s with DECRYPTION_FAILED', (_what, attempt) => {
    expect(attempt).toThrow(expect.objectContaining({ code: 'DECRYPTION_FAILED', status: 500 }));
  });

  it('the error does not carry the plaintext or the key', () => {
    const error = (() => {
      try {
        open(key, blob, 'placement-2');
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(error?.message).not.toContain('password');
    expect(error?.message).not.toContain(key.toString('hex'));
  });
});

describe('key ring', () => {
  it.each([
    ['empty', ''],
    ['31 characters', 'x'.repeat(31)],
    ['not a string', undefined],
  ])('rejects a secret that is %s with MISSING_SECRET', (_what, secret) => {
    expect(() => new KeyRing(secret as string)).toThrow(expect.objectContaining({ code: 'MISSING_SECRET' }));
  });

  it('derives one stable 32-byte key per purpose, different per purpose and per secret', () => {
    const ring = new KeyRing(SECRET);
    const context = ring.key('context-hmac');
    expect(context).toHaveLength(32);
    expect(new KeyRing(SECRET).key('context-hmac').equals(context)).toBe(true);
    expect(ring.key('credential-encryption').equals(context)).toBe(false);
    expect(ring.key('runtime-password').equals(context)).toBe(false);
    expect(new KeyRing(`${SECRET}!`).key('context-hmac').equals(context)).toBe(false);
    expect(ring.key('context-hmac').equals(Buffer.from(SECRET).subarray(0, 32))).toBe(false);
  });

  it('the runtime password is reproducible and differs per role and per secret', () => {
    const ring = new KeyRing(SECRET);
    expect(ring.runtimePassword('app_rt')).toBe(new KeyRing(SECRET).runtimePassword('app_rt'));
    expect(ring.runtimePassword('app_rt')).not.toBe(ring.runtimePassword('app_rt2'));
    expect(ring.runtimePassword('app_rt')).not.toBe(new KeyRing('y'.repeat(32)).runtimePassword('app_rt'));
    expect(ring.runtimePassword('app_rt')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('safeEqualHex compares hex strings', () => {
    expect(safeEqualHex('00ff', '00ff')).toBe(true);
    expect(safeEqualHex('00ff', '00fe')).toBe(false);
    expect(safeEqualHex('00ff', '00ff00')).toBe(false);
  });
});

describe('HMAC in PostgreSQL from the pads (what tenantry_context.enter() computes)', () => {
  let database: TestDatabase;
  let client: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase('secrets');
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await database?.drop();
  });

  const messages = [
    '',
    'a',
    'enter|v1.work.7c9e6679-7425-40de-944b-e07fc1f90ae7.12345.1700000000000',
    'ünïcødé ✓ 租户',
    'x'.repeat(64),
    'y'.repeat(1000),
  ];

  it('equals node’s HMAC-SHA256 for derived and random keys', async () => {
    const keys = [new KeyRing(SECRET).key('context-hmac'), randomBytes(32), Buffer.alloc(32)];
    for (const key of keys) {
      const { ipad, opad } = hmacPads(key);
      expect(ipad).toHaveLength(64);
      expect(opad).toHaveLength(64);
      for (const m of messages) {
        const { rows } = await client.query<{ mac: string }>(
          "SELECT encode(sha256($2::bytea || sha256($1::bytea || convert_to($3, 'UTF8'))), 'hex') AS mac",
          [ipad, opad, m],
        );
        const expected = createHmac('sha256', key).update(m, 'utf8').digest('hex');
        expect(rows[0]?.mac, JSON.stringify(m)).toBe(expected);
        expect(hmacHex(key, m)).toBe(expected);
      }
    }
  });

  it('a different key gives a different MAC', async () => {
    const { ipad, opad } = hmacPads(randomBytes(32));
    const { rows } = await client.query<{ mac: string }>(
      "SELECT encode(sha256($2::bytea || sha256($1::bytea || convert_to($3, 'UTF8'))), 'hex') AS mac",
      [ipad, opad, 'hello'],
    );
    expect(rows[0]?.mac).not.toBe(hmacHex(new KeyRing(SECRET).key('context-hmac'), 'hello'));
  });
});
