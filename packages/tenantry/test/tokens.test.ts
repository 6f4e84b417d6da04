import { randomBytes } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { PasswordHasher } from '../src/auth/passwords.ts';
import { TokenService } from '../src/auth/tokens.ts';
import { type UserRecord, UserStore } from '../src/auth/users.ts';
import type { TenantRecord, TenantryError } from '../src/index.ts';
import { hmacHex, KeyRing } from '../src/secrets/keys.ts';

/** Counts verifications, to show every failed login did the same argon2id work. */
class CountingHasher extends PasswordHasher {
  verifications = 0;
  override async verify(stored: string | null | undefined, password: string): Promise<boolean> {
    this.verifications++;
    return super.verify(stored, password);
  }
}

let f: Fixture;
let keys: KeyRing;
let users: UserStore;
let hasher: CountingHasher;
let auth: TokenService;
let acme: TenantRecord;
let globex: TenantRecord;
let frozen: TenantRecord;
let alice: UserRecord;
const PASSWORD = 'alice-correct-horse';

beforeAll(async () => {
  f = await createFixture('tokens');
  keys = new KeyRing(f.database.secret);
  hasher = new CountingHasher();
  users = new UserStore(f.tenantry.adminPool, { passwords: hasher });
  auth = new TokenService(f.tenantry.adminPool, keys, { passwords: hasher });
  acme = await f.tenantry.tenants.create({ slug: 'tok-acme', name: 'Acme' });
  globex = await f.tenantry.tenants.create({ slug: 'tok-globex', name: 'Globex' });
  frozen = await f.tenantry.tenants.create({ slug: 'tok-frozen', name: 'Frozen' });
  alice = await users.create(acme.id, { email: 'alice@tok.test', password: PASSWORD, role: 'member' });
  await users.create(globex.id, { email: 'alice@tok.test', role: 'viewer' });
  await users.create(acme.id, { email: 'invited@tok.test', role: 'member' });
  await users.create(globex.id, { email: 'carol@tok.test', password: 'carol-password', role: 'owner' });
  await users.create(frozen.id, { email: 'dave@tok.test', password: 'dave-password', role: 'owner' });
  await f.tenantry.tenants.suspend(frozen.id);
});

afterAll(async () => {
  await f?.close();
});

const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e as TenantryError,
  );

const login = (email = 'alice@tok.test', password = PASSWORD, tenant = acme.id) =>
  auth.login({ tenant, email, password });

async function tokenRows(familyOf: string) {
  const hash = hmacHex(keys.key('refresh-token-hash'), familyOf);
  const { rows } = await f.tenantry.adminPool.query<{
    token_hash: string;
    parent_id: string | null;
    id: string;
    used: boolean;
    revoked: boolean;
  }>(
    `SELECT id, token_hash, parent_id, used_at IS NOT NULL AS used, revoked_at IS NOT NULL AS revoked
       FROM tenantry.refresh_tokens
      WHERE family_id = (SELECT family_id FROM tenantry.refresh_tokens WHERE token_hash = $1)
      ORDER BY created_at, id`,
    [hash],
  );
  return rows;
}

async function auditCount(action: string): Promise<number> {
  const { rows } = await f.tenantry.adminPool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM tenantry.audit_log WHERE action = $1',
    [action],
  );
  return rows[0]?.n as number;
}

/** A token as `TokenService` would sign it, with `claims`/`header` overridden. */
function forge(claims: Record<string, unknown> = {}, options: { key?: Uint8Array; alg?: string } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ tid: acme.id, role: 'member', ...claims })
    .setProtectedHeader({ alg: options.alg ?? 'HS256', typ: 'JWT' })
    .setSubject(alice.id)
    .setIssuer((claims.iss as string) ?? 'tenantry')
    .setAudience((claims.aud as string) ?? 'tenantry')
    .setIssuedAt((claims.iat as number) ?? now)
    .setExpirationTime((claims.exp as number) ?? now + 60)
    .setJti('forged')
    .sign(options.key ?? new Uint8Array(keys.key('jwt-signing')));
}

describe('login', () => {
  it('returns an access JWT with small, standard claims and an opaque refresh token', async () => {
    const pair = await login();
    expect(pair.expiresIn).toBe(900);
    expect(pair.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(decodeProtectedHeader(pair.accessToken)).toEqual({ alg: 'HS256', typ: 'JWT' });
    const claims = decodeJwt(pair.accessToken);
    expect(claims).toMatchObject({ sub: alice.id, tid: acme.id, role: 'member', iss: 'tenantry', aud: 'tenantry' });
    expect(Object.keys(claims).sort()).toEqual(['aud', 'exp', 'iat', 'iss', 'jti', 'role', 'sub', 'tid']);
    expect((claims.exp as number) - (claims.iat as number)).toBe(900);
    const principal = await auth.verifyAccessToken(pair.accessToken);
    expect(principal).toMatchObject({ kind: 'user', tenantId: acme.id, subject: alice.id, role: 'member' });
    expect(principal.permissions.has('items:write')).toBe(true);
  });

  it('the same person gets the role of the tenant logged into', async () => {
    const viewer = await auth.verifyAccessToken((await login(undefined, undefined, globex.id)).accessToken);
    // Alice was invited to Globex after her account existed: her one password works there too.
    expect(viewer).toMatchObject({ tenantId: globex.id, role: 'viewer' });
    expect(viewer.permissions.has('items:write')).toBe(false);
  });

  it('accepts the tenant slug and any case of the email', async () => {
    const principal = await auth.verifyAccessToken((await login('ALICE@tok.test', PASSWORD, 'tok-acme')).accessToken);
    expect(principal.tenantId).toBe(acme.id);
  });

  it('stores the refresh token only as its HMAC, and audits the login', async () => {
    const before = await auditCount('auth.login');
    const { refreshToken } = await login();
    const { rows } = await f.tenantry.adminPool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tenantry.refresh_tokens t WHERE strpos(to_jsonb(t)::text, $1) > 0`,
      [refreshToken],
    );
    expect(rows[0]?.n).toBe(0);
    expect(await tokenRows(refreshToken)).toHaveLength(1);
    expect(await auditCount('auth.login')).toBe(before + 1);
  });

  const failures: [string, () => Promise<unknown>][] = [
    ['an unknown email', () => login('nobody@tok.test')],
    ['a wrong password', () => login('alice@tok.test', 'alice-wrong-horse')],
    ['an invited user without a password', () => login('invited@tok.test', 'anything-at-all')],
    ['a user of another tenant only', () => login('carol@tok.test', 'carol-password', acme.id)],
    ['a suspended tenant', () => login('dave@tok.test', 'dave-password', frozen.id)],
    ['an unknown tenant', () => login('alice@tok.test', PASSWORD, '00000000-0000-4000-8000-000000000000')],
    ['an unknown tenant slug', () => login('alice@tok.test', PASSWORD, 'tok-nope')],
  ];

  it('fails every way with the same UNAUTHORIZED after the same password work', async () => {
    const seen: unknown[] = [];
    for (const [what, attempt] of failures) {
      const before = hasher.verifications;
      const error = await errorOf(attempt());
      expect(error, what).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
      expect(hasher.verifications - before, what).toBe(1);
      seen.push({
        name: error.name,
        code: error.code,
        message: error.message,
        details: error.details,
        cause: error.cause,
      });
    }
    expect(new Set(seen.map((s) => JSON.stringify(s))).size).toBe(1);
    // The positive control: the same accounts succeed where they belong.
    await expect(login('carol@tok.test', 'carol-password', globex.id)).resolves.toHaveProperty('accessToken');
  });

  it('malformed input is INVALID_INPUT', async () => {
    for (const input of [{}, { tenant: acme.id, email: 'a@b.c' }, { tenant: acme.id, email: 'a@b.c', password: 7 }]) {
      await expect(auth.login(input as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    }
  });

  it('upgrades a hash made with older parameters on successful login', async () => {
    const weak = new UserStore(f.tenantry.adminPool, {
      passwords: new PasswordHasher({ memoryCost: 8192, timeCost: 1 }),
    });
    const u = await weak.create(acme.id, { email: 'old@tok.test', password: 'old-password', role: 'viewer' });
    const hashOf = async () =>
      (await f.tenantry.adminPool.query('SELECT password_hash FROM tenantry.users WHERE id = $1', [u.id])).rows[0]
        ?.password_hash as string;
    expect(await hashOf()).toContain('m=8192,t=1');
    await login('old@tok.test', 'old-password');
    expect(await hashOf()).toContain('m=19456,t=2,p=1');
    await expect(login('old@tok.test', 'old-password')).resolves.toHaveProperty('accessToken');
  });
});

describe('verifyAccessToken', () => {
  it('accepts a well-formed token (the control for the rejections below)', async () => {
    await expect(auth.verifyAccessToken(await forge())).resolves.toMatchObject({ subject: alice.id });
  });

  const rejected: [string, () => Promise<string>][] = [
    [
      'a tampered signature',
      async () => {
        const [h, p, s] = (await login()).accessToken.split('.') as [string, string, string];
        const flipped = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
        return `${h}.${p}.${flipped}`;
      },
    ],
    [
      'a tampered payload (role raised to owner)',
      async () => {
        const [h, , s] = (await login()).accessToken.split('.') as [string, string, string];
        const claims = { ...decodeJwt((await login()).accessToken), role: 'owner' };
        return `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
      },
    ],
    [
      'alg none',
      async () =>
        new UnsecuredJWT({ tid: acme.id, role: 'owner' })
          .setSubject(alice.id)
          .setIssuer('tenantry')
          .setAudience('tenantry')
          .setIssuedAt()
          .setExpirationTime('5m')
          .setJti('x')
          .encode(),
    ],
    [
      'an expired token',
      () => forge({ iat: Math.floor(Date.now() / 1000) - 1000, exp: Math.floor(Date.now() / 1000) - 1 }),
    ],
    ['a wrong audience', () => forge({ aud: 'someone-else' })],
    ['a wrong issuer', () => forge({ iss: 'evil' })],
    ['another key', () => forge({}, { key: randomBytes(32) })],
    ['another HMAC algorithm (HS512)', () => forge({}, { alg: 'HS512' })],
    ['a malformed tenant claim', () => forge({ tid: 'acme' })],
    ['a custom role without its permissions', () => forge({ role: 'auditor' })],
    ['a built-in role with smuggled permissions', () => forge({ role: 'viewer', perms: ['items:write'] })],
    ['garbage', async () => 'not.a.jwt'],
    ['an empty string', async () => ''],
  ];
  for (const [what, make] of rejected) {
    it(`rejects ${what} with UNAUTHORIZED`, async () => {
      const token = await make();
      await expect(auth.verifyAccessToken(token)).rejects.toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    });
  }

  it('carries a custom role and its permissions', async () => {
    await f.tenantry.roles.define(acme.id, 'editor', ['items:read', 'items:write', 'reports:export']);
    await users.create(acme.id, { email: 'ed@tok.test', password: 'editor-password', role: 'editor' });
    const { accessToken } = await login('ed@tok.test', 'editor-password');
    expect(decodeJwt(accessToken).perms).toEqual(['items:read', 'items:write', 'reports:export']);
    const p = await auth.verifyAccessToken(accessToken);
    expect(p.role).toBe('editor');
    expect([...p.permissions].sort()).toEqual(['items:read', 'items:write', 'reports:export']);
  });
});

describe('refresh', () => {
  it('rotates: each token works once and the chain stays in one family', async () => {
    const first = await login();
    const second = await auth.refresh(first.refreshToken);
    const third = await auth.refresh(second.refreshToken);
    expect(new Set([first.refreshToken, second.refreshToken, third.refreshToken]).size).toBe(3);
    expect(await auth.verifyAccessToken(third.accessToken)).toMatchObject({ subject: alice.id, tenantId: acme.id });
    const rows = await tokenRows(third.refreshToken);
    expect(rows.map((r) => [r.used, r.revoked])).toEqual([
      [true, false],
      [true, false],
      [false, false],
    ]);
    expect(rows[1]?.parent_id).toBe(rows[0]?.id);
    expect(rows[2]?.parent_id).toBe(rows[1]?.id);
  });

  it('reuse of an old token revokes the whole family, the newest token included', async () => {
    const before = await auditCount('auth.refresh_reuse_detected');
    const first = await login();
    const second = await auth.refresh(first.refreshToken);
    const third = await auth.refresh(second.refreshToken);
    await expect(auth.refresh(first.refreshToken)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(auth.refresh(third.refreshToken)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await tokenRows(third.refreshToken)).every((r) => r.revoked)).toBe(true);
    expect(await auditCount('auth.refresh_reuse_detected')).toBe(before + 1);
    // Another session of the same user is untouched.
    const other = await login();
    await expect(auth.refresh(other.refreshToken)).resolves.toHaveProperty('refreshToken');
  });

  it('two concurrent refreshes of one token: exactly one gets a new pair', async () => {
    for (let round = 0; round < 5; round++) {
      const { refreshToken } = await login();
      const results = await Promise.allSettled([auth.refresh(refreshToken), auth.refresh(refreshToken)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const loser = results.find((r) => r.status === 'rejected');
      expect(loser?.reason).toMatchObject({ code: 'UNAUTHORIZED' });
      const rows = await tokenRows(refreshToken);
      // One child only; and the loser's presentation counts as reuse, so the family is revoked.
      expect(rows).toHaveLength(2);
      expect(rows.every((r) => r.revoked)).toBe(true);
    }
  });

  it('uses the current role: a role change applies at the next refresh', async () => {
    const u = await users.create(acme.id, { email: 'demoted@tok.test', password: 'demoted-pass', role: 'member' });
    const pair = await login('demoted@tok.test', 'demoted-pass');
    await users.setRole(acme.id, u.id, 'viewer');
    // The old access token keeps its role until it expires (documented).
    expect((await auth.verifyAccessToken(pair.accessToken)).role).toBe('member');
    const next = await auth.refresh(pair.refreshToken);
    const p = await auth.verifyAccessToken(next.accessToken);
    expect(p.role).toBe('viewer');
    expect(p.permissions.has('items:write')).toBe(false);
  });

  it('a removed membership ends the session', async () => {
    const u = await users.create(acme.id, { email: 'removed@tok.test', password: 'removed-pass', role: 'member' });
    const pair = await login('removed@tok.test', 'removed-pass');
    await users.remove(acme.id, u.id);
    await expect(auth.refresh(pair.refreshToken)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('is refused while the tenant is suspended, without consuming the token', async () => {
    const t = await f.tenantry.tenants.create({ slug: 'tok-pause', name: 'Pause' });
    await users.create(t.id, { email: 'alice@tok.test', role: 'member' });
    const pair = await login(undefined, undefined, t.id);
    await f.tenantry.tenants.suspend(t.id);
    await expect(auth.refresh(pair.refreshToken)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await f.tenantry.tenants.resume(t.id);
    await expect(auth.refresh(pair.refreshToken)).resolves.toHaveProperty('accessToken');
  });

  it('an expired refresh token is UNAUTHORIZED', async () => {
    const { refreshToken } = await login();
    await f.tenantry.adminPool.query(
      "UPDATE tenantry.refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
      [hmacHex(keys.key('refresh-token-hash'), refreshToken)],
    );
    await expect(auth.refresh(refreshToken)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('unknown and malformed tokens are UNAUTHORIZED', async () => {
    for (const token of [randomBytes(32).toString('base64url'), 'short', '', `${'x'.repeat(43)}=`, 42]) {
      await expect(auth.refresh(token as string)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    }
  });
});

describe('logout', () => {
  it('revokes the family: the current and earlier tokens stop working; audited once', async () => {
    const before = await auditCount('auth.logout');
    const first = await login();
    const second = await auth.refresh(first.refreshToken);
    expect(await auth.logout(second.refreshToken)).toBe(true);
    await expect(auth.refresh(second.refreshToken)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await tokenRows(second.refreshToken)).every((r) => r.revoked)).toBe(true);
    expect(await auth.logout(second.refreshToken)).toBe(false);
    expect(await auth.logout('not-a-token')).toBe(false);
    expect(await auditCount('auth.logout')).toBe(before + 1);
  });
});
