import { type ChildProcess, fork } from 'node:child_process';
import type { Tally } from './probes.ts';
import type { BenchTenantContext } from './variants.ts';

export type SideName = 'tenantry' | 'bare';

/** What a server child is told to start. */
export interface ChildConfig {
  readonly side: SideName;
  /** Superuser URL of the bench database: Tenantry's admin URL, the baseline's login. */
  readonly databaseUrl: string;
  readonly secret: string;
  readonly roles: { readonly owner: string; readonly runtime: string };
  readonly planLimits: { readonly requestsPerMinute: number };
  /** The baseline's pool size and idle timeout (Tenantry's runtime pool uses its defaults). */
  readonly poolMax?: number;
  readonly idleTimeoutMs?: number;
  /** Add the mixed variant of this side (see `variants.ts`). */
  readonly matrix?: boolean;
  /** The baseline names its statement, so pg prepares it once per connection. */
  readonly barePrepared?: boolean;
  /** The bench tenants (the bare side's transaction variant needs their contexts). */
  readonly tenants?: readonly BenchTenantContext[];
}

/** What a started child reports. */
export interface ChildReady {
  readonly url: string;
  /** Size and idle timeout of the pool that serves the route (Tenantry: the runtime pool). */
  readonly poolMax: number;
  readonly idleTimeoutMs: number;
  readonly pid: number;
}

/** Cumulative CPU and event-loop time of a child, for deltas. */
export interface ChildUsage {
  readonly userUs: number;
  readonly systemUs: number;
  readonly eluIdleMs: number;
  readonly eluActiveMs: number;
}

export type Request =
  | { readonly type: 'start'; readonly config: ChildConfig }
  | { readonly type: 'usage' }
  | { readonly type: 'meter-start' }
  | { readonly type: 'meter-stop' }
  | { readonly type: 'profile-start'; readonly intervalUs: number }
  | { readonly type: 'profile-stop'; readonly path: string }
  | { readonly type: 'close' };

export interface Replies {
  start: ChildReady;
  usage: ChildUsage;
  'meter-start': null;
  'meter-stop': Record<string, Tally>;
  'profile-start': null;
  /** Where the `.cpuprofile` was written. */
  'profile-stop': string;
  close: null;
}

export type Envelope = { readonly id: number } & Request;
export type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | {
      readonly id: number;
      readonly ok: false;
      readonly error: string;
    };

const CHILD = new URL('./child.ts', import.meta.url);

/** A server running in a child process of its own, driven over IPC. */
export class ServerChild {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #next = 1;
  #exited: Promise<number | null>;
  ready!: ChildReady;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (message: Reply) => {
      const waiting = this.#pending.get(message.id);
      if (!waiting) return;
      this.#pending.delete(message.id);
      if (message.ok) waiting.resolve(message.value);
      else waiting.reject(new Error(message.error));
    });
    this.#exited = new Promise((resolve) => {
      child.on('exit', (code) => {
        for (const waiting of this.#pending.values()) waiting.reject(new Error(`server child exited (${code})`));
        this.#pending.clear();
        resolve(code);
      });
    });
  }

  /**
   * Forks `child.ts` with the same Node binary, `execArgv` added (e.g. `--cpu-prof`), and
   * `PGAPPNAME` set so the child's PostgreSQL backends can be told apart.
   */
  static async start(config: ChildConfig, options: { execArgv?: readonly string[] } = {}): Promise<ServerChild> {
    const child = fork(CHILD, [config.side], {
      execArgv: [...process.execArgv, ...(options.execArgv ?? [])],
      env: { ...process.env, PGAPPNAME: applicationName(config.side) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const server = new ServerChild(child);
    server.ready = await server.call({ type: 'start', config });
    return server;
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  call<T extends Request>(request: T): Promise<Replies[T['type']]> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#child.send({ id, ...request } satisfies Envelope);
    });
  }

  /** Closes the server and waits for the process to exit (which writes a `--cpu-prof` profile). */
  async close(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    await this.call({ type: 'close' }).catch(() => {});
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** `application_name` of a side's PostgreSQL connections. */
export function applicationName(side: SideName): string {
  return `tenantry-bench-http-${side}`;
}
