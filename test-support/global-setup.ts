import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../packages/tenantry/src/embedded/embedded-postgres.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string | null;
  }
}

/**
 * `tenantry_test_<label>_<born, base 36>_<hex>`, optionally followed by `_t_<hex>` or
 * `_tpl_<hex>` for the tenant databases and templates of a test file's database-tier tenants.
 */
const NAME = /_([0-9a-z]+)_([0-9a-f]{8})(?:_(?:t|tpl)_[0-9a-f]+)?$/;

/**
 * Drops what earlier, interrupted runs left on a server that keeps state: test databases
 * created more than two hours ago (their names carry the creation time), so a run going
 * on beside this one keeps its own, and then roles that no remaining database uses.
 */
async function dropLeftovers(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE 'tenantry\\_test\\_%'",
    );
    const cutoff = Date.now() / 1000 - 2 * 3600;
    for (const { datname } of rows) {
      const born = Number.parseInt(NAME.exec(datname)?.[1] ?? '', 36);
      if (Number.isFinite(born) && born > cutoff) continue;
      await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    const roles = await c.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tt\\_%'");
    const live = (
      await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'tenantry\\_test\\_%'")
    ).rows.map((r) => NAME.exec(r.datname)?.[2]);
    for (const { rolname } of roles.rows) {
      if (live.includes(rolname.split('_')[1])) continue;
      await c.query(`DROP ROLE IF EXISTS "${rolname}"`).catch(() => {});
    }
  } finally {
    await c.end();
  }
}

/** `redis://127.0.0.1:6379` when a Redis answers PING there (REDIS_URL unset), else null. */
async function localRedis(): Promise<string | null> {
  const answered = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: 6379 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (chunk) => done(chunk.toString().startsWith('+PONG')));
  });
  if (answered) console.log('REDIS_URL is unset: using the Redis answering on 127.0.0.1:6379');
  else console.log('REDIS_URL is unset and no Redis answers on 127.0.0.1:6379: tests that need Redis are skipped');
  return answered ? 'redis://127.0.0.1:6379' : null;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // The Prisma client of the ORM adapter tests is generated, not checked in (no-op when fresh).
  // The prisma-express example generates its own in `npm start`, which examples.test.ts runs.
  const generate = fileURLToPath(new URL('../scripts/prisma-generate.mjs', import.meta.url));
  execFileSync(process.execPath, [generate, 'test-support/prisma/schema.prisma'], { stdio: 'inherit' });
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
  project.provide('redisUrl', process.env.REDIS_URL ?? (await localRedis()));
  return stop;
}
