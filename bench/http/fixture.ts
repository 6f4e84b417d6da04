import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { itemsMigrations } from '../../packages/tenantry/src/example/items.ts';
import { Tenantry } from '../../packages/tenantry/src/index.ts';

/** The plan the bench tenants are on: a limit no run can reach, so every request is admitted. */
export const BENCH_PLAN = 'bench';
export const BENCH_PLAN_LIMITS = Object.freeze({ requestsPerMinute: 100_000_000 });

/** One seeded tenant: its API key (items:read) and the ids of its items. */
export interface BenchTenant {
  readonly id: string;
  readonly slug: string;
  readonly key: string;
  readonly itemIds: readonly string[];
}

/** The benchmark's own database, roles, tenants and items, on the server of `DATABASE_URL`. */
export interface BenchFixture {
  /** `tenantry_bench_http_<random>`. */
  readonly name: string;
  /** `DATABASE_URL` pointed at {@link name} (superuser: Tenantry's admin URL and the baseline's login). */
  readonly url: string;
  readonly roles: { readonly owner: string; readonly runtime: string };
  readonly secret: string;
  readonly tenants: readonly BenchTenant[];
  /** Drops the database (even with open connections) and both roles. Safe to call twice. */
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function onServer<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, application_name: 'tenantry-bench-http-setup' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates the database the way an operator would (`Tenantry.connect` with the example
 * application's migrations, `setup()`, `migrate()`), then `tenants` tenants on the `bench`
 * plan, one `items:read` API key each, and `itemsPerTenant` items each, written through
 * tenant transactions (so `tenant_id` comes from the verified context, as in production).
 */
export async function createFixture(
  adminUrl: string,
  options: { tenants: number; itemsPerTenant: number },
): Promise<BenchFixture> {
  const suffix = randomBytes(4).toString('hex');
  const name = `tenantry_bench_http_${suffix}`;
  const roles = { owner: `tbh_${suffix}_owner`, runtime: `tbh_${suffix}_runtime` };
  const secret = randomBytes(32).toString('hex');
  await onServer(adminUrl, async (client) => {
    const { rows } = await client.query<{ ok: boolean }>(
      'SELECT rolsuper AS ok FROM pg_roles WHERE rolname = current_user',
    );
    if (!rows[0]?.ok) throw new Error('DATABASE_URL must be a superuser: it creates databases and roles');
    await client.query(`CREATE DATABASE "${name}"`);
  });
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    await onServer(adminUrl, async (client) => {
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      for (const role of [roles.runtime, roles.owner]) await client.query(`DROP ROLE IF EXISTS "${role}"`);
    });
  };
  const url = withDatabase(adminUrl, name);
  const tenantry = await Tenantry.connect({ databaseUrl: url, secret, roles, migrations: itemsMigrations });
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const tenants: BenchTenant[] = [];
    for (let i = 0; i < options.tenants; i++) {
      const tenant = await tenantry.tenants.create({ slug: `bench-${i}`, name: `Bench ${i}`, plan: BENCH_PLAN });
      const { key } = await tenantry.apiKeys.create(tenant.id, {
        name: 'http bench',
        environment: 'live',
        scopes: ['items:read'],
      });
      // Descriptions of 0–300 characters, a third of them NULL, so bodies vary like real rows.
      const { rows } = await tenantry.transaction(tenant, (tx) =>
        tx.query<{ id: string }>(
          `INSERT INTO items (title, description)
           SELECT 'Item ' || g || ' of ' || $2::text,
                  CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('lorem ipsum ', g % 25) END
             FROM generate_series(1, $1::int) AS g
           RETURNING id`,
          [options.itemsPerTenant, tenant.slug],
        ),
      );
      tenants.push(Object.freeze({ id: tenant.id, slug: tenant.slug, key, itemIds: rows.map((r) => r.id) }));
    }
    await tenantry.adminPool.query('ANALYZE items');
    await tenantry.close();
    return Object.freeze({ name, url, roles, secret, tenants: Object.freeze(tenants), drop });
  } catch (error) {
    await tenantry.close().catch(() => {});
    await drop().catch(() => {});
    throw error;
  }
}
