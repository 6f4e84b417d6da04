import pg from 'pg';
import { TenantryError } from '../errors/catalog.ts';

/**
 * Options of a {@link PoolMap}.
 *
 * @example
 * ```ts
 * const options: PoolMapOptions = { globalMax: 20, perPoolMax: 3, idleTimeoutMs: 10_000, acquireTimeoutMs: 2_000 };
 * ```
 */
export interface PoolMapOptions {
  /** Connections open across all pools, never exceeded. */
  readonly globalMax: number;
  /** Connections per pool (per tenant database). */
  readonly perPoolMax: number;
  /** An idle connection is closed after this long; a pool with no connections left is dropped. */
  readonly idleTimeoutMs: number;
  /** How long acquire() waits for a connection before failing with POOL_EXHAUSTED. */
  readonly acquireTimeoutMs: number;
  /** Called for errors of idle connections (a dropped server must not crash the process). */
  readonly onError?: (error: Error, key: string) => void;
}

/**
 * A snapshot of a {@link PoolMap}, what the `tenantry_pool_map_*` gauges report.
 *
 * @example
 * ```ts
 * const { connectionsOpen, waiters } = poolMap.stats();
 * ```
 */
export interface PoolMapStats {
  /** Keys with a pool: connections in any state, or requests waiting for one. */
  readonly poolsOpen: number;
  /** Budget slots taken: connections connecting, idle, borrowed or closing. Never above `globalMax`. */
  readonly connectionsOpen: number;
  /** Connections borrowed through acquire() and not yet released. */
  readonly connectionsInUse: number;
  /** acquire() calls waiting for a budget slot (not counting those already connecting). */
  readonly waiters: number;
  /** Connections closed so that a waiter of another key could have their slot, since creation. */
  readonly evictions: number;
}

/**
 * A connection borrowed from a {@link PoolMap}; `release()` it exactly once.
 *
 * @example
 * ```ts
 * const conn = await poolMap.acquire(tenant.id, () => ({ connectionString }));
 * try {
 *   await conn.client.query('SELECT 1');
 * } finally {
 *   conn.release();
 * }
 * ```
 */
export interface PooledConnection {
  /** The connection; `processID` and the rest of pg's client are available on it. */
  readonly client: pg.Client;
  /** Gives the connection back; with an error or `true` it is closed instead of reused. */
  release(destroy?: Error | boolean): void;
}

/** `reserved`: waits for the slot of an evicted connection; `ready`: open, held by the map for a moment. */
type ConnectionState = 'reserved' | 'connecting' | 'ready' | 'idle' | 'busy' | 'closing' | 'closed';

interface KeyPool {
  readonly key: string;
  /** Idle connections, most recently released last: taken LIFO, so surplus ones age out. */
  readonly idle: Connection[];
  /** Connections of this key in any state but `closed`, held to `perPoolMax`. */
  size: number;
  /** closePool() was called: its connections close instead of coming back. */
  closed: boolean;
}

interface Connection {
  readonly pool: KeyPool;
  client: pg.Client | undefined;
  state: ConnectionState;
  /** The request this connection is being opened for. */
  request: AcquireRequest | undefined;
  /** The connection that opens in this one's slot once this one is gone (an eviction). */
  heir: Connection | undefined;
  /** The server reported an error while it was borrowed: it must not be reused. */
  broken: boolean;
  /** The idle timeout, or the deadline of the goodbye while closing. */
  timer: NodeJS.Timeout | undefined;
  /** Resolves once its slot is free. */
  readonly gone: PromiseWithResolvers<void>;
}

interface AcquireRequest {
  readonly key: string;
  readonly config: () => pg.ClientConfig | Promise<pg.ClientConfig>;
  readonly resolve: (connection: PooledConnection) => void;
  readonly reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
  /** `queued`: in the wait queue; `reserved`: an eviction frees its slot; `connecting`: a connection opens for it. */
  phase: 'queued' | 'reserved' | 'connecting' | 'settled';
}

/**
 * How long a closing connection may take to say goodbye. A server that vanished never
 * acknowledges it, and TCP can take many minutes to give up; the slot must not wait that long.
 */
const GOODBYE_TIMEOUT_MS = 5_000;
/**
 * How long a connect may take before pg abandons it, unless `config` sets
 * `connectionTimeoutMillis`. Not `acquireTimeoutMs`: an abandoned connect closes only our
 * socket, and the server's half-started backend still counts until it notices, so the
 * budget would no longer hold as the server counts. A connect that outlives its request
 * just serves the next one.
 */
const CONNECT_TIMEOUT_MS = 30_000;
/** Node's timers overflow beyond this (and then fire at once). */
const MAX_TIMEOUT_MS = 2_147_483_647;

/**
 * One small pool of connections per key (per tenant database) under one global budget of
 * connections, for database-tier tenants.
 *
 * `pg.Pool` caps each pool on its own, so N tenant databases open up to N × max
 * connections and the server eventually refuses them ("too many connections" — what
 * stancl/tenancy hits at about 70 tenant databases). Here every connection, including one
 * still connecting or closing, holds one slot of `globalMax`. When the budget is full, a
 * request evicts the least recently used idle connection of another key; when nothing is
 * idle, it waits in a FIFO queue, and a released connection goes to a waiter of its own
 * key or else makes way for the first waiter.
 *
 * A slot is free only once the closed connection's socket is: PostgreSQL removes the
 * backend from `pg_stat_activity` before it closes the socket, so the budget holds as the
 * server counts, even while connections are swapped between keys.
 *
 * @example
 * ```ts
 * const poolMap = new PoolMap({ globalMax: 20, perPoolMax: 3, idleTimeoutMs: 10_000, acquireTimeoutMs: 2_000 });
 * const conn = await poolMap.acquire(placement.id, async () => ({ connectionString: await urlOf(placement) }));
 * try {
 *   await conn.client.query('SELECT 1');
 * } finally {
 *   conn.release();
 * }
 * await poolMap.close();
 * ```
 */
export class PoolMap {
  readonly #options: Readonly<PoolMapOptions>;
  readonly #pools = new Map<string, KeyPool>();
  /** Idle connections of all keys, least recently released first (a Set keeps insertion order). */
  readonly #lru = new Set<Connection>();
  /** Requests waiting for a slot, oldest first. */
  #queue: AcquireRequest[] = [];
  /** Requests not yet answered, in any phase (close() rejects them all). */
  readonly #requests = new Set<AcquireRequest>();
  #open = 0;
  #inUse = 0;
  #evictions = 0;
  #closed = false;
  #drained: PromiseWithResolvers<void> | undefined;
  #dispatching = false;
  #dispatchAgain = false;

  constructor(options: PoolMapOptions) {
    this.#options = resolveOptions(options);
  }

  /**
   * Borrows a connection for `key`: an idle one of the key (the most recently used), else a
   * new one opened with `config()`, else the next one released, within `acquireTimeoutMs`.
   *
   * `config` is only called when the key needs a new connection, so it may look up and
   * decrypt credentials lazily. Rejects with `POOL_EXHAUSTED` when no slot frees in time,
   * `POOL_CONNECT_FAILED` when the connection cannot be opened, `POOL_CLOSED` after close().
   *
   * @example
   * ```ts
   * const conn = await poolMap.acquire('tenant-42', () => ({ connectionString: 'postgres://…/tenant_42' }));
   * ```
   */
  acquire(key: string, config: () => pg.ClientConfig | Promise<pg.ClientConfig>): Promise<PooledConnection> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      const request: AcquireRequest = { key, config, resolve, reject, timer: undefined, phase: 'queued' };
      request.timer = setTimeout(() => this.#expire(request), this.#options.acquireTimeoutMs);
      this.#requests.add(request);
      // Serving now cannot overtake the queue: a waiter that could use what this request
      // gets (an idle connection, a free slot) would already have been served.
      if (!this.#serve(request)) this.#queue.push(request);
    });
  }

  /**
   * Closes the pool of `key` (the tenant was deleted or moved): idle connections now, borrowed
   * ones when released. Requests for the key made later, or still waiting, open new
   * connections with their own `config()`. Resolves once the idle connections are closed.
   *
   * @example
   * ```ts
   * await placements.move(tenantId, target);
   * await poolMap.closePool(tenantId);
   * ```
   */
  async closePool(key: string): Promise<void> {
    const pool = this.#pools.get(key);
    if (!pool) return;
    this.#pools.delete(key);
    pool.closed = true;
    const idle = [...pool.idle];
    for (const conn of idle) this.#retire(conn);
    // Waiters of the key were held back by the old pool's perPoolMax; a new pool may serve them.
    this.#dispatch();
    await Promise.all(idle.map((conn) => conn.gone.promise));
  }

  /**
   * The current counts, for gauges and tests.
   *
   * @example
   * ```ts
   * if (poolMap.stats().waiters > 0) logger.warn('tenant database connections are saturated');
   * ```
   */
  stats(): PoolMapStats {
    let waiters = 0;
    for (const request of this.#requests) if (request.phase !== 'connecting') waiters++;
    return {
      poolsOpen: this.#pools.size,
      connectionsOpen: this.#open,
      connectionsInUse: this.#inUse,
      waiters,
      evictions: this.#evictions,
    };
  }

  /**
   * Closes every pool: pending acquires reject with `POOL_CLOSED`, idle connections close
   * now, borrowed ones when released. Resolves once every connection is closed, so, as with
   * `pg.Pool#end()`, release what you hold before awaiting it.
   *
   * @example
   * ```ts
   * process.once('SIGTERM', async () => {
   *   await server.close();
   *   await poolMap.close();
   * });
   * ```
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#queue = [];
      const error = closedError();
      for (const request of [...this.#requests]) {
        this.#settle(request);
        request.reject(error);
      }
      for (const pool of this.#pools.values()) {
        pool.closed = true;
        for (const conn of [...pool.idle]) this.#retire(conn);
      }
      this.#pools.clear();
    }
    if (this.#open === 0) return;
    this.#drained ??= Promise.withResolvers();
    await this.#drained.promise;
  }

  /** Gives `request` a connection or a slot to open one in; false when it has to wait. */
  #serve(request: AcquireRequest): boolean {
    const pool = this.#poolFor(request.key);
    const idle = pool.idle.at(-1);
    if (idle) {
      this.#leaveIdle(idle);
      this.#handOut(idle, request);
      return true;
    }
    if (pool.size >= this.#options.perPoolMax) return false;
    if (this.#open < this.#options.globalMax) {
      this.#open++;
      void this.#connect(this.#newConnection(pool, request, 'connecting'));
      return true;
    }
    // The budget is full. A connection idling for another key is worth less than a request
    // waiting now: close the least recently used one, and open in its slot once it is gone.
    const [victim] = this.#lru;
    if (!victim) return false;
    this.#evictions++;
    victim.heir = this.#newConnection(pool, request, 'reserved');
    this.#retire(victim);
    return true;
  }

  /** Serves waiters, oldest first, as far as idle connections and free slots allow. */
  #dispatch(): void {
    // Settling requests and closing connections call back in here; one pass at a time.
    if (this.#dispatching) {
      this.#dispatchAgain = true;
      return;
    }
    this.#dispatching = true;
    try {
      do {
        this.#dispatchAgain = false;
        const waiting = this.#queue;
        this.#queue = [];
        const still: AcquireRequest[] = [];
        for (const request of waiting) if (!this.#serve(request)) still.push(request);
        this.#queue = [...still, ...this.#queue];
      } while (this.#dispatchAgain);
    } finally {
      this.#dispatching = false;
    }
  }

  #newConnection(pool: KeyPool, request: AcquireRequest, state: 'reserved' | 'connecting'): Connection {
    pool.size++;
    request.phase = state;
    return {
      pool,
      client: undefined,
      state,
      request,
      heir: undefined,
      broken: false,
      timer: undefined,
      gone: Promise.withResolvers(),
    };
  }

  async #connect(conn: Connection): Promise<void> {
    const request = conn.request as AcquireRequest;
    conn.state = 'connecting';
    if (request.phase === 'reserved') request.phase = 'connecting';
    try {
      const config = await request.config();
      // A connect that hangs would hold its slot indefinitely; pg has no timeout by default.
      const client = new pg.Client({ connectionTimeoutMillis: CONNECT_TIMEOUT_MS, ...config });
      conn.client = client;
      // Listening for good: an 'error' event without a listener would crash the process.
      client.on('error', (error) => this.#clientError(conn, error));
      client.on('end', () => this.#freeSlot(conn));
      await client.connect();
    } catch (error) {
      this.#retire(conn);
      if (request.phase === 'connecting') {
        this.#settle(request);
        request.reject(connectFailed(error));
      }
      return;
    }
    conn.request = undefined;
    if (conn.state !== 'connecting' || this.#closed || conn.pool.closed) {
      // It died at once, or its pool closed meanwhile: the request starts over.
      this.#retire(conn);
      this.#requeue(request);
      return;
    }
    conn.state = 'ready';
    if (request.phase === 'connecting') this.#handOut(conn, request);
    else this.#checkIn(conn); // the request timed out meanwhile; the connection is useful anyway
  }

  #handOut(conn: Connection, request: AcquireRequest): void {
    this.#settle(request);
    conn.state = 'busy';
    this.#inUse++;
    const client = conn.client as pg.Client;
    let released = false;
    request.resolve({
      client,
      release: (destroy?: Error | boolean) => {
        if (released) {
          // A second release would hand the connection to two borrowers at once.
          throw new TenantryError('INTERNAL', 'release() was called twice for one pooled connection');
        }
        released = true;
        this.#release(conn, destroy);
      },
    });
  }

  #release(conn: Connection, destroy: Error | boolean | undefined): void {
    if (conn.state !== 'busy') return; // it died while borrowed; its slot is free already
    if (destroy || conn.broken || conn.pool.closed || this.#closed) {
      this.#retire(conn);
      return;
    }
    this.#inUse--;
    conn.state = 'ready';
    this.#checkIn(conn);
  }

  /** A connection that is open and not borrowed: to a waiter of its key, else idle. */
  #checkIn(conn: Connection): void {
    const index = this.#queue.findIndex((request) => request.key === conn.pool.key);
    const request = index >= 0 ? this.#queue.splice(index, 1)[0] : undefined;
    if (request) {
      this.#handOut(conn, request);
      return;
    }
    conn.state = 'idle';
    conn.pool.idle.push(conn);
    this.#lru.add(conn);
    conn.timer = setTimeout(() => this.#retire(conn), this.#options.idleTimeoutMs);
    conn.timer.unref(); // an idle connection must not keep the process alive
    // Waiters of other keys are owed this slot: the dispatch evicts it for the first that can use it.
    this.#dispatch();
  }

  #leaveIdle(conn: Connection): void {
    const index = conn.pool.idle.lastIndexOf(conn);
    if (index >= 0) conn.pool.idle.splice(index, 1);
    this.#lru.delete(conn);
    clearTimeout(conn.timer);
    conn.timer = undefined;
  }

  /** Closes a connection; its slot frees once the socket is closed (see {@link PoolMap}). */
  #retire(conn: Connection): void {
    if (conn.state === 'closing' || conn.state === 'closed') return;
    if (conn.state === 'idle') this.#leaveIdle(conn);
    if (conn.state === 'busy') this.#inUse--;
    conn.state = 'closing';
    const client = conn.client;
    if (!client) {
      this.#freeSlot(conn);
      return;
    }
    void client.end().then(() => this.#freeSlot(conn));
    conn.timer = setTimeout(() => client.connection.stream.destroy(), GOODBYE_TIMEOUT_MS);
    conn.timer.unref();
  }

  /** The connection is gone: its slot passes to its heir (an eviction) or back to the budget. */
  #freeSlot(conn: Connection): void {
    if (conn.state === 'closed') return;
    if (conn.state === 'idle') this.#leaveIdle(conn);
    if (conn.state === 'busy') this.#inUse--;
    clearTimeout(conn.timer);
    conn.state = 'closed';
    conn.pool.size--;
    conn.gone.resolve();
    const heir = conn.heir;
    conn.heir = undefined;
    if (heir) this.#inherit(heir);
    else this.#open--;
    this.#prune(conn.pool);
    if (this.#open === 0) this.#drained?.resolve();
    this.#dispatch();
  }

  #inherit(heir: Connection): void {
    const request = heir.request as AcquireRequest;
    if (request.phase === 'reserved' && !this.#closed && !heir.pool.closed) {
      void this.#connect(heir);
      return;
    }
    // The request gave up meanwhile, or its pool closed: the slot goes back to the budget.
    heir.state = 'closed';
    heir.pool.size--;
    this.#open--;
    this.#prune(heir.pool);
    this.#requeue(request);
  }

  /** Puts a request whose connection fell through back at the head of the queue. */
  #requeue(request: AcquireRequest): void {
    if (request.phase === 'settled' || this.#closed) return;
    request.phase = 'queued';
    this.#queue.unshift(request);
    this.#dispatch();
  }

  #clientError(conn: Connection, error: Error): void {
    if (conn.state === 'idle') {
      // The server went away or terminated the backend: drop it rather than hand it out.
      this.#options.onError?.(error, conn.pool.key);
      this.#retire(conn);
    } else if (conn.state === 'busy' || conn.state === 'ready') {
      // The borrower sees the error on its next query; release() then closes the connection.
      conn.broken = true;
    }
  }

  #expire(request: AcquireRequest): void {
    const { phase } = request;
    if (phase === 'settled') return;
    this.#settle(request);
    const { acquireTimeoutMs, globalMax } = this.#options;
    if (phase === 'connecting') {
      // The connection keeps opening in its slot and serves the next request of the key.
      request.reject(
        new TenantryError('POOL_CONNECT_FAILED', `the connection did not open within ${acquireTimeoutMs} ms`, {
          details: { acquireTimeoutMs },
        }),
      );
      return;
    }
    if (phase === 'queued') {
      const index = this.#queue.indexOf(request);
      if (index >= 0) this.#queue.splice(index, 1);
      const pool = this.#pools.get(request.key);
      if (pool) this.#prune(pool);
    }
    // A reserved slot passes to no one: #inherit gives it back when the evicted connection is gone.
    request.reject(
      new TenantryError(
        'POOL_EXHAUSTED',
        `no database connection free within ${acquireTimeoutMs} ms (global budget ${globalMax})`,
        { details: { acquireTimeoutMs, globalMax } },
      ),
    );
  }

  #settle(request: AcquireRequest): void {
    clearTimeout(request.timer);
    request.phase = 'settled';
    this.#requests.delete(request);
  }

  #poolFor(key: string): KeyPool {
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = { key, idle: [], size: 0, closed: false };
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** Drops a pool with no connections and no waiters, so the map does not grow with every key ever seen. */
  #prune(pool: KeyPool): void {
    if (pool.size > 0 || this.#pools.get(pool.key) !== pool) return;
    if (this.#queue.some((request) => request.key === pool.key)) return;
    this.#pools.delete(pool.key);
  }
}

function resolveOptions(options: PoolMapOptions): Readonly<PoolMapOptions> {
  for (const name of ['globalMax', 'perPoolMax'] as const) {
    const value = options[name];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new TenantryError('CONFIG_INVALID', `PoolMap ${name} must be a positive integer, got ${value}`);
    }
  }
  for (const name of ['idleTimeoutMs', 'acquireTimeoutMs'] as const) {
    const value = options[name];
    if (!(value > 0 && value <= MAX_TIMEOUT_MS)) {
      throw new TenantryError(
        'CONFIG_INVALID',
        `PoolMap ${name} must be between 1 and ${MAX_TIMEOUT_MS}, got ${value}`,
      );
    }
  }
  return Object.freeze({
    globalMax: options.globalMax,
    perPoolMax: options.perPoolMax,
    idleTimeoutMs: options.idleTimeoutMs,
    acquireTimeoutMs: options.acquireTimeoutMs,
    ...(options.onError ? { onError: options.onError } : {}),
  });
}

function closedError(): TenantryError {
  return new TenantryError('POOL_CLOSED');
}

/** pg's messages can name the user, host or database: only the code goes in the message; the cause keeps the rest for logs. */
function connectFailed(error: unknown): TenantryError {
  const code = (error as { code?: unknown } | undefined)?.code;
  return new TenantryError('POOL_CONNECT_FAILED', typeof code === 'string' ? code : undefined, { cause: error });
}
