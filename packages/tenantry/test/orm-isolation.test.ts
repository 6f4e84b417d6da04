import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, serverUrl, type TestDatabase } from '../../../test-support/database.ts';
import { type AppDB, appMigrations, createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { ORM_DRIVERS, type OrmDriver } from '../../../test-support/orm-drivers.ts';
import { hasPgBouncer, PGBOUNCER_MISSING, type PgBouncer, startPgBouncer } from '../../../test-support/pgbouncer.ts';
import { type IsolationTier, type TenantRecord, Tenantry, withTenant } from '../src/index.ts';
import { KeyRing } from '../src/secrets/keys.ts';

/**
 * The cross-tenant suite through every ORM integration (Kysely, Drizzle, Prisma), on the
 * three tiers and on the pool tier behind PgBouncer in transaction mode: the same
 * application code, naming no tenant, must see and change only its own tenant's rows.
 */

if (!hasPgBouncer) console.warn(`orm-isolation.test.ts: ${PGBOUNCER_MISSING}`);

const TIERS: IsolationTier[] = ['pool', 'schema', 'database'];
const ORMS = Object.keys(ORM_DRIVERS) as (keyof typeof ORM_DRIVERS)[];

/** What an error may show the caller: nothing naming the other tenant. */
function expectNothingOf(error: unknown, other: TenantRecord, secrets: string[]): void {
  const text = `${String(error)} ${JSON.stringify(error, Object.getOwnPropertyNames(error ?? {}))}`;
  for (const leak of [other.slug, ...secrets]) expect(text).not.toContain(leak);
}

/** The assertions, for one ORM on one Tenantry (its tier decided by `tier`). */
function crossTenantSuite(label: string, setup: () => { tenantry: Tenantry<AppDB>; tier: IsolationTier }) {
  describe.each(ORMS)(`${label}: %s`, (orm) => {
    let driver: OrmDriver;
    let a: TenantRecord;
    let b: TenantRecord;
    let bItem: string;
    const as = <T>(t: TenantRecord, fn: () => Promise<T>) =>
      withTenant({ id: t.id, slug: t.slug, tier: t.tier, plan: t.plan, status: t.status }, fn);

    beforeAll(async () => {
      const { tenantry, tier } = setup();
      driver = ORM_DRIVERS[orm](tenantry);
      const suffix = `${label}-${orm}`.toLowerCase().replaceAll(/[^a-z0-9]+/g, '-');
      a = await tenantry.tenants.create({ slug: `a-${suffix}`, name: 'A', tier });
      b = await tenantry.tenants.create({ slug: `b-${suffix}`, name: 'B', tier });
      expect(b.tier).toBe(tier);
      await as(a, () => driver.insert('alpha one'));
      await as(a, () => driver.insert('alpha two'));
      bItem = await as(b, () => driver.insert('bravo secret'));
    });

    afterAll(async () => {
      await driver?.close();
    });

    it('a query with no tenant filter returns only the caller’s rows, raw SQL too', async () => {
      expect(await as(a, () => driver.titles())).toEqual(['alpha one', 'alpha two']);
      expect(await as(b, () => driver.titles())).toEqual(['bravo secret']);
      expect(await as(a, () => driver.rawTitles())).toEqual(['alpha one', 'alpha two']);
      expect(await as(b, () => driver.rawTitles())).toEqual(['bravo secret']);
    });

    it('another tenant’s row is not found by id', async () => {
      expect(await as(b, () => driver.find(bItem))).toBe('bravo secret');
      expect(await as(a, () => driver.find(bItem))).toBeNull();
    });

    it('concurrent lookups of two tenants in the same tick each run for their own tenant', async () => {
      // Prisma batches findUnique calls of one tick into one query: they must not merge.
      for (let round = 0; round < 5; round++) {
        const [fromA, fromB, fromA2] = await Promise.all([
          as(a, () => driver.find(bItem)),
          as(b, () => driver.find(bItem)),
          as(a, () => driver.find(bItem)),
        ]);
        expect([fromA, fromB, fromA2]).toEqual([null, 'bravo secret', null]);
      }
    });

    it('update and delete cannot reach another tenant’s rows (0 rows affected)', async () => {
      expect(await as(a, () => driver.rename('bravo secret', 'pwned'))).toBe(0);
      expect(await as(a, () => driver.remove(bItem))).toBe(0);
      expect(await as(b, () => driver.titles())).toEqual(['bravo secret']);
    });

    it('insert with another tenant’s id fails, plants nothing, and the error names nothing of it', async () => {
      const error = await as(a, () => driver.insertAs(b.id, 'planted')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeDefined();
      expectNothingOf(error, b, ['bravo secret']);
      expect(await as(b, () => driver.titles())).toEqual(['bravo secret']);
      expect(await as(a, () => driver.titles())).toEqual(['alpha one', 'alpha two']);
    });

    it('a nested write / ORM transaction lands in the caller’s tenant, and relations load', async () => {
      const id = await as(a, () => driver.insertWithComments('alpha parent', ['c1', 'c2']));
      expect(await as(a, () => driver.commentsOf(id))).toEqual(['c1', 'c2']);
      expect(await as(b, () => driver.commentsOf(id))).toEqual([]);
      expect(await as(a, () => driver.remove(id))).toBe(1);
    });

    it('an ORM transaction that fails leaves nothing', async () => {
      await expect(as(a, () => driver.insertThenFail('alpha ghost'))).rejects.toThrow('rolled back on purpose');
      expect(await as(a, () => driver.titles())).toEqual(['alpha one', 'alpha two']);
    });

    it('outside any tenant context nothing runs', async () => {
      const error = await driver.titles().then(
        () => undefined,
        (e: unknown) => e as { code?: string; cause?: { code?: string } },
      );
      // Drizzle wraps the driver's error (`cause`); the others pass it on.
      expect(error?.code ?? error?.cause?.code).toBe('NO_TENANT_CONTEXT');
    });
  });
}

describe('three tiers', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture('orm_isolation');
  });
  afterAll(async () => {
    await f?.close();
  });
  for (const tier of TIERS) crossTenantSuite(`${tier} tier`, () => ({ tenantry: f.tenantry, tier }));
});

describe.skipIf(!hasPgBouncer)('pool tier through PgBouncer in transaction mode', () => {
  let db: TestDatabase;
  let bouncer: PgBouncer;
  let tenantry: Tenantry<AppDB>;
  beforeAll(async () => {
    db = await createTestDatabase('orm_pgbouncer');
    bouncer = await startPgBouncer({
      upstream: serverUrl(),
      users: { [db.roles.runtime]: new KeyRing(db.secret).runtimePassword(db.roles.runtime) },
      poolSize: 2,
    });
    tenantry = await Tenantry.connect<AppDB>({
      databaseUrl: db.url,
      runtimeUrl: bouncer.url(db.name, db.roles.runtime),
      secret: db.secret,
      roles: db.roles,
      migrations: appMigrations,
      pool: { max: 8 },
      contextBinding: 'pooler',
      prepareContextStatement: false,
    });
    await tenantry.setup();
    await tenantry.migrate();
  });
  afterAll(async () => {
    await tenantry?.close();
    await bouncer?.stop();
    await db?.drop();
  });
  crossTenantSuite('pgbouncer', () => ({ tenantry, tier: 'pool' }));
});
