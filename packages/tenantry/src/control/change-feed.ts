import pg from 'pg';

/** Channels Tenantry notifies on when control-plane state changes. */
export const CHANNELS = {
  tenants: 'tenantry_tenants',
} as const;

/** Tells every instance's caches, once the surrounding transaction commits, that `tenantId` changed. */
export async function notifyTenantChanged(client: Pick<pg.ClientBase, 'query'>, tenantId: string): Promise<void> {
  await client.query('SELECT pg_notify($1, $2)', [CHANNELS.tenants, tenantId]);
}

/**
 * One dedicated `LISTEN` connection that delivers PostgreSQL notifications to callbacks,
 * so caches on every instance drop stale entries right after a change commits. It
 * reconnects after a lost connection (and then tells every listener to drop everything,
 * since notifications sent meanwhile were missed).
 */
export class ChangeFeed {
  readonly #url: string;
  readonly #handlers = new Map<string, Set<(payload: string | undefined) => void>>();
  #client: pg.Client | undefined;
  #closed = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(databaseUrl: string) {
    this.#url = databaseUrl;
  }

  /** Calls `handler(payload)` for every notification on `channel`; `undefined` means "everything changed". */
  on(channel: string, handler: (payload: string | undefined) => void): void {
    let set = this.#handlers.get(channel);
    if (!set) {
      set = new Set();
      this.#handlers.set(channel, set);
    }
    set.add(handler);
  }

  /** Connects and listens on every channel registered so far. */
  async start(): Promise<void> {
    if (this.#closed || this.#client) return;
    const client = new pg.Client({ connectionString: this.#url });
    client.on('notification', (n) => {
      for (const handler of this.#handlers.get(n.channel) ?? []) handler(n.payload);
    });
    client.on('error', () => this.#reconnect(client));
    client.on('end', () => this.#reconnect(client));
    await client.connect();
    for (const channel of this.#handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    this.#client = client;
  }

  #reconnect(client: pg.Client): void {
    if (this.#client !== client || this.#closed) return;
    this.#client = undefined;
    for (const set of this.#handlers.values()) for (const handler of set) handler(undefined);
    this.#retry = setTimeout(() => {
      this.start().catch(() => this.#reconnectLater());
    }, 500);
    this.#retry.unref();
  }

  #reconnectLater(): void {
    if (this.#closed) return;
    this.#retry = setTimeout(() => {
      this.start().catch(() => this.#reconnectLater());
    }, 1000);
    this.#retry.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}
