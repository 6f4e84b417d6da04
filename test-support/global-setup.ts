import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../packages/tenantry/src/embedded/embedded-postgres.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string | null;
  }
}

/** Drops what earlier, interrupted runs left on a server that keeps state. */
async function dropLeftovers(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE 'tenantry\\_test\\_%'",
    );
    for (const { datname } of rows) await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    const roles = await c.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tt\\_%'");
    for (const { rolname } of roles.rows) await c.query(`DROP ROLE IF EXISTS "${rolname}"`).catch(() => {});
  } finally {
    await c.end();
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env.DATABASE_URL;
  let stop = async () => {};
  if (!url) {
    const dir = await mkdtemp(join(tmpdir(), 'tenantry-test-pg-'));
    await chmod(dir, 0o755); // the server may run as another OS user (see embedded-postgres.ts)
    console.log('DATABASE_URL is unset: starting embedded PostgreSQL for the test suite');
    const pgServer = await startEmbeddedPostgres({ dataDir: join(dir, 'data') });
    url = pgServer.url;
    stop = async () => {
      await pgServer.stop();
      await rm(dir, { recursive: true, force: true });
    };
  } else {
    await dropLeftovers(url);
  }
  project.provide('databaseUrl', url);
  project.provide('redisUrl', process.env.REDIS_URL ?? null);
  return stop;
}
