import { Tenantry } from 'tenantry';
import { resolveEnvironment } from 'tenantry/environment';
import { apiKeyAuthenticator, ChangeFeed, TenantCache, type TenantRequestOptions } from 'tenantry/nestjs';
import { type AppDB, migrations } from './items.ts';

/**
 * Connects Tenantry the way `tenantry serve` does: `DATABASE_URL`, or embedded PostgreSQL
 * under `./.tenantry/` when it is unset; sets up the control plane and migrates the
 * application's tables. On the embedded server (local development only) it makes sure the
 * demo tenants `acme` and `globex` exist and prints a fresh API key for each.
 */
export async function connectTenantry() {
  const env = await resolveEnvironment();
  for (const note of env.notes) console.log(note);
  const tenantry = await Tenantry.connect<AppDB>({
    databaseUrl: env.databaseUrl,
    secret: env.secret,
    roles: env.roles,
    ...(env.runtimeUrl ? { runtimeUrl: env.runtimeUrl } : {}),
    ...(env.contextBinding ? { contextBinding: env.contextBinding } : {}),
    migrations,
  });
  await tenantry.setup();
  await tenantry.migrate();
  // Tenants in a schema or a database of their own get the application's tables too (a
  // deployment would run `tenantry migrate` instead; here the start-up does it).
  const fleet = await tenantry.migrateFleet();
  for (const failure of fleet.failed) console.error(`migration of ${failure.target} failed: ${failure.error}`);
  if (fleet.failed.length > 0) throw new Error(`${fleet.failed.length} migration target(s) failed`);
  // One LISTEN connection: revoked keys and suspended tenants are seen at once, not after a TTL.
  const feed = new ChangeFeed(env.databaseUrl);
  await tenantry.apiKeys.start(feed);
  const identification: Omit<TenantRequestOptions<unknown>, 'onIdentified'> = {
    tenants: new TenantCache(tenantry.tenants, { feed }),
    authenticators: [apiKeyAuthenticator(tenantry.apiKeys)],
  };
  if (env.embedded) {
    for (const slug of ['acme', 'globex']) {
      const tenant = (await tenantry.tenants.find(slug)) ?? (await tenantry.tenants.create({ slug, name: slug }));
      const { key } = await tenantry.apiKeys.create(tenant.id, {
        name: 'demo',
        environment: 'test',
        scopes: ['items:read', 'items:write'],
      });
      console.log(`demo tenant ${slug}: API key ${key}`);
    }
  }
  return {
    tenantry,
    identification,
    async close() {
      await feed.close();
      await tenantry.close();
      await env.embedded?.stop();
    },
  };
}
