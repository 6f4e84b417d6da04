import type pg from 'pg';
import type { Logger } from '../config.ts';

interface Usage {
  first: number;
  last: number;
  uses: number;
}

/**
 * The usage flush: `last_used_at` of every key used since the last flush and one
 * `api_key.used` audit row per key, in one statement (one round trip, one transaction).
 * It does not go through `writeAudit()`, which writes one row per call; the columns are
 * the same. Keys deleted meanwhile simply match nothing. Rows go in tenant order: each
 * locks its tenant's audit chain head, and two instances flushing at once must take those
 * locks in the same order.
 */
const FLUSH_SQL = `WITH used AS (
  SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::integer[]) AS u(id, first_at, last_at, uses)
), touched AS (
  UPDATE tenantry.api_keys k SET last_used_at = greatest(k.last_used_at, used.last_at)
    FROM used WHERE k.id = used.id
  RETURNING k.id, k.tenant_id
)
INSERT INTO tenantry.audit_log (actor, tenant_id, action, details)
SELECT 'api-key:' || t.id, t.tenant_id, 'api_key.used',
       jsonb_build_object('keyId', t.id, 'uses', u.uses, 'firstUsedAt', u.first_at, 'lastUsedAt', u.last_at)
  FROM touched t JOIN used u ON u.id = t.id
 ORDER BY t.tenant_id, t.id`;

/**
 * API key usage, gathered in memory and written in batches: per key, `last_used_at` and
 * one `api_key.used` audit row with a use count, once per `flushMs` rather than once per
 * request.
 */
export class ApiKeyUsage {
  readonly #pool: pg.Pool;
  readonly #flushMs: number;
  readonly #logger: Logger | undefined;
  #usage = new Map<string, Usage>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(pool: pg.Pool, options: { flushMs: number; logger?: Logger | undefined }) {
    this.#pool = pool;
    this.#flushMs = options.flushMs;
    this.#logger = options.logger;
  }

  /** Counts one use of `keyId` at `at` (ms since the epoch). */
  record(keyId: string, at: number): void {
    // After stop() nothing would ever write it.
    if (this.#stopped) return;
    const usage = this.#usage.get(keyId);
    if (usage) {
      usage.uses++;
      if (at > usage.last) usage.last = at;
    } else {
      this.#usage.set(keyId, { first: at, last: at, uses: 1 });
    }
    this.#arm();
  }

  /** The flush timer runs only while there is usage to write, so an idle store costs nothing. */
  #arm(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush().catch((error: unknown) =>
        this.#logger?.warn({ err: (error as Error).message }, 'API key usage flush failed; will retry'),
      );
    }, this.#flushMs);
    this.#timer.unref();
  }

  /** See {@link ApiKeyStore.flush}. Flushes run one after another; a failed one keeps its usage. */
  flush(): Promise<void> {
    const run = this.#flushing.then(() => this.#flushOnce());
    this.#flushing = run.catch(() => {});
    return run;
  }

  async #flushOnce(): Promise<void> {
    if (this.#usage.size === 0) return;
    const batch = this.#usage;
    this.#usage = new Map();
    // Sorted ids: two instances flushing the same keys lock their rows in the same order.
    const ids = [...batch.keys()].sort();
    const get = (id: string) => batch.get(id) as Usage;
    try {
      await this.#pool.query(FLUSH_SQL, [
        ids,
        ids.map((id) => new Date(get(id).first)),
        ids.map((id) => new Date(get(id).last)),
        ids.map((id) => get(id).uses),
      ]);
    } catch (error) {
      for (const [id, usage] of batch) {
        const later = this.#usage.get(id);
        this.#usage.set(
          id,
          later
            ? {
                first: Math.min(usage.first, later.first),
                last: Math.max(usage.last, later.last),
                uses: usage.uses + later.uses,
              }
            : usage,
        );
      }
      this.#arm();
      throw error;
    }
  }

  /** Stops recording and the timer; what was recorded stays for a last {@link flush}. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
