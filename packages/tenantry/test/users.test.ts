import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, createTenants, type Fixture } from '../../../test-support/fixture.ts';
import { PasswordHasher } from '../src/auth/passwords.ts';
import { requirePermission } from '../src/auth/permissions.ts';
import { UserStore } from '../src/auth/users.ts';
import type { TenantRecord, TenantryError } from '../src/index.ts';

let f: Fixture;
let users: UserStore;
let a: TenantRecord;
let b: TenantRecord;

beforeAll(async () => {
  f = await createFixture('users');
  users = new UserStore(f.tenantry.adminPool, { passwords: new PasswordHasher() });
  [a, b] = (await createTenants(f.tenantry, 'usr', 2)) as [TenantRecord, TenantRecord];
});

afterAll(async () => {
  await f?.close();
});

/** Everything this module writes, as the admin sees it. */
async function snapshot(): Promise<string> {
  const { rows } = await f.tenantry.adminPool.query<{ s: string }>(`
    SELECT jsonb_build_object(
      'users', (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY id), '[]') FROM tenantry.users x),
      'memberships', (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY tenant_id, user_id), '[]') FROM tenantry.memberships x),
      'roles', (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY tenant_id, name), '[]') FROM tenantry.roles x),
      'audit', (SELECT count(*) FROM tenantry.audit_log)
    )::text AS s`);
  return rows[0]?.s as string;
}

async function auditOf(tenantId: string, action: string) {
  const { rows } = await f.tenantry.adminPool.query<{ actor: string; details: Record<string, unknown>; xmin: string }>(
    'SELECT actor, details, xmin::text AS xmin FROM tenantry.audit_log WHERE tenant_id = $1 AND action = $2 ORDER BY id',
    [tenantId, action],
  );
  return rows;
}

const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e as TenantryError,
  );

describe('0004_users migration', () => {
  it('creates the tables owned by the owner role, with no privilege for the runtime role', async () => {
    const { owner, runtime } = f.database.roles;
    const { rows } = await f.tenantry.adminPool.query<{ table: string; owner: string; runtime: boolean }>(
      `SELECT c.relname AS table, pg_get_userbyid(c.relowner) AS owner,
              has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS runtime
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'tenantry' AND c.relname IN ('users', 'memberships', 'roles', 'refresh_tokens')
        ORDER BY 1`,
      [runtime],
    );
    expect(rows).toEqual(
      ['memberships', 'refresh_tokens', 'roles', 'users'].map((table) => ({ table, owner, runtime: false })),
    );
  });

  it('the runtime pool cannot read users', async () => {
    await users.create(a.id, { email: 'rt@usr.test', password: 'password-rt', role: 'member' });
    await expect(f.tenantry.runtimePool.query('SELECT password_hash FROM tenantry.users')).rejects.toMatchObject({
      code: '42501',
    });
  });
});

describe('create', () => {
  it('creates a user with an argon2id hash, audited in the same transaction', async () => {
    const u = await users.create(
      a.id,
      { email: ' Alice@Usr.Test ', password: 'alice-password', role: 'admin' },
      {
        actor: 'ops',
      },
    );
    expect(u).toMatchObject({ tenantId: a.id, email: 'Alice@Usr.Test', role: 'admin' });
    expect(Object.isFrozen(u)).toBe(true);
    const { rows } = await f.tenantry.adminPool.query<{ password_hash: string; xmin: string }>(
      'SELECT u.password_hash, m.xmin::text AS xmin FROM tenantry.users u JOIN tenantry.memberships m ON m.user_id = u.id WHERE u.id = $1',
      [u.id],
    );
    expect(rows[0]?.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const audit = await auditOf(a.id, 'user.created');
    const entry = audit.find((e) => e.details.userId === u.id);
    expect(entry).toMatchObject({ actor: 'ops', details: { role: 'admin', newAccount: true, invited: false } });
    expect(entry?.xmin).toBe(rows[0]?.xmin);
  });

  it('adds the same person to another tenant with another role; email match ignores case', async () => {
    const inA = await users.create(a.id, { email: 'multi@usr.test', password: 'multi-password', role: 'viewer' });
    const inB = await users.create(b.id, { email: 'MULTI@usr.test', role: 'owner' });
    expect(inB.id).toBe(inA.id);
    expect(inB).toMatchObject({ tenantId: b.id, role: 'owner', email: 'multi@usr.test' });
    expect((await users.get(a.id, inA.id)).role).toBe('viewer');
    const audit = await auditOf(b.id, 'user.created');
    expect(audit.at(-1)?.details).toMatchObject({ userId: inA.id, newAccount: false });
  });

  it("never changes an existing account's password from another tenant", async () => {
    const invited = await users.create(a.id, { email: 'invited@usr.test', role: 'member' });
    const hashOf = async (id: string) =>
      (await f.tenantry.adminPool.query('SELECT password_hash FROM tenantry.users WHERE id = $1', [id])).rows[0]
        ?.password_hash;
    expect(await hashOf(invited.id)).toBeNull();
    await users.create(b.id, { email: 'invited@usr.test', password: 'takeover-attempt', role: 'owner' });
    expect(await hashOf(invited.id)).toBeNull();
  });

  it('adding an existing member again is INVALID_INPUT and writes nothing', async () => {
    await users.create(a.id, { email: 'twice@usr.test', role: 'member' });
    const before = await snapshot();
    const error = await errorOf(users.create(a.id, { email: 'TWICE@usr.test', role: 'admin' }));
    expect(error).toMatchObject({ code: 'INVALID_INPUT', status: 400 });
    expect(await snapshot()).toBe(before);
  });

  it('an unknown tenant is TENANT_NOT_FOUND; an offboarding one TENANT_NOT_ACTIVE', async () => {
    await expect(
      users.create('00000000-0000-4000-8000-000000000000', { email: 'x@usr.test', role: 'member' }),
    ).rejects.toMatchObject({ code: 'TENANT_NOT_FOUND' });
    const [gone] = await createTenants(f.tenantry, 'usr-off', 1);
    await f.tenantry.tenants.offboard((gone as TenantRecord).id);
    await expect(
      users.create((gone as TenantRecord).id, { email: 'x@usr.test', role: 'member' }),
    ).rejects.toMatchObject({ code: 'TENANT_NOT_ACTIVE' });
  });

  const invalid: [string, unknown][] = [
    ['a malformed email', { email: 'not-an-email', role: 'member' }],
    ['an empty email', { email: '', role: 'member' }],
    ['a 300-character email', { email: `${'x'.repeat(290)}@usr.test`, role: 'member' }],
    ['a short password', { email: 'short@usr.test', password: 'short', role: 'member' }],
    ['a non-string password', { email: 'num@usr.test', password: 12345678, role: 'member' }],
    ['no role', { email: 'norole@usr.test' }],
    ['a malformed role', { email: 'badrole@usr.test', role: 'Not A Role' }],
    ['an unknown role', { email: 'unknownrole@usr.test', role: 'wizard' }],
    ['an unknown field', { email: 'extra@usr.test', role: 'member', admin: true }],
    ['no input', undefined],
  ];
  for (const [what, input] of invalid) {
    it(`rejects ${what} with INVALID_INPUT and writes nothing`, async () => {
      const before = await snapshot();
      const error = await errorOf(users.create(a.id, input as never));
      expect(error).toMatchObject({ code: 'INVALID_INPUT', status: 400 });
      expect(await snapshot()).toBe(before);
    });
  }

  it('rejects a malformed tenant id with INVALID_INPUT', async () => {
    const before = await snapshot();
    await expect(users.create("'; DROP TABLE x; --", { email: 'x@usr.test', role: 'member' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    for (const call of [users.list('nope'), users.get(a.id, 'nope'), users.setRole('nope', a.id, 'viewer')]) {
      await expect(call).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    }
    expect(await snapshot()).toBe(before);
  });
});

describe('tenant isolation', () => {
  it("a user of tenant A is invisible from tenant B, and B's calls change nothing", async () => {
    const onlyA = await users.create(a.id, { email: 'only-a@usr.test', password: 'only-a-pass', role: 'member' });
    expect((await users.list(a.id)).map((u) => u.id)).toContain(onlyA.id);
    expect((await users.list(b.id)).map((u) => u.id)).not.toContain(onlyA.id);
    const before = await snapshot();
    // Thunks, run one at a time: a promise created early and rejected before it is
    // awaited would be reported as an unhandled rejection.
    for (const call of [
      () => users.get(b.id, onlyA.id),
      () => users.setRole(b.id, onlyA.id, 'owner'),
      () => users.remove(b.id, onlyA.id),
      () => users.principalFor(b.id, onlyA.id),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 });
    }
    expect(await snapshot()).toBe(before);
    expect((await users.get(a.id, onlyA.id)).role).toBe('member');
  });

  it('an unknown user is NOT_FOUND the same way', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    const here = await errorOf(users.get(a.id, unknown));
    const inA = await users.create(a.id, { email: 'same-way@usr.test', role: 'member' });
    const elsewhere = await errorOf(users.get(b.id, inA.id));
    expect([here.code, here.message]).toEqual([elsewhere.code, elsewhere.message]);
  });

  it('a custom role of tenant A cannot be given in tenant B', async () => {
    await f.tenantry.roles.define(a.id, 'a-only', ['items:read']);
    const before = await snapshot();
    await expect(users.create(b.id, { email: 'arole@usr.test', role: 'a-only' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    expect(await snapshot()).toBe(before);
  });
});

describe('reads never return password hashes', () => {
  it('create, get, list, setRole return only id, tenant, email, role and times', async () => {
    const created = await users.create(a.id, { email: 'nohash@usr.test', password: 'nohash-pass', role: 'member' });
    const results = [
      created,
      await users.get(a.id, created.id),
      ...(await users.list(a.id)),
      await users.setRole(a.id, created.id, 'viewer'),
    ];
    for (const r of results) {
      expect(Object.keys(r).sort()).toEqual(['createdAt', 'email', 'id', 'role', 'tenantId', 'updatedAt']);
      expect(JSON.stringify(r)).not.toMatch(/argon2|password/i);
    }
  });
});

describe('roles and permissions', () => {
  it('viewer lacks items:write, member has it', async () => {
    const viewer = await users.create(a.id, { email: 'viewer@usr.test', role: 'viewer' });
    const member = await users.create(a.id, { email: 'member@usr.test', role: 'member' });
    const pv = await users.principalFor(a.id, viewer.id);
    const pm = await users.principalFor(a.id, member.id);
    expect(pv).toMatchObject({ kind: 'user', tenantId: a.id, subject: viewer.id, role: 'viewer' });
    expect(pv.permissions.has('items:read')).toBe(true);
    expect(pv.permissions.has('items:write')).toBe(false);
    expect(() => requirePermission(pv, 'items:write')).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(pm.permissions.has('items:write')).toBe(true);
    expect(() => requirePermission(pm, 'items:write')).not.toThrow();
  });

  it('a custom role grants exactly its permissions, and redefining it changes them', async () => {
    const role = await f.tenantry.roles.define(a.id, 'auditor', ['audit:read', 'tenant:read', 'audit:read'], {
      actor: 'ops',
    });
    expect(role).toEqual({
      tenantId: a.id,
      name: 'auditor',
      permissions: ['audit:read', 'tenant:read'],
      builtin: false,
    });
    const u = await users.create(a.id, { email: 'auditor@usr.test', role: 'auditor' });
    const p = await users.principalFor(a.id, u.id);
    expect([...p.permissions].sort()).toEqual(['audit:read', 'tenant:read']);
    expect(p.role).toBe('auditor');
    await f.tenantry.roles.define(a.id, 'auditor', ['audit:read', 'items:read']);
    expect([...(await users.principalFor(a.id, u.id)).permissions].sort()).toEqual(['audit:read', 'items:read']);
    const audit = await auditOf(a.id, 'role.defined');
    expect(audit.filter((e) => e.details.name === 'auditor').map((e) => e.details.created)).toEqual([true, false]);
    const names = (await f.tenantry.roles.list(a.id)).map((r) => r.name);
    expect(names.slice(0, 4)).toEqual(['owner', 'admin', 'member', 'viewer']);
    expect(names).toContain('auditor');
  });

  const badRoles: [string, string, unknown][] = [
    ['a built-in name', 'admin', ['items:read']],
    ['a malformed name', 'Bad Role', ['items:read']],
    ['a malformed permission', 'ok-role', ['items']],
    ['permissions that are not strings', 'ok-role', [1, 2]],
    ['more than 64 permissions', 'ok-role', Array.from({ length: 65 }, (_, i) => `p${i}:read`)],
  ];
  for (const [what, name, permissions] of badRoles) {
    it(`roles.define rejects ${what} with INVALID_INPUT and writes nothing`, async () => {
      const before = await snapshot();
      const error = await errorOf(f.tenantry.roles.define(a.id, name, permissions as string[]));
      expect(error).toMatchObject({ code: 'INVALID_INPUT' });
      expect(await snapshot()).toBe(before);
    });
  }

  it('a custom role in use cannot be dropped behind the API (foreign key)', async () => {
    await f.tenantry.roles.define(b.id, 'held', ['items:read']);
    await users.create(b.id, { email: 'held@usr.test', role: 'held' });
    await expect(
      f.tenantry.adminPool.query("DELETE FROM tenantry.roles WHERE tenant_id = $1 AND name = 'held'", [b.id]),
    ).rejects.toMatchObject({ code: '23503' });
  });
});

describe('setRole and remove', () => {
  it('setRole changes the role, audited with from and to', async () => {
    const u = await users.create(a.id, { email: 'promote@usr.test', role: 'viewer' });
    const updated = await users.setRole(a.id, u.id, 'admin', { actor: 'user:1' });
    expect(updated.role).toBe('admin');
    expect((await users.principalFor(a.id, u.id)).permissions.has('users:write')).toBe(true);
    expect((await auditOf(a.id, 'user.role_changed')).at(-1)).toMatchObject({
      actor: 'user:1',
      details: { userId: u.id, from: 'viewer', to: 'admin' },
    });
  });

  it('setRole to a role the tenant does not have is INVALID_INPUT and changes nothing', async () => {
    const u = await users.create(a.id, { email: 'stay@usr.test', role: 'viewer' });
    const before = await snapshot();
    await expect(users.setRole(a.id, u.id, 'emperor')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    expect(await snapshot()).toBe(before);
  });

  it('remove drops the membership only; the account and other memberships stay', async () => {
    const inA = await users.create(a.id, { email: 'leaver@usr.test', password: 'leaver-pass', role: 'member' });
    await users.create(b.id, { email: 'leaver@usr.test', role: 'member' });
    await users.remove(a.id, inA.id, { actor: 'ops' });
    await expect(users.get(a.id, inA.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await users.list(a.id)).map((u) => u.id)).not.toContain(inA.id);
    expect((await users.get(b.id, inA.id)).role).toBe('member');
    expect((await auditOf(a.id, 'user.removed')).at(-1)).toMatchObject({ actor: 'ops', details: { userId: inA.id } });
    await expect(users.remove(a.id, inA.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('max_users quota', () => {
  it('refuses the user that would exceed max_users with QUOTA_EXCEEDED, writing nothing', async () => {
    const small = await f.tenantry.tenants.create({ slug: 'usr-small', name: 'Small', limits: { maxUsers: 2 } });
    await users.create(small.id, { email: 'q1@usr.test', role: 'owner' });
    // An existing account joining counts as a user of the tenant too.
    await users.create(small.id, { email: 'multi@usr.test', role: 'member' });
    const before = await snapshot();
    const error = await errorOf(
      users.create(small.id, { email: 'q3@usr.test', password: 'q3-password', role: 'member' }),
    );
    expect(error).toMatchObject({ code: 'QUOTA_EXCEEDED', status: 409 });
    expect(await snapshot()).toBe(before);
    expect(await users.list(small.id)).toHaveLength(2);
  });

  it('holds under concurrent creates', async () => {
    const small = await f.tenantry.tenants.create({ slug: 'usr-race', name: 'Race', limits: { maxUsers: 3 } });
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => users.create(small.id, { email: `race${i}@usr.test`, role: 'member' })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'QUOTA_EXCEEDED' });
    }
    expect(await users.list(small.id)).toHaveLength(3);
  });

  it('can be left to an admission layer', async () => {
    const small = await f.tenantry.tenants.create({ slug: 'usr-noq', name: 'NoQ', limits: { maxUsers: 1 } });
    const lax = new UserStore(f.tenantry.adminPool, { enforceMaxUsers: false });
    await lax.create(small.id, { email: 'nq1@usr.test', role: 'owner' });
    await lax.create(small.id, { email: 'nq2@usr.test', role: 'member' });
    expect(await users.list(small.id)).toHaveLength(2);
  });
});

describe('tenant deletion', () => {
  it('a hard delete removes the memberships, custom roles and the accounts of users of no other tenant', async () => {
    const [t] = (await createTenants(f.tenantry, 'usr-del', 1)) as [TenantRecord];
    await f.tenantry.roles.define(t.id, 'temp', ['items:read']);
    const u = await users.create(t.id, { email: 'del@usr.test', role: 'temp' });
    await f.tenantry.tenants.delete(t.id, { hard: true });
    const { rows } = await f.tenantry.adminPool.query<{ m: number; r: number; u: number }>(
      `SELECT (SELECT count(*)::int FROM tenantry.memberships WHERE tenant_id = $1) AS m,
              (SELECT count(*)::int FROM tenantry.roles WHERE tenant_id = $1) AS r,
              (SELECT count(*)::int FROM tenantry.users WHERE id = $2) AS u`,
      [t.id, u.id],
    );
    expect(rows[0]).toEqual({ m: 0, r: 0, u: 0 });
  });
});
