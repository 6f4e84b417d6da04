import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../packages/tenantry/src/embedded/embedded-postgres.ts';

/**
 * The `pgbouncer` binary: Debian installs it in `/usr/sbin`, which a non-root developer's
 * PATH often lacks, so that is tried too.
 */
function findBinary(): string | undefined {
  for (const candidate of ['pgbouncer', '/usr/sbin/pgbouncer', '/usr/local/sbin/pgbouncer']) {
    try {
      execFileSync(candidate, ['--version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // not there: try the next one
    }
  }
  return undefined;
}

const binary = findBinary();

/** Whether the `pgbouncer` binary is on this machine (tests that need it skip otherwise). */
export const hasPgBouncer = binary !== undefined;

/** What a skipped test says, so a developer knows how to run it. */
export const PGBOUNCER_MISSING =
  'pgbouncer is not installed: the transaction-mode pooler tests are skipped (install it with `apt-get install pgbouncer`, or `brew install pgbouncer`; CI installs it in .ci/run)';

/** Options of {@link startPgBouncer}. */
export interface PgBouncerOptions {
  /**
   * The PostgreSQL server to pool, as a URL (`postgres://user:password@host:port/…`); only
   * host, port and credentials are used: every database on it is reachable (`* =` entry).
   * Its user joins the userlist, with its password (or a placeholder under trust auth).
   */
  readonly upstream: string;
  /** More login roles and their passwords (the userlist; clients authenticate with md5). */
  readonly users?: Readonly<Record<string, string>>;
  /**
   * Server connections per database and user (`default_pool_size`, default 3): small, so
   * that many clients share few server connections, as in production.
   */
  readonly poolSize?: number;
  /** `max_client_conn` (default 1000). */
  readonly maxClientConn?: number;
}

/** A PgBouncer child of a test's own, in transaction mode. */
export interface PgBouncer {
  /** The loopback port it listens on. */
  readonly port: number;
  /**
   * URL of `database` through the pooler, as `user` (default: the upstream's user) with its
   * userlist password unless `password` is given.
   */
  url(database: string, user?: string, password?: string): string;
  /** Stops the pooler (its server connections close) and deletes its files. Safe to call twice. */
  stop(): Promise<void>;
}

/** `"name" "password"` lines of PgBouncer's auth_file; `"` doubles inside a field. */
function userlist(users: Readonly<Record<string, string>>): string {
  const q = (s: string) => `"${s.replaceAll('"', '""')}"`;
  return Object.entries(users)
    .map(([name, password]) => `${q(name)} ${q(password)}\n`)
    .join('');
}

/**
 * Who PgBouncer runs as when started by root (it refuses to run as root): `postgres`, as
 * for the test clusters, else `nobody`. It reads its ini and userlist before switching.
 */
function unprivilegedUser(): string {
  for (const name of ['postgres', 'nobody']) {
    try {
      execFileSync('id', ['-u', name], { stdio: 'ignore' });
      return name;
    } catch {
      // no such user: try the next one
    }
  }
  throw new Error('pgbouncer refuses to run as root, and there is no `postgres` or `nobody` user to run it as');
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => done(true));
  });
}

/**
 * Starts PgBouncer in **transaction mode** in front of `options.upstream`, on a free
 * loopback port, with its ini and userlist in a temporary directory (never the Debian
 * package's `/etc/pgbouncer` or its service on 6432). Resolves once it accepts connections.
 *
 * PgBouncer refuses to run as root; as root it is started with `-u postgres` (see
 * `unprivilegedUser`).
 *
 * @example
 * ```ts
 * const bouncer = await startPgBouncer({ upstream: serverUrl(), users: { app: 'secret' } });
 * const client = new pg.Client({ connectionString: bouncer.url('mydb', 'app') });
 * await bouncer.stop();
 * ```
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  if (!binary) throw new Error(PGBOUNCER_MISSING);
  const upstream = new URL(options.upstream);
  const upstreamUser = decodeURIComponent(upstream.username || 'postgres');
  // Under trust authentication upstream any password does; PgBouncer's md5 still needs one.
  const users: Record<string, string> = {
    [upstreamUser]: decodeURIComponent(upstream.password) || 'pgbouncer-trust',
    ...options.users,
  };
  const dir = await mkdtemp(join(tmpdir(), 'tenantry-pgbouncer-'));
  const port = await freePort();
  const ini = join(dir, 'pgbouncer.ini');
  await writeFile(join(dir, 'userlist.txt'), userlist(users), { mode: 0o600 });
  await writeFile(
    ini,
    [
      '[databases]',
      // A wildcard entry: each test file's own database is reachable without listing it.
      `* = host=${upstream.hostname} port=${upstream.port || '5432'}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      // No Unix socket: /tmp/.s.PGSQL.<port> may be another server's.
      'unix_socket_dir =',
      'auth_type = md5',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 3}`,
      'reserve_pool_size = 0',
      `max_client_conn = ${options.maxClientConn ?? 1000}`,
      // Startup parameters PgBouncer does not track would refuse the login: node-postgres
      // and psql send these.
      'ignore_startup_parameters = extra_float_digits,options',
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const user = process.getuid?.() === 0 ? unprivilegedUser() : undefined;
  const child: ChildProcess = spawn(binary, [...(user ? ['-u', user] : []), ini], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = once(child, 'exit');
  let running = true;
  void exited.then(() => {
    running = false;
  });
  const stop = async () => {
    if (running) {
      // SIGTERM: immediate shutdown, closing client and server connections.
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 10_000;
    while (!(await accepts(port))) {
      if (!running) throw new Error(`pgbouncer exited at start:\n${output}`);
      if (Date.now() > deadline) throw new Error(`pgbouncer did not listen on ${port} within 10 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    port,
    url(database, user = upstreamUser, password = users[user]) {
      const u = new URL(`postgres://127.0.0.1:${port}/`);
      u.pathname = `/${encodeURIComponent(database)}`;
      u.username = encodeURIComponent(user);
      if (password !== undefined) u.password = encodeURIComponent(password);
      return u.toString();
    },
    stop,
  };
}
