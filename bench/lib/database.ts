import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A database and role names of the benchmark's own, on the server of `DATABASE_URL`. */
export interface BenchDatabase {
  readonly name: string;
  /** `DATABASE_URL` pointed at this database. */
  readonly url: string;
  readonly roles: { readonly owner: string; readonly runtime: string };
  readonly secret: string;
  /** Drops the database (even with open connections) and both roles. */
  drop(): Promise<void>;
}

/** `url` with another database and, optionally, an `application_name` (so its backends can be found). */
export function withDatabase(url: string, database: string, applicationName?: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (applicationName) u.searchParams.set('application_name', applicationName);
  return u.toString();
}

/** `url` with its host and port replaced (to route through the counting proxy). */
export function withAddress(url: string, host: string, port: number): string {
  const u = new URL(url);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

/**
 * Creates `tenantry_bench_<random>` and picks unique role names. Refuses an admin role that
 * cannot bypass row-level security: the baseline needs one, and so does the bulk load.
 */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const suffix = randomBytes(4).toString('hex');
  const name = `tenantry_bench_${suffix}`;
  const roles = { owner: `tb_${suffix}_owner`, runtime: `tb_${suffix}_runtime` };
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ ok: boolean }>(
      'SELECT rolsuper OR rolbypassrls AS ok FROM pg_roles WHERE rolname = current_user',
    );
    if (!rows[0]?.ok) {
      throw new Error('DATABASE_URL must be a superuser (or BYPASSRLS) role: it is the baseline and loads the data');
    }
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: withDatabase(adminUrl, name),
    roles,
    secret: randomBytes(32).toString('hex'),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        for (const role of [roles.runtime, roles.owner]) await c.query(`DROP ROLE IF EXISTS "${role}"`);
      } finally {
        await c.end();
      }
    },
  };
}

/** What {@link savedBenchDatabase} needs to open a kept benchmark database again. */
export interface SavedBenchDatabase {
  readonly name: string;
  readonly roles: { readonly owner: string; readonly runtime: string };
  readonly secret: string;
}

/**
 * A benchmark database created by an earlier run and kept (`--keep`), on the server of
 * `adminUrl`: the same shape as {@link createBenchDatabase}'s, whose `drop()` drops it.
 */
export function savedBenchDatabase(adminUrl: string, saved: SavedBenchDatabase): BenchDatabase {
  return {
    ...saved,
    url: withDatabase(adminUrl, saved.name),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${saved.name}" WITH (FORCE)`);
        for (const role of [saved.roles.runtime, saved.roles.owner]) await c.query(`DROP ROLE IF EXISTS "${role}"`);
      } finally {
        await c.end();
      }
    },
  };
}
