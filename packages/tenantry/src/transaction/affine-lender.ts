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

/** pg-pool's idle list (newest last; `connect()` takes the last): the one internal the lender reads. */
interface PoolInternals {
  readonly _idle?: { readonly client: pg.PoolClient }[];
}

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
 * - **Affinity.** A schema-tier tenant takes, among the pool's idle connections, the one it
 *   ranks highest by rendezvous hashing (tenant id × connection seed): with the same
 *   connections idle it always lands on the same one, so each backend serves about 1/max of
 *   the schemas, warm. Pool-tier tenants (shared tables: nothing per tenant to keep warm)
 *   take the most recently used, as before. The pool stays a plain `pg.Pool` (its idle
 *   timeout, `maxUses` and direct users unchanged); the lender only reorders its idle list
 *   before `connect()`.
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
 *   acquireTimeoutMs: 5_000 });
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
  #closed = false;

  constructor(pool: pg.Pool, options: AffineLenderOptions) {
    this.#pool = pool;
    this.#options = options;
  }

  /** Connections open (lent or idle in the pool). */
  get totalCount(): number {
    return this.#pool.totalCount;
  }

  /** Open connections idle in the pool. */
  get idleCount(): number {
    return this.#pool.idleCount;
  }

  /** Transactions waiting for a connection (here, for their turn, or in the pool). */
  get waitingCount(): number {
    return this.#waiting + this.#pool.waitingCount;
  }

  /** Connections `tenantId` holds now. */
  heldBy(tenantId: string): number {
    return this.#held.get(tenantId) ?? 0;
  }

  /** A connection for `borrower`: now, when it is under its cap and one is free; else at its turn. */
  acquire(borrower: Borrower): Promise<LentConnection> {
    if (this.#closed) return Promise.reject(new Error('the runtime pool is closed'));
    const free = this.#lent < this.#options.max && this.#queues.size === 0;
    if (free && this.heldBy(borrower.id) < this.#options.maxPerTenant) return this.#take(borrower);
    return this.#wait(borrower);
  }

  /** Refuses new borrowers and fails the waiting ones; the pool itself is ended by its owner. */
  close(): void {
    this.#closed = true;
    for (const queue of this.#queues.values()) {
      for (const w of queue) {
        clearTimeout(w.timer);
        w.reject(new Error('the runtime pool is closed'));
      }
    }
    this.#queues.clear();
    this.#waiting = 0;
  }

  async #take(borrower: Borrower): Promise<LentConnection> {
    this.#lent++;
    this.#hold(borrower.id, 1);
    let client: pg.PoolClient;
    try {
      if (borrower.affine && this.#options.affinity) this.#preferIdle(borrower.id);
      client = await this.#pool.connect();
    } catch (error) {
      this.#lent--;
      this.#hold(borrower.id, -1);
      this.#serve();
      throw error;
    }
    const notes = this.#notesOf(client);
    if (borrower.affine) notes.schemas.add(borrower.id);
    let released = false;
    return {
      client,
      serial: notes.serial,
      release: (discard?: Error | boolean) => {
        if (released) return;
        released = true;
        this.#lent--;
        this.#hold(borrower.id, -1);
        const spent = notes.schemas.size >= this.#options.maxSchemas;
        client.release(discard || (spent ? true : undefined));
        this.#serve();
      },
    };
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
