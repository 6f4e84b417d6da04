import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { tenantDatabasePrefix } from '../packages/tenantry/src/control/connection-url.ts';

/** Admin URL of the server the suite runs on (DATABASE_URL, else the embedded one). */
export function serverUrl(): string {
  return inject('databaseUrl');
}

/** A throwaway database and role names of a test file's own, so files run in parallel. */
export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  readonly roles: { readonly owner: string; readonly runtime: string };
  /** A strong random master secret for this database. */
  readonly secret: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates a fresh database (and unique role names) for one test file. */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const suffix = randomBytes(4).toString('hex');
  // The creation time (seconds) is in the name, so a later run drops only stale leftovers.
  const born = Math.floor(Date.now() / 1000).toString(36);
  const name = `tenantry_test_${label.replace(/[^a-z0-9]/g, '_').slice(0, 24)}_${born}_${suffix}`;
  const admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const roles = { owner: `tt_${suffix}_owner`, runtime: `tt_${suffix}_runtime` };
  return {
    url: withDatabase(serverUrl(), name),
    name,
    roles,
    secret: randomBytes(32).toString('hex'),
    async drop() {
      const c = new pg.Client({ connectionString: serverUrl() });
      await c.connect();
      try {
        // Tenant databases and templates the file's database-tier tenants got.
        const { rows } = await c.query<{ datname: string }>(
          'SELECT datname FROM pg_database WHERE left(datname, length($1) + 1) = $1 || $2',
          [tenantDatabasePrefix(name), '_'],
        );
        for (const { datname } of rows) await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        for (const role of [roles.runtime, roles.owner]) await c.query(`DROP ROLE IF EXISTS "${role}"`);
      } finally {
        await c.end();
      }
    },
  };
}

/** Runs one statement as the server's superuser on `database` (no RLS, no Tenantry): what tests check behind Tenantry's back. */
export async function superuserQuery<R extends pg.QueryResultRow>(
  database: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const url = new URL(serverUrl());
  url.pathname = `/${database}`;
  const c = new pg.Client({ connectionString: url.toString() });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}
