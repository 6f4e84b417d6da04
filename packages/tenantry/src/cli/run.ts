import { isTenantryError } from '../errors/catalog.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { Tenantry } from '../tenantry.ts';
import { type CliEnvironment, resolveEnvironment } from './environment.ts';

/** Prints to stderr so stdout stays clean for `--json` output. */
export function note(message: string): void {
  process.stderr.write(`tenantry: ${message}\n`);
}

/**
 * Resolves the environment (starting embedded PostgreSQL if needed), connects Tenantry
 * with it and runs the idempotent setup (unless `setup: false`, for commands that must
 * change nothing). The caller closes both.
 */
export async function connectFromEnvironment(
  migrations: readonly TenantMigration[] = [],
  options: { setup?: boolean } = {},
): Promise<{ tenantry: Tenantry; env: CliEnvironment }> {
  const env = await resolveEnvironment();
  for (const line of env.notes) note(line);
  const tenantry = await Tenantry.connect({
    databaseUrl: env.databaseUrl,
    secret: env.secret,
    roles: env.roles,
    leakproofFullTextSearch: env.leakproofFullTextSearch,
    ...(env.runtimeUrl ? { runtimeUrl: env.runtimeUrl } : {}),
    ...(env.contextBinding ? { contextBinding: env.contextBinding } : {}),
    ...(env.dialect ? { dialect: env.dialect } : {}),
    ...(env.citus ? { citus: env.citus } : {}),
    // An operator's server: pg_stat_activity names the tenant of every tenant transaction.
    usage: { applicationName: true },
    migrations,
  });
  try {
    if (options.setup !== false) await tenantry.setup();
  } catch (error) {
    await tenantry.close();
    await env.embedded?.stop();
    throw error;
  }
  return { tenantry, env };
}

/**
 * Runs a CLI action with a connected, set-up Tenantry, then closes it (and the embedded
 * PostgreSQL it started, if any).
 */
export async function withTenantry<T>(
  action: (tenantry: Tenantry, env: CliEnvironment) => Promise<T>,
  options: { migrations?: readonly TenantMigration[] } = {},
): Promise<T> {
  const { tenantry, env } = await connectFromEnvironment(options.migrations);
  try {
    return await action(tenantry, env);
  } finally {
    await tenantry.close();
    await env.embedded?.stop();
  }
}

/** Exit code for an error: 2 for bad input or usage, 1 otherwise. Prints the error without a stack. */
export function reportError(error: unknown): number {
  if (isTenantryError(error)) {
    note(`${error.code}: ${error.message}`);
    return [
      'INVALID_INPUT',
      'TENANT_NOT_FOUND',
      'TENANT_SLUG_TAKEN',
      'INVALID_TENANT_STATE',
      'CONFIG_INVALID',
      'MISSING_SECRET',
      'EXPORT_INVALID',
      'EXPORT_TRUNCATED',
      'EXPORT_CHECKSUM_MISMATCH',
      'EXPORT_SCHEMA_NEWER',
      'RETROFIT_PLAN_INVALID',
      'RETROFIT_GLOBAL_REFERENCES_TENANT',
    ].includes(error.code)
      ? 2
      : 1;
  }
  note(error instanceof Error ? error.message : String(error));
  return 1;
}

/**
 * The tenant-table chain a CLI command works with: the module given with `--migrations`,
 * else the reference server's own tables (what `npm start` creates), so that `migrate`,
 * `tenants create` and `tenants move` agree with the server they operate.
 */
export async function cliMigrations(path: string | undefined): Promise<TenantMigration[]> {
  if (path) return loadMigrations(path);
  const { itemsMigrations } = await import('../example/items.ts');
  return [...itemsMigrations];
}

/** Loads tenant migrations from a module exporting `migrations` (or a default array). */
export async function loadMigrations(path: string | undefined): Promise<TenantMigration[]> {
  if (!path) return [];
  const { pathToFileURL } = await import('node:url');
  const { resolve } = await import('node:path');
  const mod = (await import(pathToFileURL(resolve(path)).href)) as {
    migrations?: TenantMigration[];
    default?: TenantMigration[];
  };
  const list = mod.migrations ?? mod.default;
  if (!Array.isArray(list)) {
    throw new Error(`${path} exports no \`migrations\` array (named or default)`);
  }
  return list;
}
