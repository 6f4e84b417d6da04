import type pg from 'pg';

/** How the lender shares the main database's runtime connections. */
export interface AffineLenderOptions {
  /** Connections lent at once at most (`pool.max`, the pool's own size). */
  readonly max: number;
  /** Connections one tenant holds at most at once (`pool.maxPerTenant`). */
  readonly maxPerTenant: number;
  /** Distinct schema-tier tenants a connection serves before it is replaced (`pool.maxSchemasPerConnection`). */
  readonly maxSchemas: number;
  /** Whether schema-tier tenants prefer the connections that served them (`pool.tenantAffinity`). */
  readonly affinity: boolean;
  /** A waiter gives up after this long, with pg's own timeout error (mapped to `DATABASE_UNAVAILABLE`). */
  readonly acquireTimeoutMs: number;
  /**
   * How long a schema-tier tenant waits for its own connection while another tenant's
   * transaction holds it, before it takes another (`pool.affinityWaitMs`); 0: never waits.
   */
  readonly affinityWaitMs: number;
}

/** Who asks for a connection: the tenant, and whether its catalog entries are its own (schema tier). */
export interface Borrower {
  readonly id: string;
  /** Schema tier: prefer the connections that served it, so its schema's catalog stays warm there. */
  readonly affine: boolean;
}

/** A lent connection: give it back exactly once. */
export interface LentConnection {
  readonly client: pg.PoolClient;
  /** Serial number of the connection in this lender (for tests and diagnostics). */
  readonly serial: number;
  release(discard?: Error | boolean): void;
}

/** What the lender remembers of a connection. */
interface ConnectionNotes {
  readonly serial: number;
  /** Its rendezvous seed. */
  readonly seed: number;
  /** Schema-tier tenants it has served. */
  readonly schemas: Set<string>;
}

/**
 * The two pg-pool internals the lender uses: its idle list (newest last; a checkout takes
 * the last) and the step that hands an idle connection to the first waiting checkout.
 */
interface PoolInternals {
  readonly _idle?: { readonly client: pg.PoolClient }[];
  _pulseQueue?(): void;
}

/** Whether a borrower may wait for its own connection, or takes what is free (it waited already). */
type HomeWait = 'may-wait' | 'take-free';

interface Waiter {
  readonly borrower: Borrower;
  resolve(lent: LentConnection): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}
/** FNV-1a of `text` mixed with `seed`: the rendezvous score of a tenant on a connection. */
function score(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 12)) >>> 0;
}

/**
 * Lends the main database's runtime connections to tenant transactions, tenant-affine and
 * fair. A PostgreSQL backend keeps the catalog entries (and compiled trigger functions) of
 * every schema it has served, for its life: with ordinary pooling, at 10,000 schema-tier
 * tenants nearly every transaction is a backend's first use of its schema (+1.5–1.9 ms of
 * server CPU) and every backend drifts towards holding the whole catalog. Here:
 *
 * - **Affinity.** A schema-tier tenant's own connection is the one it ranks highest among
 *   the pool's open connections by rendezvous hashing (tenant id × connection seed), so each
 *   backend serves about 1/max of the schemas, warm. When another tenant's transaction holds
 *   it (and the pool is at its size), the tenant waits for it, up to `affinityWaitMs`, and
 *   then takes the idle connection it ranks highest; when connections are short (every one
 *   lent), fairness comes first and a waiting tenant takes whichever is freed. Taking whatever is idle at once is not
 *   enough: under load (as many transactions as connections) there is one idle connection
 *   or none to choose from, every backend meets every schema, and at 10,000 tenants nearly
 *   each transaction paid a backend's first use of its schema (measured: half of the
 *   backends' CPU in compiling trigger functions, building relation cache entries and
 *   planning). Pool-tier tenants (shared tables: nothing per tenant to keep warm) take the
 *   most recently used, as before. The pool stays a plain `pg.Pool` (its idle timeout,
 *   `maxUses` and direct users unchanged); the lender only reorders its idle list before
 *   `connect()`.
 * - **Bounded.** A connection is replaced after serving `maxSchemas` distinct schemas (or
 *   `pool.maxUses` transactions): a backend's catalog cache has a ceiling.
 * - **Fair.** A tenant holds at most `maxPerTenant` connections; when connections are short,
 *   the next free one goes to the waiting tenant that holds the fewest (round robin among
 *   equals, FIFO within a tenant), so one busy tenant cannot hold all connections, and a
 *   tenant arriving behind its queue is served next, not after it.
 *
 * Isolation does not depend on which connection serves whom: each transaction sets the
 * verified context and `search_path` with `set_config(…, true)`, which ends with it.
 *
 * @example
 * const lender = new AffineLender(runtimePool, { max: 10, maxPerTenant: 9, maxSchemas: 1_000, affinity: true,
 *   acquireTimeoutMs: 5_000, affinityWaitMs: 20 });
 * const lent = await lender.acquire({ id: tenant.id, affine: tenant.tier === 'schema' });
 * try { await lent.client.query('SELECT 1'); } finally { lent.release(); }
 */
export class AffineLender {
  readonly #pool: pg.Pool;
  readonly #options: AffineLenderOptions;
  readonly #notes = new WeakMap<pg.PoolClient, ConnectionNotes>();
  #serials = 0;
  /** Connections lent now (or being taken from the pool for a borrower). */
  #lent = 0;
  readonly #held = new Map<string, number>();
  /** Waiting tenants in turn order; each with its FIFO of waiters. */
  readonly #queues = new Map<string, Waiter[]>();
  #waiting = 0;
  /** Open connections the lender has lent (idle or lent now): where tenants' own connections are. */
  readonly #open = new Set<pg.PoolClient>();
  /** The tenant each lent connection is lent to. */
  readonly #lentTo = new Map<pg.PoolClient, string>();
  /** Schema-tier tenants waiting for their own connection, by connection (FIFO). */
  readonly #homeWaiters = new Map<pg.PoolClient, Waiter[]>();
  #homeWaiting = 0;
  #closed = false;

  constructor(pool: pg.Pool, options: AffineLenderOptions) {
    this.#pool = pool;
    this.#options = options;
    // Closed by the pool itself (idle timeout, error): no tenant's own connection any more.
    pool.on('remove', (client) => this.#forget(client));
  }

  /** Connections open (lent or idle in the pool). */
  get totalCount(): number {
    return this.#pool.totalCount;
  }

  /** Open connections idle in the pool. */
  get idleCount(): number {
    return this.#pool.idleCount;
  }

  /** Transactions waiting for a connection (here, for their turn or their own connection, or in the pool). */
  get waitingCount(): number {
    return this.#waiting + this.#homeWaiting + this.#pool.waitingCount;
  }

  /** Connections `tenantId` holds now. */
  heldBy(tenantId: string): number {
    return this.#held.get(tenantId) ?? 0;
  }

  /** A connection for `borrower`: now, when it is under its cap and one is free; else at its turn. */
  acquire(borrower: Borrower): Promise<LentConnection> {
    return this.#acquire(borrower, 'may-wait');
  }

  #acquire(borrower: Borrower, homeWait: HomeWait): Promise<LentConnection> {
    if (this.#closed) return Promise.reject(new Error('the runtime pool is closed'));
    const free = this.#lent < this.#options.max && this.#queues.size === 0;
    if (free && this.heldBy(borrower.id) < this.#options.maxPerTenant) {
      const home = homeWait === 'may-wait' ? this.#busyHome(borrower) : undefined;
      return home ? this.#waitForHome(home, borrower) : this.#take(borrower);
    }
    // Connections are short: fairness first, and the turn takes whatever is freed.
    return this.#wait(borrower);
  }

  /** Refuses new borrowers and fails the waiting ones; the pool itself is ended by its owner. */
  close(): void {
    this.#closed = true;
    const waiters = [...this.#queues.values(), ...this.#homeWaiters.values()].flat();
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new Error('the runtime pool is closed'));
    }
    this.#queues.clear();
    this.#homeWaiters.clear();
    this.#waiting = 0;
    this.#homeWaiting = 0;
  }

  /**
   * The schema-tier borrower's own connection when it should wait for it: lent to another
   * tenant now, with the pool at its size (while it grows, the set of connections, and so
   * each tenant's own, is still changing). Undefined: take what is free.
   */
  #busyHome(borrower: Borrower): pg.PoolClient | undefined {
    const { affinity, affinityWaitMs, max } = this.#options;
    if (!borrower.affine || !affinity || affinityWaitMs <= 0 || this.#open.size < max) return undefined;
    let home: pg.PoolClient | undefined;
    let best = -1;
    for (const client of this.#open) {
      const s = score(borrower.id, this.#notesOf(client).seed);
      if (s > best) {
        best = s;
        home = client;
      }
    }
    const holder = home ? this.#lentTo.get(home) : undefined;
    // Idle: #take lends it. Held by this tenant: its next transaction takes another.
    return holder !== undefined && holder !== borrower.id ? home : undefined;
  }

  #waitForHome(home: pg.PoolClient, borrower: Borrower): Promise<LentConnection> {
    return new Promise<LentConnection>((resolve, reject) => {
      const waiter: Waiter = {
        borrower,
        resolve,
        reject,
        timer: setTimeout(() => {
          if (this.#dropHomeWaiter(home, waiter)) this.#acquire(borrower, 'take-free').then(resolve, reject);
        }, this.#options.affinityWaitMs),
      };
      const list = this.#homeWaiters.get(home);
      if (list) list.push(waiter);
      else this.#homeWaiters.set(home, [waiter]);
      this.#homeWaiting++;
    });
  }

  /** Removes `waiter` from `home`'s list; false when it was no longer there. */
  #dropHomeWaiter(home: pg.PoolClient, waiter: Waiter): boolean {
    const list = this.#homeWaiters.get(home);
    const i = list?.indexOf(waiter) ?? -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    if (list.length === 0) this.#homeWaiters.delete(home);
    this.#homeWaiting--;
    clearTimeout(waiter.timer);
    return true;
  }

  /** `client` came back idle: the first tenant waiting for it as its own takes it. */
  #handHome(client: pg.PoolClient): void {
    const waiter = this.#homeWaiters.get(client)?.[0];
    if (!waiter) return;
    this.#dropHomeWaiter(client, waiter);
    // Ahead of the turn order: the capacity this release frees is this connection, and the
    // waiter has waited for it. #take prefers the idle connection the tenant ranks highest: this one.
    const lend =
      this.heldBy(waiter.borrower.id) < this.#options.maxPerTenant
        ? this.#take(waiter.borrower)
        : this.#acquire(waiter.borrower, 'take-free');
    lend.then(waiter.resolve, waiter.reject);
  }

  /** `client` is closed or being closed: those waiting for it take what is free instead. */
  #forget(client: pg.PoolClient): void {
    this.#open.delete(client);
    this.#lentTo.delete(client);
    for (const waiter of [...(this.#homeWaiters.get(client) ?? [])]) {
      this.#dropHomeWaiter(client, waiter);
      this.#acquire(waiter.borrower, 'take-free').then(waiter.resolve, waiter.reject);
    }
  }

  async #take(borrower: Borrower): Promise<LentConnection> {
    this.#lent++;
    this.#hold(borrower.id, 1);
    let client: pg.PoolClient;
    try {
      if (borrower.affine && this.#options.affinity) this.#preferIdle(borrower.id);
      client = await this.#connect(borrower.id);
    } catch (error) {
      this.#lent--;
      this.#hold(borrower.id, -1);
      this.#serve();
      throw error;
    }
    const notes = this.#notesOf(client);
    if (borrower.affine) notes.schemas.add(borrower.id);
    this.#open.add(client);
    this.#lentTo.set(client, borrower.id);
    let released = false;
    return {
      client,
      serial: notes.serial,
      release: (discard?: Error | boolean) => {
        if (released) return;
        released = true;
        this.#lent--;
        this.#hold(borrower.id, -1);
        this.#lentTo.delete(client);
        const spent = notes.schemas.size >= this.#options.maxSchemas;
        const closing = Boolean(discard) || spent;
        client.release(discard || (spent ? true : undefined));
        if (closing) this.#forget(client);
        else this.#handHome(client);
        this.#serve();
      },
    };
  }

  /**
   * `pool.connect()`, served now from the end of the idle list when it has a connection.
   * pg-pool only queues the checkout and takes an idle connection on the next tick, and by
   * then a release in between (or another checkout) has put a different one at the end:
   * under load, the order `#preferIdle` set was lost nearly every time, and every backend
   * met every schema.
   */
  #connect(tenantId: string): Promise<pg.PoolClient> {
    const pool = this.#pool as unknown as PoolInternals;
    // Only when no checkout waits in the pool: then this one is first and gets the last idle.
    const next = this.#pool.waitingCount === 0 ? pool._idle?.at(-1)?.client : undefined;
    const client = this.#pool.connect();
    if (next && pool._pulseQueue) {
      pool._pulseQueue();
      // Lent from now on, not once the checkout settles: a borrower arriving meanwhile must
      // see its own connection busy, not take another one believing it idle.
      this.#lentTo.set(next, tenantId);
    }
    return client;
  }

  /** Moves the idle connection `tenantId` ranks highest to where `connect()` takes from. */
  #preferIdle(tenantId: string): void {
    const idle = (this.#pool as unknown as PoolInternals)._idle;
    if (!Array.isArray(idle) || idle.length < 2) return;
    let best = -1;
    let index = -1;
    for (let i = 0; i < idle.length; i++) {
      const s = score(tenantId, this.#notesOf((idle[i] as { client: pg.PoolClient }).client).seed);
      if (s > best) {
        best = s;
        index = i;
      }
    }
    if (index >= 0 && index !== idle.length - 1) idle.push(...idle.splice(index, 1));
  }

  #notesOf(client: pg.PoolClient): ConnectionNotes {
    let notes = this.#notes.get(client);
    if (!notes) {
      const serial = ++this.#serials;
      notes = { serial, seed: score(`connection-${serial}`, serial), schemas: new Set() };
      this.#notes.set(client, notes);
    }
    return notes;
  }

  #wait(borrower: Borrower): Promise<LentConnection> {
    return new Promise<LentConnection>((resolve, reject) => {
      const waiter: Waiter = {
        borrower,
        resolve,
        reject,
        timer: setTimeout(() => {
          const queue = this.#queues.get(borrower.id);
          const i = queue?.indexOf(waiter) ?? -1;
          if (queue && i >= 0) {
            queue.splice(i, 1);
            this.#waiting--;
            if (queue.length === 0) this.#queues.delete(borrower.id);
          }
          reject(new Error('timeout exceeded when trying to connect'));
        }, this.#options.acquireTimeoutMs),
      };
      const queue = this.#queues.get(borrower.id);
      if (queue) queue.push(waiter);
      else this.#queues.set(borrower.id, [waiter]);
      this.#waiting++;
      this.#serve();
    });
  }

  /**
   * Hands free capacity to waiters: to the waiting tenant under its cap that holds the fewest
   * connections, the earliest in turn among equals; it then goes to the back of the turn.
   */
  #serve(): void {
    while (this.#queues.size > 0 && this.#lent < this.#options.max) {
      let chosen: string | undefined;
      let fewest = Number.POSITIVE_INFINITY;
      for (const tenant of this.#queues.keys()) {
        const held = this.heldBy(tenant);
        if (held < this.#options.maxPerTenant && held < fewest) {
          chosen = tenant;
          fewest = held;
        }
      }
      if (chosen === undefined) return;
      const queue = this.#queues.get(chosen) as Waiter[];
      const waiter = queue.shift() as Waiter;
      this.#queues.delete(chosen);
      if (queue.length > 0) this.#queues.set(chosen, queue);
      this.#waiting--;
      clearTimeout(waiter.timer);
      // #take counts the connection against the tenant's cap synchronously, before it settles.
      this.#take(waiter.borrower).then(waiter.resolve, waiter.reject);
    }
  }

  #hold(tenantId: string, delta: number): void {
    const n = (this.#held.get(tenantId) ?? 0) + delta;
    if (n > 0) this.#held.set(tenantId, n);
    else this.#held.delete(tenantId);
  }
}
