import type { Logger } from '../config.ts';

/** An invalidation that could not reach the backend, and what it covers. */
interface Pending {
  readonly tenantId: string;
  /** The entry name, the tag, or undefined for the whole tenant. */
  readonly name?: string | undefined;
  readonly tag?: string | undefined;
  readonly run: () => Promise<void>;
}

/** Most invalidations kept for retry; past it the oldest are dropped (and logged): their TTL still bounds them. */
const MAX_PENDING = 10_000;
const RETRY_MS = 1000;

/**
 * Invalidations that failed (Redis unreachable) and are retried every second until they
 * succeed. Until then, this process does not read what they cover: the writer's next read
 * is never the value it just replaced. Other processes may still read it until the retry
 * lands or its TTL ends (see `docs/cache.md`).
 */
export class PendingInvalidations {
  readonly #pending = new Map<string, Pending>();
  readonly #logger: Logger | undefined;
  readonly #onError: (error: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(onError: (error: unknown) => void, logger?: Logger) {
    this.#onError = onError;
    this.#logger = logger;
  }

  get size(): number {
    return this.#pending.size;
  }

  add(key: string, pending: Pending): void {
    this.#pending.delete(key);
    this.#pending.set(key, pending);
    if (this.#pending.size > MAX_PENDING) {
      const oldest = this.#pending.keys().next().value as string;
      this.#pending.delete(oldest);
      this.#logger?.warn({ dropped: 1 }, 'cache invalidation dropped: too many pending; the entry lives until its TTL');
    }
    this.#schedule();
  }

  /** Whether a pending invalidation covers the entry `name` of `tenantId` with `tags`. */
  covers(tenantId: string, name: string, tags: readonly string[]): boolean {
    if (this.#pending.size === 0) return false;
    for (const p of this.#pending.values()) {
      if (p.tenantId !== tenantId) continue;
      if (p.name === undefined && p.tag === undefined) return true;
      if (p.name === name || (p.tag !== undefined && tags.includes(p.tag))) return true;
    }
    return false;
  }

  /** Retries every pending invalidation once, oldest first; stops at the first failure. */
  async retry(): Promise<void> {
    for (const [key, pending] of [...this.#pending]) {
      try {
        await pending.run();
      } catch (error) {
        this.#onError(error);
        return;
      }
      if (this.#pending.get(key) === pending) this.#pending.delete(key);
    }
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(async () => {
      await this.retry();
      this.#timer = undefined;
      if (this.#pending.size > 0) this.#schedule();
    }, RETRY_MS);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
