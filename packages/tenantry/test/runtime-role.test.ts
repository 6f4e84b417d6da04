import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverUrl } from '../../../test-support/database.ts';
import { type AppDB, appMigrations, createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { type TenantRecord, Tenantry, TenantryError } from '../src/index.ts';

let f: Fixture;
let tenant: TenantRecord;
const suffix = randomBytes(4).toString('hex');
const password = randomBytes(12).toString('hex');
/** Roles this file creates (on the server, so they outlive the database): dropped in afterAll. */
const roles = {
  superuser: `tt_${suffix}_su`,
  bypassrls: `tt_${suffix}_bypass`,
  tableOwner: `tt_${suffix}_tblowner`,
  ownerMember: `tt_${suffix}_member`,
  normal: `tt_${suffix}_normal`,
  createRole: `tt_${suffix}_createrole`,
};
/** `server_version_num` of the test server. */
let serverVersion = 0;
const opened: Tenantry<AppDB>[] = [];

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: f.database.url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function urlAs(role: string): string {
  const url = new URL(f.database.url);
  url.username = role;
  url.password = password;
  return url.toString();
}

async function tenantryAs(role: string): Promise<Tenantry<AppDB>> {
  const t = await Tenantry.connect<AppDB>({
    databaseUrl: f.database.url,
    runtimeUrl: urlAs(role),
    secret: f.database.secret,
    roles: f.database.roles,
    migrations: appMigrations,
    pool: { max: 2 },
  });
  opened.push(t);
  return t;
}

beforeAll(async () => {
  f = await createFixture('runtime_role');
  tenant = await f.tenantry.tenants.create({ slug: 'role-acme', name: 'Acme' });
  await f.tenantry.transaction(tenant, (tx) => tx.query("INSERT INTO items (title) VALUES ('secret')"));
  const { owner, runtime } = f.database.roles;
  await admin(async (c) => {
    const login = `LOGIN PASSWORD '${password}'`;
    await c.query(`CREATE ROLE ${roles.superuser} ${login} SUPERUSER`);
    await c.query(`CREATE ROLE ${roles.bypassrls} ${login} BYPASSRLS IN ROLE ${runtime}`);
    await c.query(`CREATE ROLE ${roles.tableOwner} ${login} IN ROLE ${runtime}`);
    await c.query(`CREATE ROLE ${roles.ownerMember} ${login} IN ROLE ${runtime}, ${owner}`);
    await c.query(`CREATE ROLE ${roles.normal} ${login} IN ROLE ${runtime}`);
    await c.query(`CREATE ROLE ${roles.createRole} ${login} CREATEROLE IN ROLE ${runtime}`);
    const version = await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
    serverVersion = Number(version.rows[0]?.v);
    // A tenant table (RLS enabled and forced) owned by the runtime-like role.
    await c.query('CREATE TABLE notes (tenant_id uuid NOT NULL, body text)');
    await c.query('ALTER TABLE notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY');
    await c.query(`ALTER TABLE notes OWNER TO ${roles.tableOwner}`);
  });
});

afterAll(async () => {
  await Promise.all(opened.map((t) => t.close()));
  await f?.close();
  const c = new pg.Client({ connectionString: serverUrl() });
  await c.connect();
  try {
    for (const role of Object.values(roles)) await c.query(`DROP ROLE IF EXISTS ${role}`);
  } finally {
    await c.end();
  }
});

describe('tenant work through a role that could bypass row-level security is refused', () => {
  const cases = [
    { what: 'a SUPERUSER', role: () => roles.superuser, reason: /is SUPERUSER/ },
    { what: 'a BYPASSRLS role', role: () => roles.bypassrls, reason: /is BYPASSRLS/ },
    { what: 'the owner of a tenant table', role: () => roles.tableOwner, reason: /is the owner of tables/ },
    {
      what: 'a member of the owner role',
      role: () => roles.ownerMember,
      reason: () => new RegExp(`is a member of "${f.database.roles.owner}", which is the owner of tables`),
    },
  ] as const;

  for (const c of cases) {
    it(`${c.what}: UNSAFE_RUNTIME_ROLE, naming the fix, and the callback never runs`, async () => {
      const t = await tenantryAs(c.role());
      let ran = false;
      const attempt = () =>
        t.transaction(tenant, async (tx) => {
          ran = true;
          return tx.query('SELECT title FROM items');
        });
      const error = await attempt().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TenantryError);
      const e = error as TenantryError;
      expect(e.code).toBe('UNSAFE_RUNTIME_ROLE');
      expect(e.status).toBe(500);
      expect(e.message).toContain(`role "${c.role()}"`);
      expect(e.message).toMatch(typeof c.reason === 'function' ? c.reason() : c.reason);
      // The fix: which attributes the role needs, and what to use instead.
      expect(e.message).toContain('NOSUPERUSER NOBYPASSRLS');
      expect(e.message).toContain('leave runtimeUrl unset');
      expect(e.details).toMatchObject({ role: c.role() });
      expect(ran).toBe(false);
      // Still refused on the next attempt: the check is not a one-off.
      await expect(attempt()).rejects.toMatchObject({ code: 'UNSAFE_RUNTIME_ROLE' });
      expect(ran).toBe(false);
    });
  }
});

describe('a CREATEROLE runtime role', () => {
  it('is refused before PostgreSQL 16, where it could grant itself the owner role and read every tenant', async () => {
    const t = await tenantryAs(roles.createRole);
    const work = t.transaction(tenant, (tx) => tx.query<{ title: string }>('SELECT title FROM items'));
    if (serverVersion < 160000) {
      await expect(work).rejects.toMatchObject({
        code: 'UNSAFE_RUNTIME_ROLE',
        message: expect.stringContaining('CREATEROLE'),
      });
      // Why: the role really can escalate to the table owner, which is not subject to RLS here.
      const c = new pg.Client({ connectionString: urlAs(roles.createRole) });
      await c.connect();
      try {
        await c.query(`GRANT ${f.database.roles.owner} TO ${roles.createRole}`);
        await c.query(`REVOKE ${f.database.roles.owner} FROM ${roles.createRole}`);
      } finally {
        await c.end();
      }
    } else {
      // From 16 on, CREATEROLE grants only roles it administers: no way to the owner role.
      expect((await work).rows).toEqual([{ title: 'secret' }]);
    }
  });
});

describe('safe runtime roles work', () => {
  it('the runtime role setup() created (default runtime URL)', async () => {
    const { rows } = await f.tenantry.transaction(tenant, (tx) =>
      tx.query<{ title: string }>('SELECT title FROM items'),
    );
    expect(rows).toEqual([{ title: 'secret' }]);
  });

  it('a plain LOGIN role that is a member of the runtime role', async () => {
    const t = await tenantryAs(roles.normal);
    const { rows } = await t.transaction(tenant, (tx) =>
      tx.query<{ title: string; me: string }>('SELECT title, current_user AS me FROM items'),
    );
    expect(rows).toEqual([{ title: 'secret', me: roles.normal }]);
  });
});
