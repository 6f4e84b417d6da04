import pg from 'pg';
import type { Logger } from '../config.ts';
import { TenantryError } from '../errors/catalog.ts';

/** Channels Tenantry notifies on when control-plane state changes. */
export const CHANNELS = {
  tenants: 'tenantry_tenants',
} as const;

/** Tells every instance's caches, once the surrounding transaction commits, that `tenantId` changed. */
export async function notifyTenantChanged(client: Pick<pg.ClientBase, 'query'>, tenantId: string): Promise<void> {
  await client.query('SELECT pg_notify($1, $2)', [CHANNELS.tenants, tenantId]);
}

/** Receives a notification's payload; `undefined` means "anything may have changed". */
export type ChangeHandler = (payload: string | undefined) => void;

/** Options of {@link ChangeFeed}. */
export interface ChangeFeedOptions {
  /** Where a lost connection is reported. */
  readonly logger?: Logger;
}

/**
 * A channel name `LISTEN` takes as it is. Quoting would not help: `pg_notify('Foo')` and
 * `LISTEN "Foo"` meet, but `LISTEN Foo` listens on `foo`. Lower-case names avoid the trap.
 */
const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** How long to wait before reconnecting a lost connection, in ms; then again after each failure. */
const RECONNECT_MS = [500, 1000] as const;

/**
 * One dedicated `LISTEN` connection (not one of a pool's) that delivers PostgreSQL
 * notifications to callbacks, so caches on every instance drop stale entries right after a
 * change commits. It is the only listener Tenantry opens: the tenant cache and the API key
 * verifier share one per server.
 *
 * Notifications sent while no connection listens are lost, so every handler is called with
 * `undefined` ("anything may have changed") when the connection drops and again once
 * `LISTEN` has taken effect (at start and after each reconnect): entries cached in between
 * may have missed a change. It reconnects by itself until {@link close}.
 *
 * @example
 * ```ts
 * const feed = new ChangeFeed(process.env.DATABASE_URL, { logger });
 * feed.on(CHANNELS.tenants, (id) => (id ? cache.invalidate(id) : cache.clear()));
 * await feed.start();
 * // …
 * await feed.close();
 * ```
 */
export class ChangeFeed {
  readonly #connection: pg.ClientConfig;
  readonly #logger: Logger | undefined;
  readonly #handlers = new Map<string, Set<ChangeHandler>>();
  #client: pg.Client | undefined;
  /** Channels `LISTEN`ed on {@link #client}. */
  #listening = new Set<string>();
  /** Every start runs after the previous one: two callers never open two connections. */
  #starting: Promise<void> = Promise.resolve();
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  /** @param connection - a connection URL, or pg client settings (e.g. a pool's `options`). */
  constructor(connection: string | pg.ClientConfig, options: ChangeFeedOptions = {}) {
    this.#connection = typeof connection === 'string' ? { connectionString: connection } : connection;
    this.#logger = options.logger;
  }

  /**
   * Calls `handler(payload)` for every notification on `channel` (a lower-case name);
   * `undefined` means "anything may have changed". A channel added after {@link start}
   * is listened on at the next `start()`. Returns a function that removes the handler.
   *
   * @example
   * ```ts
   * const off = feed.on('tenantry_api_keys', (id) => (id ? verifier.evict(id) : verifier.clear()));
   * ```
   */
  on(channel: string, handler: ChangeHandler): () => void {
    if (!CHANNEL_NAME.test(channel)) {
      throw new TenantryError(
        'CONFIG_INVALID',
        `channel must be a lower-case identifier, got ${JSON.stringify(channel)}`,
      );
    }
    let set = this.#handlers.get(channel);
    if (!set) {
      set = new Set();
      this.#handlers.set(channel, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  /**
   * Connects (unless connected) and listens on every channel registered so far. Rejects
   * when that fails; then nothing retries until `start()` is called again. Idempotent.
   *
   * @example
   * ```ts
   * await feed.start();
   * ```
   */
  start(): Promise<void> {
    const run = this.#starting.then(() => this.#listen());
    this.#starting = run.catch(() => {});
    return run;
  }

  async #listen(): Promise<void> {
    if (this.#closed) return;
    const client = this.#client;
    if (client) {
      for (const channel of this.#handlers.keys()) {
        if (this.#listening.has(channel)) continue;
        await client.query(`LISTEN ${channel}`);
        this.#listening.add(channel);
        this.#deliver(channel, undefined);
      }
      return;
    }
    await this.#open();
  }

  async #open(): Promise<void> {
    const client = new pg.Client(this.#connection);
    client.on('notification', (message) => this.#deliver(message.channel, message.payload));
    // Without an 'error' listener a dropped connection would crash the process.
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client));
    const channels = [...this.#handlers.keys()];
    try {
      await client.connect();
      for (const channel of channels) await client.query(`LISTEN ${channel}`);
    } catch (error) {
      client.end().catch(() => {});
      throw error;
    }
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#listening = new Set(channels);
    // Whatever was cached before LISTEN took effect may have missed a change.
    for (const channel of channels) this.#deliver(channel, undefined);
  }

  #deliver(channel: string, payload: string | undefined): void {
    for (const handler of this.#handlers.get(channel) ?? []) {
      try {
        handler(payload);
      } catch (error) {
        this.#logger?.error({ err: (error as Error).message, channel }, 'change feed handler failed');
      }
    }
  }

  #lost(client: pg.Client, error?: Error): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#listening = new Set();
    for (const channel of this.#handlers.keys()) this.#deliver(channel, undefined);
    if (this.#closed) return;
    this.#logger?.warn({ err: error?.message }, 'change feed connection lost; reconnecting');
    client.end().catch(() => {});
    this.#reconnect(RECONNECT_MS[0]);
  }

  #reconnect(delayMs: number): void {
    if (this.#closed || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.start().catch(() => this.#reconnect(RECONNECT_MS[1]));
    }, delayMs);
    this.#retry.unref();
  }

  /**
   * Stops listening and reconnecting; handlers are not called again. Idempotent.
   *
   * @example
   * ```ts
   * app.addHook('onClose', () => feed.close());
   * ```
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.#starting;
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}
