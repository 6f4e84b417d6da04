import type { Pool } from 'pg';
import type { Logger } from '../config.ts';
import { OUTBOX_CHANNEL } from '../migrate/outbox-migration.ts';
import { UUID_PATTERN } from '../uuid.ts';
import type { TenantEvent } from './event-subscribers.ts';

/** Receives a tenant's committed events, in `seq` order, each once. */
export type StreamListener = (events: readonly TenantEvent[]) => void;

/** The subset of the control plane's `ChangeFeed` the stream needs: one `LISTEN` connection. */
export interface NotificationFeed {
  on(channel: string, handler: (payload: string | undefined) => void): () => void;
  start(): Promise<void>;
}

/** What {@link TenantEventStream} needs. */
export interface TenantEventStreamDeps {
  /** The admin pool (the outbox is a control-plane table). */
  readonly pool: Pool;
  /** The instance's change feed: the outbox's insert notifies it on commit, with the tenant id. */
  readonly feed: NotificationFeed;
  readonly logger?: Logger | undefined;
}

interface Row {
  id: string;
  tenant_id: string;
  seq: string;
  type: string;
  payload: Record<string, unknown>;
  actor: string | null;
  request_id: string | null;
  created_at: Date;
}

interface Stream {
  /** The last `seq` passed to the listeners; `undefined` while the first read runs. */
  head: number | undefined;
  readonly listeners: Set<StreamListener>;
  reading: boolean;
  again: boolean;
  /** Settles once {@link head} is read. */
  ready: Promise<void> | undefined;
}

/** How long to wait before reading again after a failed read. */
const RETRY_MS = 1000;

/** Events per read; a tenant with more due reads again at once. */
const BATCH = 500;

const READ_SQL = `SELECT id::text, tenant_id, seq::text, type, payload, actor, request_id, created_at
  FROM tenantry.outbox WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT ${BATCH}`;

const HEAD_SQL = 'SELECT coalesce((SELECT seq FROM tenantry.outbox_heads WHERE tenant_id = $1), 0)::text AS seq';

/**
 * The live feed of the tenants' **committed** outbox events on this instance, for the
 * tenants someone here listens to (the WebSocket hub): what `GET /v1/events` sends.
 *
 * It reads the outbox itself rather than riding on the dispatcher: the outbox's insert
 * trigger `NOTIFY`s `tenantry_outbox` with the tenant id, PostgreSQL delivers that only
 * when the writing transaction commits (a rolled-back write notifies nobody and leaves no
 * row), and every instance's one `LISTEN` connection hears it. The instance then reads
 * that tenant's rows past the last `seq` it passed on. A tenant's `seq` is taken under a
 * row lock held until commit, so the committed events of a tenant are always a gap-free
 * prefix 1…n: reading `seq > head` misses none and, since `head` only grows, passes none
 * twice — however many dispatchers run, whether they have delivered the event yet, and
 * however many notifications one commit or a retry causes. The query filters by the
 * tenant id; listeners are kept per tenant id.
 *
 * When the feed's connection drops (notifications are lost meanwhile), every tenant is
 * read again once it is back.
 *
 * @example
 * ```ts
 * const stream = new TenantEventStream({ pool: tenantry.adminPool, feed });
 * await stream.start();
 * const off = await stream.subscribe(tenantId, (events) => events.forEach((e) => console.log(e.type)));
 * ```
 */
export class TenantEventStream {
  readonly #deps: TenantEventStreamDeps;
  readonly #streams = new Map<string, Stream>();
  #off: (() => void) | undefined;
  #closed = false;

  constructor(deps: TenantEventStreamDeps) {
    this.#deps = deps;
  }

  /**
   * Listens on the outbox's channel (and starts the feed, which may already run). Idempotent.
   *
   * @example
   * ```ts
   * await stream.start();
   * ```
   */
  async start(): Promise<void> {
    if (!this.#off) {
      this.#off = this.#deps.feed.on(OUTBOX_CHANNEL, (tenantId) => {
        if (tenantId === undefined) for (const id of this.#streams.keys()) this.#pump(id);
        else if (this.#streams.has(tenantId)) this.#pump(tenantId);
      });
    }
    await this.#deps.feed.start();
  }

  /**
   * Calls `listener` with each batch of `tenantId`'s events committed from now on (those
   * committed before the promise resolves are not sent). Returns what unsubscribes.
   *
   * @example
   * ```ts
   * const off = await stream.subscribe(tenant.id, (events) => send(events));
   * off();
   * ```
   */
  async subscribe(tenantId: string, listener: StreamListener): Promise<() => void> {
    if (!UUID_PATTERN.test(tenantId)) throw new TypeError('a tenant id is a uuid');
    let stream = this.#streams.get(tenantId);
    if (!stream) {
      const created: Stream = { head: undefined, listeners: new Set(), reading: true, again: false, ready: undefined };
      this.#streams.set(tenantId, created);
      created.ready = this.#deps.pool.query<{ seq: string }>(HEAD_SQL, [tenantId]).then(
        ({ rows }) => {
          created.head = Number(rows[0]?.seq ?? 0);
          created.reading = false;
          // Notified while the head was read: what committed after it goes out now.
          if (created.again) this.#pump(tenantId);
        },
        (error: Error) => {
          if (this.#streams.get(tenantId) === created) this.#streams.delete(tenantId);
          throw error;
        },
      );
      stream = created;
    }
    await stream.ready;
    if (this.#streams.get(tenantId) !== stream) return this.subscribe(tenantId, listener);
    const current = stream;
    current.listeners.add(listener);
    return () => {
      current.listeners.delete(listener);
      if (current.listeners.size === 0 && this.#streams.get(tenantId) === current) this.#streams.delete(tenantId);
    };
  }

  /** Tenants listened to now, and the listeners. */
  get size(): { tenants: number; listeners: number } {
    let listeners = 0;
    for (const s of this.#streams.values()) listeners += s.listeners.size;
    return { tenants: this.#streams.size, listeners };
  }

  #pump(tenantId: string): void {
    const stream = this.#streams.get(tenantId);
    if (!stream || this.#closed) return;
    if (stream.reading || stream.head === undefined) {
      stream.again = true;
      return;
    }
    stream.reading = true;
    this.#read(tenantId, stream)
      .catch((error: Error) => {
        this.#deps.logger?.warn({ err: error.message, tenantId }, 'event stream: read failed; retrying');
        // Nothing else would read these events until the tenant's next commit.
        setTimeout(() => this.#pump(tenantId), RETRY_MS).unref();
      })
      .finally(() => {
        stream.reading = false;
        if (stream.again) {
          stream.again = false;
          this.#pump(tenantId);
        }
      });
  }

  async #read(tenantId: string, stream: Stream): Promise<void> {
    for (;;) {
      stream.again = false;
      const { rows } = await this.#deps.pool.query<Row>(READ_SQL, [tenantId, stream.head]);
      const events: TenantEvent[] = [];
      for (const row of rows) {
        const seq = Number(row.seq);
        // Both guards are belts and braces: the query already filters by tenant and seq.
        if (row.tenant_id !== tenantId || seq <= (stream.head as number)) continue;
        stream.head = seq;
        events.push({
          id: row.id,
          tenantId: row.tenant_id,
          seq,
          type: row.type,
          payload: row.payload,
          actor: row.actor,
          requestId: row.request_id,
          createdAt: row.created_at,
          attempt: 1,
        });
      }
      if (events.length > 0) {
        for (const listener of stream.listeners) {
          try {
            listener(events);
          } catch (error) {
            this.#deps.logger?.error({ err: (error as Error).message, tenantId }, 'event stream listener failed');
          }
        }
      }
      if (rows.length < BATCH || this.#streams.get(tenantId) !== stream) return;
    }
  }

  /**
   * Stops listening; listeners are not called again. Idempotent.
   *
   * @example
   * ```ts
   * stream.close();
   * ```
   */
  close(): void {
    this.#closed = true;
    this.#off?.();
    this.#off = undefined;
    this.#streams.clear();
  }
}
