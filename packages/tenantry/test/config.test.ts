import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.ts';
import { postgresDialect, type TenantMigration, Tenantry, type TenantryOptions } from '../src/index.ts';

const base: TenantryOptions = {
  databaseUrl: 'postgres://admin@127.0.0.1:5432/app',
  secret: 's'.repeat(32),
};
const noop = async () => {};

function rejects(options: unknown, code = 'CONFIG_INVALID', message?: RegExp): void {
  let error: unknown;
  try {
    resolveConfig(options as TenantryOptions);
  } catch (e) {
    error = e;
  }
  expect(error).toMatchObject({ code, status: 500 });
  if (message) expect((error as Error).message).toMatch(message);
}

describe('resolveConfig', () => {
  it('defaults everything but databaseUrl and secret', () => {
    const c = resolveConfig(base);
    expect(c).toMatchObject({
      databaseUrl: base.databaseUrl,
      runtimeUrl: undefined,
      roles: { owner: 'tenantry_owner', runtime: 'tenantry_runtime' },
      tenantSchema: 'public',
      migrations: [],
      pool: {
        max: 10,
        idleTimeoutMs: 30_000,
        maxUses: 100_000,
        maxPerTenant: 9,
        maxSchemasPerConnection: 1_000,
        tenantAffinity: true,
        affinityWaitMs: 20,
      },
      contextTokenTtlMs: 10_000,
      logger: undefined,
    });
    expect(c.dialect).toBe(postgresDialect);
  });

  it('returns a deeply frozen object, detached from the caller’s options', () => {
    const migrations: TenantMigration[] = [{ id: '001', up: noop }];
    const options = { ...base, roles: { owner: 'o', runtime: 'r' }, pool: { max: 3 }, migrations };
    const c = resolveConfig(options);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.roles)).toBe(true);
    expect(Object.isFrozen(c.pool)).toBe(true);
    expect(Object.isFrozen(c.migrations)).toBe(true);
    expect(() => {
      (c as { databaseUrl: string }).databaseUrl = 'postgres://evil';
    }).toThrow(TypeError);
    expect(() => {
      (c.roles as { runtime: string }).runtime = 'postgres';
    }).toThrow(TypeError);
    expect(() => (c.migrations as TenantMigration[]).push({ id: '002', up: noop })).toThrow(TypeError);
    // Changing the caller's objects afterwards changes nothing resolved.
    migrations.push({ id: '002', up: noop });
    options.roles.runtime = 'postgres';
    options.pool.max = 1000;
    expect(c.migrations.map((m) => m.id)).toEqual(['001']);
    expect(c.roles.runtime).toBe('r');
    expect(c.pool.max).toBe(3);
  });

  it.each([
    ['upper case', 'Owner'],
    ['a hyphen', 'app-owner'],
    ['a leading digit', '1owner'],
    ['quotes', 'o"wner'],
    ['SQL', 'x; DROP ROLE postgres'],
    ['64 characters', 'o'.repeat(64)],
    ['an empty name', ''],
    ['a number', 42],
  ])('rejects a role name with %s', (_what, name) => {
    rejects({ ...base, roles: { owner: name } }, 'CONFIG_INVALID', /roles\.owner/);
    rejects({ ...base, roles: { runtime: name } }, 'CONFIG_INVALID', /roles\.runtime/);
  });

  it('accepts a 63-character role name', () => {
    expect(resolveConfig({ ...base, roles: { owner: 'o'.repeat(63) } }).roles.owner).toBe('o'.repeat(63));
  });

  it('rejects equal owner and runtime roles, given or defaulted', () => {
    rejects({ ...base, roles: { owner: 'app', runtime: 'app' } }, 'CONFIG_INVALID', /must differ/);
    rejects({ ...base, roles: { owner: 'tenantry_runtime' } }, 'CONFIG_INVALID', /must differ/);
    rejects({ ...base, roles: { runtime: 'tenantry_owner' } }, 'CONFIG_INVALID', /must differ/);
  });

  it('rejects duplicate and malformed migrations', () => {
    rejects(
      {
        ...base,
        migrations: [
          { id: '001', up: noop },
          { id: '002', up: noop },
          { id: '001', up: noop },
        ],
      },
      'CONFIG_INVALID',
      /duplicate migration id 001/,
    );
    rejects({ ...base, migrations: [{ id: '', up: noop }] });
    rejects({ ...base, migrations: [{ id: '001' }] });
    rejects({ ...base, migrations: [{ id: 1, up: noop }] });
    rejects({ ...base, migrations: [null] });
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10', null])('rejects pool.max %s', (max) => {
    rejects({ ...base, pool: { max } }, 'CONFIG_INVALID', /pool\.max/);
  });

  it.each([-1, 2.5, 10_001, Number.NaN])('rejects pool.affinityWaitMs %s; 0 turns the wait off', (value) => {
    rejects({ ...base, pool: { affinityWaitMs: value } }, 'CONFIG_INVALID', /pool\.affinityWaitMs/);
    expect(resolveConfig({ ...base, pool: { affinityWaitMs: 0 } }).pool.affinityWaitMs).toBe(0);
  });

  it.each([0, -5, 2.5])('rejects %s as pool.idleTimeoutMs and as contextTokenTtlMs', (value) => {
    rejects({ ...base, pool: { idleTimeoutMs: value } }, 'CONFIG_INVALID', /pool\.idleTimeoutMs/);
    rejects({ ...base, contextTokenTtlMs: value }, 'CONFIG_INVALID', /contextTokenTtlMs/);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['not a string', 5432],
  ])('rejects a databaseUrl that is %s', (_what, databaseUrl) => {
    rejects({ ...base, databaseUrl }, 'CONFIG_INVALID', /databaseUrl/);
  });

  it('citus: the peer binding defaults to certificate with no subject (fail closed), validated and frozen', () => {
    const citus = { ...base, dialect: 'citus' as const };
    expect(resolveConfig(citus).citus).toEqual({ peerCertificateDn: undefined, peerBinding: 'certificate' });
    const c = resolveConfig({ ...citus, citus: { peerCertificateDn: '/CN=tenantry-coordinator' } });
    expect(c.citus).toEqual({ peerCertificateDn: '/CN=tenantry-coordinator', peerBinding: 'certificate' });
    expect(Object.isFrozen(c.citus)).toBe(true);
    expect(resolveConfig({ ...citus, citus: { peerBinding: 'network' } }).citus.peerBinding).toBe('network');
    rejects(
      { ...citus, citus: { peerBinding: 'trust' } },
      'CONFIG_INVALID',
      /peerBinding must be 'certificate' or 'network'/,
    );
    rejects({ ...citus, citus: { peerCertificateDn: '' } }, 'CONFIG_INVALID', /client_dn/);
    rejects({ ...citus, citus: { peerCertificateDn: 'tenantry-coordinator' } }, 'CONFIG_INVALID', /client_dn/);
    rejects({ ...citus, citus: { peerCertificateDn: '/CN=a\nb' } }, 'CONFIG_INVALID', /client_dn/);
    rejects({ ...citus, citus: { peerCertificateDn: `/CN=${'x'.repeat(60)}` } }, 'CONFIG_INVALID', /63 bytes/);
    rejects(
      { ...citus, citus: { peerCertificateDn: '/CN=a', peerBinding: 'network' } },
      'CONFIG_INVALID',
      /exclude each other/,
    );
    rejects({ ...citus, citus: 'network' }, 'CONFIG_INVALID', /citus must be an object/);
    rejects({ ...base, citus: { peerBinding: 'network' } }, 'CONFIG_INVALID', /only with dialect: 'citus'/);
  });

  it('rejects no options at all', () => {
    rejects(undefined, 'CONFIG_INVALID');
  });

  it('rejects a bad tenant schema', () => {
    rejects({ ...base, tenantSchema: 'Public' }, 'CONFIG_INVALID', /tenantSchema/);
    rejects({ ...base, tenantSchema: 'a.b' }, 'CONFIG_INVALID', /tenantSchema/);
  });

  it('a missing or short secret is MISSING_SECRET, telling how to make one', () => {
    rejects({ ...base, secret: undefined }, 'MISSING_SECRET', /openssl rand/);
    rejects({ ...base, secret: 'x'.repeat(31) }, 'MISSING_SECRET', /at least 32/);
  });

  it('Tenantry.connect applies the same validation before touching any database', async () => {
    await expect(Tenantry.connect({ ...base, pool: { max: 0 } })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(Tenantry.connect({ ...base, databaseUrl: 'not a url' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining('runtimeUrl'),
    });
  });
});

describe('reserved and malformed values', () => {
  it('rejects pg_-prefixed role names and a non-array migrations option', () => {
    const base = { databaseUrl: 'postgres://x@127.0.0.1/db', secret: 'x'.repeat(32) };
    expect(() => resolveConfig({ ...base, roles: { runtime: 'pg_runtime' } })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
    expect(() => resolveConfig({ ...base, migrations: 'nope' as never })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});
