import type { Pool, PoolClient } from 'pg';
import type { EventsOptions, Logger } from '../config.ts';
import { type TenantContext, withTenant } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import { UUID_PATTERN } from '../uuid.ts';
import { type EventHandler, EventSubscribers, type SubscribeOptions, type TenantEvent } from './event-subscribers.ts';

/** Options of {@link OutboxDispatcher} (resolved: see `TenantryOptions.events`). */
export interface DispatcherOptions extends EventsOptions {
  readonly logger?: Logger | undefined;
}

/** What a dispatcher needs, from the composition root. */
export interface DispatcherDeps {
  /** The admin pool (control plane). */
  readonly pool: Pool;
  /** The tenant context a handler runs in. */
  readonly context: (tenantId: string) => Promise<TenantContext>;
  /** Calls `wake` when an event may have been written; resolves to what stops listening. */
  readonly listen?: (wake: () => void) => Promise<() => Promise<void>>;
}

/** A dead-lettered event: its last delivery failed `attempts` times. */
export interface FailedEvent extends TenantEvent {
  readonly attempts: number;
  readonly lastError: string | null;
}

interface OutboxRow {
  id: string;
  tenant_id: string;
  seq: string;
  type: string;
  payload: Record<string, unknown>;
  actor: string | null;
  request_id: string | null;
  created_at: Date;
  attempts: number;
  last_error?: string | null;
}

const COLUMNS = 'id::text, tenant_id, seq::text, type, payload, actor, request_id, created_at, attempts, last_error';

/**
 * The first pending event of a tenant whose delivery is due and that no other dispatcher
 * holds. Row locks, not a lock table: a tenant's later events wait while an earlier one is
 * pending (locked, or waiting for its retry), so each tenant's events go out in order, and
 * the lock dies with the connection of a dispatcher that dies.
 *
 * The candidates are each tenant's head, read with `DISTINCT ON (tenant_id)` along the
 * partial index `(tenant_id, seq) WHERE state = 'pending'`, computed once (`ARRAY(…)`, an init plan): one
 * pass over the pending rows, then primary-key lookups of the heads.
 * (The first form, `NOT EXISTS` an earlier pending event of the tenant, was planned as a
 * nested loop over the pending rows on each side — a fresh outbox has no statistics — and
 * took half a second per claim with 1,000 events pending.) `state` is checked again on the
 * locked row: one that another dispatcher settled meanwhile is skipped.
 */
const CLAIM_SQL = `SELECT ${COLUMNS} FROM tenantry.outbox o
  WHERE o.id = ANY (ARRAY(SELECT DISTINCT ON (h.tenant_id) h.id FROM tenantry.outbox h
                           WHERE h.state = 'pending' ORDER BY h.tenant_id, h.seq))
    AND o.state = 'pending' AND o.available_at <= now()
  ORDER BY o.id LIMIT 1 FOR UPDATE SKIP LOCKED`;

function toEvent(row: OutboxRow, attempt: number): TenantEvent {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    seq: Number(row.seq),
    type: row.type,
    payload: row.payload,
    actor: row.actor,
    requestId: row.request_id,
    createdAt: row.created_at,
    attempt,
  };
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw new TenantryError('CONFIG_INVALID', `${name} is a positive integer`);
  return value;
}

/**
 * Delivers the outbox's events to in-process subscribers, at least once and, per tenant,
 * in order (see docs/events.md). Each handler runs in the event's tenant context
 * (`withTenant`), so `tenantry.transaction(fn)` inside it works for that tenant.
 *
 * Any number of dispatchers (one per instance of the application) share one outbox: an
 * event is held by one of them at a time (`FOR UPDATE SKIP LOCKED` on the event, which
 * must be its tenant's first pending one). It is marked delivered in the same
 * transaction, after every handler succeeded; a dispatcher that dies before leaves it
 * pending for another. A handler that throws makes the event retried after a growing
 * delay, and dead-lettered (`failed`, see {@link failed}) after `maxAttempts` deliveries;
 * the tenant's later events wait meanwhile. Dispatchers wake on the insert's
 * notification and poll as a fallback.
 *
 * @example
 * ```ts
 * tenantry.events.on('tenant.created', async (event) => {
 *   await tenantry.transaction((tx) => tx.query("INSERT INTO projects (name) VALUES ('Welcome')"));
 * });
 * await tenantry.events.start();
 * ```
 */
export class OutboxDispatcher {
  readonly #deps: DispatcherDeps;
  readonly #subscribers = new EventSubscribers();
  readonly #concurrency: number;
  readonly #pollMs: number;
  readonly #maxAttempts: number;
  readonly #retryMs: number;
  readonly #maxRetryMs: number;
  readonly #logger: Logger | undefined;
  /** Connections holding an event now, by worker. */
  readonly #holding = new Set<PoolClient>();
  #workers = new Set<Promise<void>>();
  #running = false;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #unlisten: (() => Promise<void>) | undefined;

  constructor(deps: DispatcherDeps, options: DispatcherOptions = {}) {
    this.#deps = deps;
    this.#concurrency = positive(options.concurrency, 2, 'concurrency');
    this.#pollMs = positive(options.pollIntervalMs, 1000, 'pollIntervalMs');
    this.#maxAttempts = positive(options.maxAttempts, 5, 'maxAttempts');
    this.#retryMs = positive(options.retryDelayMs, 1000, 'retryDelayMs');
    this.#maxRetryMs = positive(options.maxRetryDelayMs, 60_000, 'maxRetryDelayMs');
    this.#logger = options.logger;
  }

  /**
   * Calls `handler` for every event of `type` (`*`: every type), in the event's tenant
   * context; with `{ tenant }`, for that tenant's events only. Subscribe before
   * {@link start}: an event delivered while nobody subscribes to it counts as delivered.
   * Returns a function that removes the handler.
   *
   * @example
   * ```ts
   * const off = tenantry.events.on('item.created', (e) => console.log(e.tenantId, e.payload), { tenant: 'acme' });
   * ```
   */
  on<P = Record<string, unknown>>(type: string, handler: EventHandler<P>, options: SubscribeOptions = {}): () => void {
    return this.#subscribers.add(type, handler as EventHandler, options);
  }

  /**
   * Starts delivering: listens for new events, polls, and delivers what is pending.
   * Idempotent.
   *
   * @example
   * ```ts
   * await tenantry.events.start();
   * ```
   */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#timer = setInterval(() => this.#wake(), this.#pollMs);
    this.#timer.unref();
    if (this.#deps.listen) {
      try {
        this.#unlisten = await this.#deps.listen(() => this.#wake());
      } catch (error) {
        // Polling still delivers; only the latency suffers.
        this.#logger?.warn({ err: (error as Error).message }, 'outbox: cannot listen; polling only');
      }
    }
    this.#wake();
  }

  /**
   * Delivers every event that is due now, then resolves (whether or not started): what a
   * job or a test runs instead of {@link start}. Returns how many deliveries it attempted.
   *
   * @example
   * ```ts
   * await tenantry.events.drain();
   * ```
   */
  async drain(): Promise<number> {
    let n = 0;
    while (await this.#deliverOne()) n++;
    return n;
  }

  #wake(): void {
    if (!this.#running) return;
    if (this.#workers.size >= this.#concurrency) {
      this.#again = true; // a busy worker looks again before it stops
      return;
    }
    const worker = this.#work().finally(() => {
      this.#workers.delete(worker);
    });
    this.#workers.add(worker);
  }

  async #work(): Promise<void> {
    try {
      for (;;) {
        this.#again = false;
        while (this.#running && (await this.#deliverOne())) {
          if (this.#workers.size < this.#concurrency) this.#wake(); // more may be due for other tenants
        }
        if (!this.#running || !this.#again) return;
      }
    } catch (error) {
      if (this.#running) this.#logger?.error({ err: (error as Error).message }, 'outbox: delivery failed');
    }
  }

  /** Claims one event, runs its handlers and records the outcome; false when none is due. */
  async #deliverOne(): Promise<boolean> {
    const client = await this.#deps.pool.connect();
    this.#holding.add(client);
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<OutboxRow>(CLAIM_SQL);
      const row = rows[0];
      if (!row) {
        await client.query('COMMIT');
        return false;
      }
      const attempt = row.attempts + 1;
      const failure = await this.#run(toEvent(row, attempt));
      if (failure === undefined) {
        await client.query(
          `UPDATE tenantry.outbox SET state = 'delivered', attempts = $2, delivered_at = now(), last_error = NULL
            WHERE id = $1`,
          [row.id, attempt],
        );
      } else {
        const dead = attempt >= this.#maxAttempts;
        const delayMs = Math.min(this.#maxRetryMs, this.#retryMs * 2 ** (attempt - 1));
        await client.query(
          `UPDATE tenantry.outbox SET attempts = $2, last_error = $3,
                  state = CASE WHEN $4 THEN 'failed' ELSE 'pending' END,
                  available_at = now() + make_interval(secs => $5::double precision / 1000)
            WHERE id = $1`,
          [row.id, attempt, failure.slice(0, 2000), dead, delayMs],
        );
        this.#logger?.warn(
          { eventId: row.id, tenantId: row.tenant_id, type: row.type, attempt, err: failure },
          dead ? 'outbox: event dead-lettered' : 'outbox: handler failed; retrying',
        );
      }
      await client.query('COMMIT');
      return true;
    } catch (error) {
      broken = error as Error;
      throw error;
    } finally {
      // A broken connection is not returned to the pool (its transaction dies with it);
      // one that close() abandoned was closed already.
      if (this.#holding.delete(client)) client.release(broken);
    }
  }

  /** Runs the event's handlers in its tenant's context; the first error's message, if any. */
  async #run(event: TenantEvent): Promise<string | undefined> {
    try {
      const context = await this.#deps.context(event.tenantId);
      for (const handler of this.#subscribers.for(event.type, context)) {
        await withTenant(context, () => handler(event));
      }
      return undefined;
    } catch (error) {
      return error instanceof Error ? error.message || error.name : String(error);
    }
  }

  /**
   * Dead-lettered events, newest first: of one tenant (id) or of all.
   *
   * @example
   * ```ts
   * for (const e of await tenantry.events.failed({ tenantId })) console.log(e.type, e.lastError);
   * ```
   */
  async failed(options: { tenantId?: string; limit?: number } = {}): Promise<FailedEvent[]> {
    if (options.tenantId !== undefined && !UUID_PATTERN.test(String(options.tenantId))) return [];
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 50), 1), 500);
    const { rows } = await this.#deps.pool.query<OutboxRow>(
      `SELECT ${COLUMNS} FROM tenantry.outbox WHERE state = 'failed' AND ($1::uuid IS NULL OR tenant_id = $1)
        ORDER BY id DESC LIMIT $2`,
      [options.tenantId ?? null, limit],
    );
    return rows.map((r) => ({ ...toEvent(r, r.attempts), attempts: r.attempts, lastError: r.last_error ?? null }));
  }

  /**
   * Puts a dead-lettered event back in line, with its attempts reset; `NOT_FOUND` unless
   * it is a failed event. It goes out after the tenant's pending events that precede it.
   *
   * @example
   * ```ts
   * await tenantry.events.retry(event.id);
   * ```
   */
  async retry(eventId: string): Promise<void> {
    if (!/^\d{1,19}$/.test(String(eventId))) throw new TenantryError('NOT_FOUND', 'no such failed event');
    const { rowCount } = await this.#deps.pool.query(
      `UPDATE tenantry.outbox SET state = 'pending', attempts = 0, available_at = now()
        WHERE id = $1 AND state = 'failed'`,
      [eventId],
    );
    if (!rowCount) throw new TenantryError('NOT_FOUND', 'no such failed event');
    this.#wake();
  }

  /**
   * Deletes delivered events older than `olderThanMs` (default a day), in batches;
   * returns how many. Failed events stay until retried or their tenant is erased.
   *
   * @example
   * ```ts
   * await tenantry.events.purgeDelivered(7 * 24 * 3600_000);
   * ```
   */
  async purgeDelivered(olderThanMs = 24 * 3600_000): Promise<number> {
    let total = 0;
    for (;;) {
      const { rowCount } = await this.#deps.pool.query(
        `DELETE FROM tenantry.outbox WHERE id IN (SELECT id FROM tenantry.outbox
          WHERE state = 'delivered' AND delivered_at < now() - make_interval(secs => $1::double precision / 1000)
          LIMIT 5000)`,
        [olderThanMs],
      );
      total += rowCount ?? 0;
      if (!rowCount || rowCount < 5000) return total;
    }
  }

  /**
   * Stops delivering. Waits up to `timeoutMs` (default 10 s) for the deliveries under way;
   * those still running then are abandoned: their connections are closed, so their events
   * stay pending and another dispatcher delivers them (their handlers may have run: at
   * least once). Idempotent.
   *
   * @example
   * ```ts
   * await tenantry.events.close({ timeoutMs: 5000 });
   * ```
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#running = false;
    clearInterval(this.#timer);
    this.#timer = undefined;
    const unlisten = this.#unlisten;
    this.#unlisten = undefined;
    await unlisten?.().catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), options.timeoutMs ?? 10_000);
    });
    const outcome = await Promise.race([Promise.allSettled([...this.#workers]), timedOut]);
    clearTimeout(timer);
    if (outcome !== 'timeout') return;
    for (const client of this.#holding) {
      this.#holding.delete(client);
      client.release(new Error('outbox dispatcher closed'));
    }
  }
}
