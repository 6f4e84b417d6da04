import type { Pool } from 'pg';
import type { Logger } from '../config.ts';
import { TenantryError } from '../errors/catalog.ts';
import { quoteLiteral } from '../sql.ts';

/** Options of {@link ChangeNotifier}. */
export interface ChangeNotifierOptions {
  /** Where a failed send is reported (the change committed; caches fall back to their TTL). */
  readonly logger?: Logger | undefined;
}

const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Most notifications one send carries: a bound on the statement's size. */
const MAX_BATCH = 1000;

/**
 * Sends change notifications *after* the change committed, many in one small transaction
 * of its own, instead of one `NOTIFY` inside each changing transaction.
 *
 * Why: a transaction that notifies takes a cluster-wide lock in its commit and holds it
 * until its commit record is flushed, so committing transactions that notify go one at a
 * time, each waiting for its own WAL flush. Tenant creation is the one frequent change of
 * the control plane; with a notification inside it, creates could not commit faster than
 * the disk flushes. Here they commit without it, and the notifications of every create
 * that committed meanwhile go out together, in a transaction that writes nothing and does
 * not wait for a flush (`synchronous_commit = off`): one holder of the lock per batch,
 * briefly. Listeners on other instances (`ChangeFeed`) get the same channels and payloads
 * as before, milliseconds later.
 *
 * The cost: a notification is no longer atomic with the change. If the process dies
 * between the commit and the send, other instances learn of the change only when their
 * cache entries expire (the tenant cache's misses live 1 s). That is right for a tenant
 * being created (nothing can have cached it but a miss); changes that must reach every
 * cache at once (suspension, deletion, moves) keep notifying inside their transaction.
 *
 * @example
 * ```ts
 * const notifier = new ChangeNotifier(tenantry.adminPool, { logger });
 * await inTransaction(pool, (client) => createSomething(client, id));
 * await notifier.notify(CHANNELS.tenants, id); // resolves once sent (never rejects)
 * await notifier.close();
 * ```
 */
export class ChangeNotifier {
  readonly #pool: Pool;
  readonly #logger: Logger | undefined;
  /** `channel\0payload` → callers waiting for that notification to be sent. */
  #pending = new Map<string, (() => void)[]>();
  #sending: Promise<void> | undefined;
  #closed = false;

  constructor(pool: Pool, options: ChangeNotifierOptions = {}) {
    this.#pool = pool;
    this.#logger = options.logger;
  }

  /**
   * Sends `payload` on `channel` (a lower-case name) with whatever else is waiting;
   * resolves once it was sent, or once sending failed (logged: the change itself committed).
   * Identical notifications waiting together are sent once.
   *
   * @example
   * ```ts
   * await notifier.notify('tenantry_tenants', tenant.id);
   * ```
   */
  notify(channel: string, payload: string): Promise<void> {
    if (!CHANNEL_NAME.test(channel)) {
      throw new TenantryError('USAGE_ERROR', `channel must be a lower-case identifier, got ${JSON.stringify(channel)}`);
    }
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const key = `${channel}\0${payload}`;
      const waiting = this.#pending.get(key);
      if (waiting) waiting.push(resolve);
      else this.#pending.set(key, [resolve]);
      // Started a microtask later: notifications a caller sends together (a create's two)
      // go in the first batch.
      this.#sending ??= Promise.resolve().then(() => this.#drain());
    });
  }

  /** Sends batches until nothing waits: what arrives during a send goes in the next one. */
  async #drain(): Promise<void> {
    try {
      while (this.#pending.size > 0) {
        const batch = [...this.#pending].slice(0, MAX_BATCH);
        for (const [key] of batch) this.#pending.delete(key);
        try {
          await this.#send(batch.map(([key]) => key.split('\0') as [string, string]));
        } catch (error) {
          this.#logger?.warn(
            { err: (error as Error).message, notifications: batch.length },
            'change notifications not sent; other instances will see the changes when their caches expire',
          );
        }
        for (const [, waiting] of batch) for (const resolve of waiting) resolve();
      }
    } finally {
      this.#sending = undefined;
    }
  }

  async #send(notifications: readonly [string, string][]): Promise<void> {
    const channels = notifications.map(([c]) => quoteLiteral(c)).join(', ');
    const payloads = notifications.map(([, p]) => quoteLiteral(p)).join(', ');
    // One round trip, one implicit transaction (a simple-query batch: an error rolls it
    // back and leaves the pooled connection clean); its commit need not wait for a flush.
    await this.#pool.query(
      `SET LOCAL synchronous_commit = off;
       SELECT pg_catalog.pg_notify(c, p) FROM unnest(ARRAY[${channels}]::text[], ARRAY[${payloads}]::text[]) AS n(c, p)`,
    );
  }

  /**
   * Sends what is waiting, then ignores further notifications. Idempotent.
   *
   * @example
   * ```ts
   * await notifier.close(); // before the pool ends
   * ```
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#sending;
  }
}
