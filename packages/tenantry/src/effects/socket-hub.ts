import type { Logger } from '../config.ts';
import type { TenantEventStream } from './event-stream.ts';
import type { TenantEvent } from './event-subscribers.ts';

/** The subset of a `ws` WebSocket the hub needs (so this file does not load `ws`). */
export interface HubSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  ping(): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: 'pong' | 'close', listener: () => void): unknown;
}

/**
 * Close codes of `GET /v1/events` (see docs/events.md, "Close codes").
 *
 * @example
 * ```ts
 * socket.on('close', (code) => { if (code === CLOSE.slowConsumer) reconnectWithBackoff(); });
 * ```
 */
export const CLOSE = {
  /** The server is shutting down. */
  goingAway: 1001,
  internalError: 1011,
  /** A message the protocol does not know, or not JSON. */
  badMessage: 4400,
  /** No valid credential: forged, expired or revoked, before or after connecting. */
  unauthorized: 4401,
  /** The credential lacks `events:read`, or names another tenant. */
  forbidden: 4403,
  /** No `auth` message within the auth deadline. */
  authTimeout: 4408,
  /** The tenant was suspended, is offboarding or was deleted. */
  tenantNotActive: 4410,
  /** More than the bound of unsent bytes: the client reads slower than its events arrive. */
  slowConsumer: 4413,
  /** The tenant has as many sockets as this instance allows. */
  tooManySockets: 4429,
} as const;

const OPEN = 1;
/** How often a socket with a backlog looks whether its buffer drained. */
const FLUSH_MS = 5;

/** Options of {@link SocketHub}. */
export interface SocketHubOptions {
  /** Ping interval; a socket that has not answered the previous ping is terminated (default 30 000). */
  readonly heartbeatMs?: number;
  /**
   * Unsent bytes a socket may hold (default 1 MiB). Past it, frames wait in a backlog of the
   * same bound until the socket drains; a socket whose backlog passes it too is dropped as a
   * slow consumer. A socket thus costs at most about twice this.
   */
  readonly maxBufferedBytes?: number;
  /** Sockets per tenant on this instance (default 1000). */
  readonly maxSocketsPerTenant?: number;
  /**
   * Re-checks a connection's credential and tenant (on every heartbeat, and when the change
   * feed reconnected); resolves to a close code when it must go.
   */
  readonly recheck?: (connection: HubConnection) => Promise<number | undefined>;
  readonly logger?: Logger | undefined;
}

/** One authenticated socket, bound to its tenant for its whole life. */
export interface HubConnection {
  readonly socket: HubSocket;
  readonly tenantId: string;
  /** `api-key` or `user`, and the key id or user id. */
  readonly kind: 'api-key' | 'user';
  readonly subject: string;
  /** The credential it presented, to re-check it. */
  readonly credential: string;
  /** When the credential expires (ms since the epoch), if it says. */
  readonly expiresAt?: number | undefined;
  /** Only these event types (default: all). */
  readonly types?: ReadonlySet<string> | undefined;
}

interface Entry extends HubConnection {
  alive: boolean;
  expiry: NodeJS.Timeout | undefined;
  closing: boolean;
  /** Frames waiting for the socket's buffer to drain below the bound, and their bytes. */
  backlog: string[];
  backlogBytes: number;
  flush: NodeJS.Timeout | undefined;
}

/** A tenant's sockets here, and its one subscription to the stream. */
interface Group {
  readonly entries: Set<Entry>;
  /** Settles once the subscription is in place. */
  readonly ready: Promise<void>;
  off: (() => void) | undefined;
}

/** What {@link SocketHub.stats} reports. */
export interface HubStats {
  readonly sockets: number;
  readonly tenants: number;
  /** The most unsent bytes any socket held right after a send. */
  readonly maxBufferedAmount: number;
  /** The most bytes (UTF-16 units) of frames any socket had waiting for its buffer to drain. */
  readonly maxBacklog: number;
  /** Events sent, and sockets dropped as slow consumers or dead (no pong). */
  readonly sent: number;
  readonly slowConsumers: number;
  readonly dead: number;
}

/**
 * The JSON frame of one event, as `GET /v1/events` sends it.
 *
 * @example
 * ```ts
 * eventFrame(event); // '{"type":"event","event":{"id":"42","tenantId":"…","seq":7,"type":"item.created",…}}'
 * ```
 */
export function eventFrame(event: TenantEvent): string {
  return JSON.stringify({
    type: 'event',
    event: {
      id: event.id,
      tenantId: event.tenantId,
      seq: event.seq,
      type: event.type,
      payload: event.payload,
      createdAt: event.createdAt.toISOString(),
    },
  });
}

/**
 * The WebSocket connections of one instance, by tenant (`GET /v1/events`). A connection
 * is added once authenticated and stays bound to that tenant; the tenant's committed
 * events, read by a {@link TenantEventStream}, go to its sockets and to no other (the
 * tenant id is checked again on each event before it is sent). Each event is serialized
 * once for all the tenant's sockets.
 *
 * Bounded by construction: once a socket's unsent bytes (`bufferedAmount`) pass
 * `maxBufferedBytes`, its next frames wait in a backlog until it drains; when the backlog
 * passes the same bound the socket is closed (4413) and sent nothing more, rather than
 * buffered without bound; sockets that miss a heartbeat pong are terminated; a tenant has at most
 * `maxSocketsPerTenant` sockets here. {@link closeKey} and {@link closeTenant} cut a
 * revoked key's or a suspended tenant's sockets (the server calls them from the change feed).
 *
 * @example
 * ```ts
 * const hub = new SocketHub(stream, { heartbeatMs: 30_000 });
 * await hub.add({ socket, tenantId, kind: 'api-key', subject: keyId, credential });
 * ```
 */
export class SocketHub {
  readonly #stream: TenantEventStream;
  readonly #heartbeatMs: number;
  readonly #maxBuffered: number;
  readonly #maxPerTenant: number;
  #recheck: SocketHubOptions['recheck'];
  readonly #logger: Logger | undefined;
  readonly #tenants = new Map<string, Group>();
  readonly #timer: NodeJS.Timeout;
  #maxBufferedSeen = 0;
  #maxBacklogSeen = 0;
  #sent = 0;
  #slow = 0;
  #dead = 0;
  #closed = false;

  constructor(stream: TenantEventStream, options: SocketHubOptions = {}) {
    this.#stream = stream;
    this.#heartbeatMs = options.heartbeatMs ?? 30_000;
    this.#maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
    this.#maxPerTenant = options.maxSocketsPerTenant ?? 1000;
    this.#recheck = options.recheck;
    this.#logger = options.logger;
    this.#timer = setInterval(() => this.#heartbeat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  /**
   * Binds an authenticated socket to its tenant; from the moment this resolves it receives
   * the tenant's events committed after. Resolves to false (and closes the socket, 4429)
   * when the tenant has `maxSocketsPerTenant` sockets here already.
   *
   * @example
   * ```ts
   * if (await hub.add({ socket, tenantId, kind: 'api-key', subject: keyId, credential })) socket.send('{"type":"ready"}');
   * ```
   */
  async add(connection: HubConnection): Promise<boolean> {
    const { socket, tenantId } = connection;
    if (this.#closed) {
      socket.close(CLOSE.goingAway, 'server closing');
      return false;
    }
    let group = this.#tenants.get(tenantId);
    if ((group?.entries.size ?? 0) >= this.#maxPerTenant) {
      socket.send(JSON.stringify({ type: 'error', code: 'SOCKET_LIMIT', detail: 'too many sockets for this tenant' }));
      socket.close(CLOSE.tooManySockets, 'SOCKET_LIMIT');
      return false;
    }
    if (!group) group = this.#subscribe(tenantId);
    const entry: Entry = {
      ...connection,
      alive: true,
      expiry: undefined,
      closing: false,
      backlog: [],
      backlogBytes: 0,
      flush: undefined,
    };
    group.entries.add(entry);
    socket.on('pong', () => {
      entry.alive = true;
    });
    socket.on('close', () => this.#remove(entry));
    if (connection.expiresAt !== undefined) {
      const ms = Math.max(0, connection.expiresAt - Date.now());
      // setTimeout holds at most ~24.8 days; the heartbeat's re-check covers anything longer.
      if (ms < 2 ** 31 - 1) {
        entry.expiry = setTimeout(() => this.#drop(entry, CLOSE.unauthorized, 'credential expired'), ms);
        entry.expiry.unref();
      }
    }
    try {
      await group.ready;
    } catch (error) {
      this.#remove(entry);
      throw error;
    }
    if (entry.closing || socket.readyState !== OPEN) {
      this.#remove(entry);
      return false;
    }
    return true;
  }

  /** The tenant's group, subscribed once to the stream: each event is serialized once for all its sockets. */
  #subscribe(tenantId: string): Group {
    const entries = new Set<Entry>();
    const group: Group = {
      entries,
      off: undefined,
      ready: this.#stream
        .subscribe(tenantId, (events) => {
          for (const event of events) {
            // Filtered on receipt too: a socket only ever gets events of the tenant it is bound to.
            if (event.tenantId !== tenantId) continue;
            const frame = eventFrame(event);
            for (const entry of entries) this.#send(entry, event, frame);
          }
        })
        .then(
          (off) => {
            if (this.#tenants.get(tenantId) === group) group.off = off;
            else off();
          },
          (error: Error) => {
            if (this.#tenants.get(tenantId) === group) this.#tenants.delete(tenantId);
            throw error;
          },
        ),
    };
    group.ready.catch(() => {});
    this.#tenants.set(tenantId, group);
    return group;
  }

  #send(entry: Entry, event: TenantEvent, frame: string): void {
    if (entry.closing || entry.socket.readyState !== OPEN) return;
    if (event.tenantId !== entry.tenantId) return;
    if (entry.types && !entry.types.has(event.type)) return;
    if (entry.backlog.length > 0 || entry.socket.bufferedAmount > this.#maxBuffered) {
      // A burst meets a full buffer: wait for it to drain, up to a backlog of the same bound.
      entry.backlog.push(frame);
      entry.backlogBytes += frame.length;
      if (entry.backlogBytes > this.#maxBacklogSeen) this.#maxBacklogSeen = entry.backlogBytes;
      if (entry.backlogBytes > this.#maxBuffered) this.#slowConsumer(entry);
      else this.#scheduleFlush(entry);
      return;
    }
    this.#write(entry, frame);
  }

  #write(entry: Entry, frame: string): void {
    entry.socket.send(frame);
    this.#sent++;
    const buffered = entry.socket.bufferedAmount;
    if (buffered > this.#maxBufferedSeen) this.#maxBufferedSeen = buffered;
  }

  #scheduleFlush(entry: Entry): void {
    if (entry.flush) return;
    entry.flush = setTimeout(() => {
      entry.flush = undefined;
      if (entry.closing || entry.socket.readyState !== OPEN) return;
      while (entry.backlog.length > 0 && entry.socket.bufferedAmount <= this.#maxBuffered) {
        const frame = entry.backlog.shift() as string;
        entry.backlogBytes -= frame.length;
        this.#write(entry, frame);
      }
      if (entry.backlog.length > 0) this.#scheduleFlush(entry);
    }, FLUSH_MS);
  }

  #slowConsumer(entry: Entry): void {
    this.#slow++;
    this.#logger?.warn({ tenantId: entry.tenantId }, 'events socket dropped: slow consumer');
    this.#drop(entry, CLOSE.slowConsumer, 'slow consumer');
  }

  /** Closes with `code` and sends nothing more; terminates it if the close does not go through in a second. */
  #drop(entry: Entry, code: number, reason: string): void {
    if (entry.closing) return;
    entry.closing = true;
    try {
      entry.socket.close(code, reason);
    } catch {
      // already closed
    }
    // A close frame queues behind the unsent bytes: a consumer that reads nothing never sees it.
    setTimeout(() => entry.socket.terminate(), 1000).unref();
    this.#remove(entry);
  }

  #remove(entry: Entry): void {
    entry.closing = true;
    clearTimeout(entry.expiry);
    clearTimeout(entry.flush);
    entry.backlog = [];
    entry.backlogBytes = 0;
    const group = this.#tenants.get(entry.tenantId);
    if (group?.entries.delete(entry) && group.entries.size === 0) {
      this.#tenants.delete(entry.tenantId);
      group.off?.();
    }
  }

  #heartbeat(): void {
    for (const group of [...this.#tenants.values()]) {
      for (const entry of [...group.entries]) {
        if (!entry.alive) {
          this.#dead++;
          this.#remove(entry);
          entry.socket.terminate();
          continue;
        }
        entry.alive = false;
        try {
          entry.socket.ping();
        } catch {
          // a socket closing right now
        }
      }
    }
    void this.recheck();
  }

  /** Sets the check {@link recheck} runs (the server's, which knows credentials and tenants): `hub.setRecheck(async (c) => undefined)`. */
  setRecheck(check: NonNullable<SocketHubOptions['recheck']>): void {
    this.#recheck = check;
  }

  /**
   * Re-checks every connection (see `recheck` in the options) and closes those that must go:
   * expired or revoked credentials, tenants no longer active.
   */
  async recheck(): Promise<void> {
    const check = this.#recheck;
    if (check) await this.recheckWhere(() => true, check);
  }

  /** Re-checks the connections that `match`, with `check`; closes those it gives a close code. */
  async recheckWhere(
    match: (connection: HubConnection) => boolean,
    check: (connection: HubConnection) => Promise<number | undefined>,
  ): Promise<void> {
    const entries = [...this.#tenants.values()].flatMap((group) => [...group.entries]).filter(match);
    await Promise.all(
      entries.map(async (entry) => {
        const code = await check(entry).catch(() => undefined);
        if (code !== undefined && !entry.closing) this.#drop(entry, code, 'credential or tenant no longer valid');
      }),
    );
  }

  /** Closes the sockets of API key `keyId` (revoked), with 4401; returns how many. */
  closeKey(keyId: string): number {
    return this.#closeWhere((e) => e.kind === 'api-key' && e.subject === keyId, CLOSE.unauthorized, 'key revoked');
  }

  /** Closes the sockets of user `userId` in `tenantId` (its membership changed), with 4401. */
  closeUser(tenantId: string, userId: string): number {
    return this.#closeWhere(
      (e) => e.tenantId === tenantId && e.kind === 'user' && e.subject === userId,
      CLOSE.unauthorized,
      'membership changed',
    );
  }

  /** Closes every socket of `tenantId` (suspended, offboarding, deleted), with `code` (default 4410). */
  closeTenant(tenantId: string, code: number = CLOSE.tenantNotActive, reason = 'tenant not active'): number {
    if (!this.#tenants.has(tenantId)) return 0;
    return this.#closeWhere((e) => e.tenantId === tenantId, code, reason);
  }

  #closeWhere(match: (entry: Entry) => boolean, code: number, reason: string): number {
    let n = 0;
    for (const group of [...this.#tenants.values()]) {
      for (const entry of [...group.entries]) {
        if (!match(entry)) continue;
        this.#drop(entry, code, reason);
        n++;
      }
    }
    return n;
  }

  /** The tenants with sockets here. */
  tenantIds(): string[] {
    return [...this.#tenants.keys()];
  }

  /** Counts, for metrics and tests. */
  stats(): HubStats {
    let sockets = 0;
    for (const group of this.#tenants.values()) sockets += group.entries.size;
    return {
      sockets,
      tenants: this.#tenants.size,
      maxBufferedAmount: this.#maxBufferedSeen,
      maxBacklog: this.#maxBacklogSeen,
      sent: this.#sent,
      slowConsumers: this.#slow,
      dead: this.#dead,
    };
  }

  /** Closes every socket with 1001 and stops the heartbeat. Idempotent. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#closeWhere(() => true, CLOSE.goingAway, 'server closing');
  }
}
