import type { Pool } from 'pg';
import type { Logger } from '../config.ts';
import { OUTBOX_CHANNEL } from '../migrate/outbox-migration.ts';
import { UUID_PATTERN } from '../uuid.ts';
import type { NotificationFeed } from './event-stream.ts';

/** One event as the operator's feed shows it: no payload (that stays with the tenant's API). */
export interface FleetEvent {
  /** The event's id in the outbox (a bigint, as text). */
  readonly id: string;
  readonly tenantId: string;
  readonly tenantSlug: string;
  /** Its position among its tenant's events (1, 2, 3, … in commit order). */
  readonly seq: number;
  readonly type: string;
  readonly actor: string | null;
  readonly createdAt: Date;
}

/** Receives batches of events, oldest first within a batch. */
export type FleetListener = (events: readonly FleetEvent[]) => void;

/** What {@link FleetEventFeed} needs: the admin pool and the instance's `LISTEN` connection. */
export interface FleetEventFeedDeps {
  readonly pool: Pool;
  readonly feed: NotificationFeed;
  readonly logger?: Logger | undefined;
}

/** Bounds of {@link FleetEventFeed}; every one caps memory whatever the fleet's size. */
export interface FleetEventFeedOptions {
  /** Recent events kept for a viewer who connects (default 200). */
  readonly recent?: number;
  /**
   * Tenants whose last position is remembered (default 20,000). Past it, the least recently
   * active are forgotten, but only once they have been quiet for two minutes (so a tenant
   * read again as unknown cannot show an event twice): the bound then follows the number of
   * tenants active in two minutes.
   */
  readonly tenants?: number;
  /** Events per read (default 500); more due are read at once after. */
  readonly batch?: number;
  /**
   * Least time between the starts of two reads (default 100 ms): under a stream of commits,
   * one read takes every tenant notified meanwhile, so the feed costs the database at most
   * ten statements a second however fast the tenants write.
   */
  readonly intervalMs?: number;
  /**
   * How long a tenant must have been quiet before it can be forgotten (default two minutes).
   * A tenant read as unknown is read from its events of the last half of it (one minute).
   */
  readonly quietMs?: number;
}

interface Row {
  id: string;
  tenant_id: string;
  slug: string;
  seq: string;
  type: string;
  actor: string | null;
  created_at: Date;
}

const COLUMNS = 'o.id::text, o.tenant_id, t.slug, o.seq::text, o.type, o.actor, o.created_at';

const RETRY_MS = 1000;

/**
 * The operator's feed of **every** tenant's committed events, one per server process, shared
 * by all its viewers (the console's Live page), so that a hundred open consoles cost what one
 * does.
 *
 * It listens on the outbox's channel like the per-tenant `TenantEventStream` — the insert
 * trigger notifies with the tenant id, and PostgreSQL delivers it only once the writer
 * commits — so the tenants' own path pays nothing more: no trigger, no table, no extra
 * notification, and reads go through the admin pool. A read starts at most every
 * `intervalMs`; the notifications that arrive meanwhile are gathered, and the read takes all
 * their tenants in one statement. For a tenant it remembers, it reads `seq > last position`
 * (a tenant's committed events are a gap-free prefix, so none is missed or shown twice,
 * whatever order transactions commit in); for one it does not (new since the feed started,
 * or forgotten), its events of the last minute past the outbox's highest id at the start — an
 * event whose transaction stayed open longer can be missed there, which an operator's view
 * tolerates and the tenant's own stream does not have to.
 *
 * Bounded: the last `recent` events for viewers who connect, the positions of `tenants`
 * tenants (the least recently active forgotten first, once quiet for two minutes), reads of
 * `batch` rows. A slow viewer is the caller's to cut off (the Live route ends a stream whose
 * socket holds too much unsent). It runs only while someone listens: the last unsubscribe
 * stops it and forgets everything.
 *
 * @example
 * ```ts
 * const feed = new FleetEventFeed({ pool: tenantry.adminPool, feed: changeFeed });
 * const off = await feed.subscribe((events) => events.forEach((e) => console.log(e.tenantSlug, e.type)));
 * feed.recent(); // the last events, newest last
 * off();
 * ```
 */
export class FleetEventFeed {
  readonly #deps: FleetEventFeedDeps;
  readonly #recentMax: number;
  readonly #tenantMax: number;
  readonly #batch: number;
  readonly #intervalMs: number;
  readonly #quietMs: number;
  readonly #listeners = new Set<{ listener: FleetListener; tenantId: string | undefined }>();
  /** Last position passed on, and when, by tenant; insertion order is recency (oldest first). */
  readonly #heads = new Map<string, { seq: number; at: number }>();
  readonly #dirty = new Set<string>();
  #recent: FleetEvent[] = [];
  /** The highest outbox id when the feed started: nothing at or below it is new. */
  #startFloor = 0;
  /** (time, highest outbox id passed by then), one every ten seconds at most, for {@link #floor}. */
  #checkpoints: { at: number; id: number }[] = [];
  #everything = false;
  /** Where a read of every tenant goes on from when the last one came back full. */
  #sweepFrom = 0;
  #reading = false;
  /** The wait before the next read (the interval, or a retry after a failure). */
  #retry: NodeJS.Timeout | undefined;
  #off: (() => void) | undefined;
  #starting: Promise<void> | undefined;

  constructor(deps: FleetEventFeedDeps, options: FleetEventFeedOptions = {}) {
    this.#deps = deps;
    this.#recentMax = options.recent ?? 200;
    this.#tenantMax = options.tenants ?? 20_000;
    this.#batch = options.batch ?? 500;
    this.#intervalMs = options.intervalMs ?? 100;
    this.#quietMs = options.quietMs ?? 120_000;
  }

  /**
   * Calls `listener` with every event committed from now on (only `tenantId`'s when given).
   * Starts the feed if nobody listened yet. Returns what unsubscribes.
   *
   * @example
   * ```ts
   * const off = await feed.subscribe((events) => send(events), tenant.id);
   * ```
   */
  async subscribe(listener: FleetListener, tenantId?: string): Promise<() => void> {
    if (tenantId !== undefined && !UUID_PATTERN.test(tenantId)) throw new TypeError('a tenant id is a uuid');
    const entry = { listener, tenantId };
    this.#listeners.add(entry);
    try {
      await this.#start();
      // A followed tenant's position is read exactly (as the per-tenant stream does), so
      // none of its events is missed however long ago the feed started.
      if (tenantId !== undefined && !this.#heads.has(tenantId)) {
        const { rows } = await this.#deps.pool.query<{ seq: string }>(
          'SELECT coalesce((SELECT seq FROM tenantry.outbox_heads WHERE tenant_id = $1), 0)::text AS seq',
          [tenantId],
        );
        if (!this.#heads.has(tenantId)) this.#remember(tenantId, Number(rows[0]?.seq ?? 0));
      }
    } catch (error) {
      this.#unsubscribe(entry);
      throw error;
    }
    return () => this.#unsubscribe(entry);
  }

  /**
   * The last events the feed saw (at most `recent`), oldest first; only `tenantId`'s when given.
   *
   * @example
   * ```ts
   * for (const e of feed.recent().reverse()) show(e);
   * ```
   */
  recent(tenantId?: string): readonly FleetEvent[] {
    return tenantId === undefined ? [...this.#recent] : this.#recent.filter((e) => e.tenantId === tenantId);
  }

  /**
   * The tenant's last `limit` events (1–200) from the outbox, oldest first: what a viewer
   * following one tenant sees before the live ones (the shared buffer may hold none of them).
   *
   * @example
   * ```ts
   * const before = await feed.history(tenant.id, 50);
   * ```
   */
  async history(tenantId: string, limit = 50): Promise<readonly FleetEvent[]> {
    if (!UUID_PATTERN.test(tenantId)) throw new TypeError('a tenant id is a uuid');
    const { rows } = await this.#deps.pool.query<Row>(
      `SELECT ${COLUMNS} FROM tenantry.outbox o JOIN tenantry.tenants t ON t.id = o.tenant_id
        WHERE o.tenant_id = $1 ORDER BY o.seq DESC LIMIT $2`,
      [tenantId, Math.min(Math.max(Math.trunc(limit), 1), 200)],
    );
    return rows.reverse().map(toEvent);
  }

  /** Viewers now, tenants whose position is kept, and whether the feed is running. */
  get size(): { listeners: number; tenants: number; running: boolean } {
    return { listeners: this.#listeners.size, tenants: this.#heads.size, running: this.#off !== undefined };
  }

  #unsubscribe(entry: { listener: FleetListener; tenantId: string | undefined }): void {
    this.#listeners.delete(entry);
    if (this.#listeners.size === 0) this.#stop();
  }

  #start(): Promise<void> {
    if (!this.#starting) {
      this.#off = this.#deps.feed.on(OUTBOX_CHANNEL, (tenantId) => {
        if (tenantId === undefined) this.#everything = true;
        else if (UUID_PATTERN.test(tenantId)) this.#dirty.add(tenantId);
        else return;
        this.#pump();
      });
      // Listening first, then the seed: whatever commits after it is notified and read.
      const starting = this.#deps.feed
        .start()
        .then(() =>
          this.#deps.pool.query<Row>(
            `SELECT ${COLUMNS} FROM tenantry.outbox o JOIN tenantry.tenants t ON t.id = o.tenant_id
              ORDER BY o.id DESC LIMIT ${this.#recentMax}`,
          ),
        )
        .then(({ rows }) => {
          if (this.#starting !== starting) return;
          const events = rows.reverse().map(toEvent);
          for (const e of events) this.#pass(e);
          this.#startFloor = Number(events.at(-1)?.id ?? 0);
          this.#recent = events;
          this.#reading = false;
          this.#pump();
        });
      this.#reading = true; // no read before the seed has set the positions
      this.#starting = starting;
      starting.catch(() => {
        if (this.#starting === starting) this.#stop();
      });
    }
    return this.#starting;
  }

  #stop(): void {
    this.#off?.();
    this.#off = undefined;
    this.#starting = undefined;
    this.#heads.clear();
    this.#dirty.clear();
    this.#recent = [];
    this.#startFloor = 0;
    this.#checkpoints = [];
    this.#everything = false;
    this.#sweepFrom = 0;
    this.#reading = false;
    clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  #pump(): void {
    if (this.#reading || !this.#off || (this.#dirty.size === 0 && !this.#everything)) return;
    this.#reading = true;
    const run = this.#starting;
    const started = performance.now();
    const next = (ms: number) => {
      // Until then notifications only mark their tenants: the next read takes them all.
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#reading = false;
        this.#pump();
      }, ms);
      this.#retry.unref();
    };
    this.#read().then(
      () => {
        if (this.#starting !== run) return;
        const wait = this.#intervalMs - (performance.now() - started);
        if (wait > 0) return next(wait);
        this.#reading = false;
        this.#pump();
      },
      (error: Error) => {
        if (this.#starting !== run) return;
        this.#deps.logger?.warn({ err: error.message }, 'fleet event feed: read failed; retrying in a second');
        // What was notified is read again with the rest; nothing reads before the retry.
        this.#everything = true;
        next(RETRY_MS);
      },
    );
  }

  /** One read of every tenant notified since the last (a full batch marks its tenant again). */
  async #read(): Promise<void> {
    const tenants = [...this.#dirty];
    this.#dirty.clear();
    const everything = this.#everything;
    this.#everything = false;
    const known = tenants.filter((t) => this.#heads.has(t));
    const unknown = tenants.filter((t) => !this.#heads.has(t));
    const rows: Row[] = [];
    if (known.length > 0) {
      const result = await this.#deps.pool.query<Row>(
        `SELECT ${COLUMNS} FROM unnest($1::uuid[], $2::bigint[]) AS d(tenant_id, head)
           CROSS JOIN LATERAL (SELECT * FROM tenantry.outbox o WHERE o.tenant_id = d.tenant_id AND o.seq > d.head
                                ORDER BY o.seq LIMIT ${this.#batch}) o
           JOIN tenantry.tenants t ON t.id = o.tenant_id`,
        [known, known.map((t) => this.#heads.get(t)?.seq ?? 0)],
      );
      rows.push(...result.rows);
      const counts = new Map<string, number>();
      for (const row of result.rows) counts.set(row.tenant_id, (counts.get(row.tenant_id) ?? 0) + 1);
      for (const [tenantId, count] of counts) if (count >= this.#batch) this.#dirty.add(tenantId);
    }
    if (unknown.length > 0 || everything) {
      // A tenant without a kept position (new since the start, or forgotten as the least
      // recently active) or, after a lost connection, any tenant: its events of the last
      // half of `quietMs` (a minute) past the start. A forgotten tenant was quiet for all of
      // it, so nothing is shown twice; the cost is missing an event whose transaction stayed
      // open longer than that.
      const window = `${Math.round(this.#quietMs / 2)} milliseconds`;
      const result = await this.#deps.pool.query<Row>(
        `SELECT ${COLUMNS} FROM tenantry.outbox o JOIN tenantry.tenants t ON t.id = o.tenant_id
          WHERE o.id > $1 AND o.created_at > now() - $2::interval
            ${everything ? '' : 'AND o.tenant_id = ANY($3::uuid[])'} ORDER BY o.id LIMIT ${this.#batch}`,
        everything ? [Math.max(this.#floor(), this.#sweepFrom), window] : [this.#floor(), window, unknown],
      );
      rows.push(...result.rows);
      const full = result.rows.length >= this.#batch;
      // More than a batch: what was read now has positions; read by them next time.
      if (full) for (const row of result.rows) this.#dirty.add(row.tenant_id);
      if (everything) {
        this.#sweepFrom = full ? Number(result.rows.at(-1)?.id ?? 0) : 0;
        if (full) this.#everything = true;
      }
    }
    rows.sort((a, b) => Number(a.id) - Number(b.id));
    const events: FleetEvent[] = [];
    for (const row of rows) {
      const event = toEvent(row);
      if (this.#pass(event)) events.push(event);
    }
    if (events.length > 0) {
      this.#publish(events);
      this.#checkpoint(Number(events.at(-1)?.id ?? 0)); // in id order: the last is the highest
    }
  }

  /**
   * The outbox id below which no event can be in the last minute: the start's highest id, or
   * an id passed on over two minutes ago (ids are taken at insert, so every lower one was
   * inserted before it). Reading unknown tenants past it keeps that read to recent rows of
   * the primary key, however long the feed has run.
   */
  #floor(): number {
    const old = Date.now() - this.#quietMs;
    let floor = this.#startFloor;
    while (this.#checkpoints.length > 1 && (this.#checkpoints[1]?.at ?? Number.POSITIVE_INFINITY) <= old) {
      this.#checkpoints.shift();
    }
    const first = this.#checkpoints[0];
    if (first && first.at <= old) floor = Math.max(floor, first.id);
    return floor;
  }

  #checkpoint(id: number): void {
    const now = Date.now();
    const last = this.#checkpoints.at(-1);
    if (last && now - last.at < 10_000) {
      last.id = Math.max(last.id, id);
      return;
    }
    this.#checkpoints.push({ at: now, id });
  }

  /** Moves the tenant's position past `event`; false when it was passed on already. */
  #pass(event: FleetEvent): boolean {
    const head = this.#heads.get(event.tenantId);
    if (head !== undefined && event.seq <= head.seq) return false;
    this.#remember(event.tenantId, event.seq);
    return true;
  }

  #remember(tenantId: string, seq: number): void {
    const now = Date.now();
    this.#heads.delete(tenantId);
    this.#heads.set(tenantId, { seq, at: now });
    // Forgotten, a tenant is read as unknown: its events of the last minute. One quiet for
    // two has none of those that were passed on, so none is shown twice.
    for (const [oldest, head] of this.#heads) {
      if (this.#heads.size <= this.#tenantMax || head.at > now - this.#quietMs) break;
      this.#heads.delete(oldest);
    }
  }

  #publish(events: readonly FleetEvent[]): void {
    this.#recent.push(...events);
    if (this.#recent.length > this.#recentMax) this.#recent.splice(0, this.#recent.length - this.#recentMax);
    for (const { listener, tenantId } of this.#listeners) {
      const mine = tenantId === undefined ? events : events.filter((e) => e.tenantId === tenantId);
      if (mine.length === 0) continue;
      try {
        listener(mine);
      } catch (error) {
        this.#deps.logger?.error({ err: (error as Error).message }, 'fleet event feed listener failed');
      }
    }
  }
}

function toEvent(row: Row): FleetEvent {
  return Object.freeze({
    id: row.id,
    tenantId: row.tenant_id,
    tenantSlug: row.slug,
    seq: Number(row.seq),
    type: row.type,
    actor: row.actor,
    createdAt: row.created_at,
  });
}
