import type { Pool } from 'pg';
import { getTenant } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';

/** Options of {@link TenantLocks.withLock}. */
export interface LockOptions {
  /** Wait for the lock (default) or throw `LOCK_BUSY` at once when it is held. */
  readonly wait?: boolean;
  /** With `wait`, give up with `LOCK_BUSY` after this many ms (default: wait as long as it takes). */
  readonly timeoutMs?: number;
}

const NAME = /^[\w.:/-]{1,200}$/;

/**
 * Per-tenant distributed locks: PostgreSQL advisory locks keyed by a hash of the current
 * tenant's id and the lock's name, so a name means a different lock in every tenant and
 * tenant code cannot take (or wait for) another tenant's lock. Every process on the same
 * database shares them; a lock dies with its session, so a crashed holder frees it.
 * The hash is 64 bits: two different (tenant, name) pairs sharing a lock is possible in
 * principle (about one chance in 10^10 among a million live locks) and only ever makes
 * one wait for the other, never run concurrently with itself.
 *
 * @example
 * ```ts
 * await withTenant(acme, () =>
 *   tenantry.locks.withLock('invoice-run', async () => {
 *     await buildInvoices();
 *   }));
 * ```
 */
export class TenantLocks {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  /**
   * Runs `fn` holding the current tenant's lock `name` (letters, digits and `_.:/-`),
   * and releases it when `fn` settles. `NO_TENANT_CONTEXT` outside a tenant context.
   * The lock holds one connection of the admin pool while `fn` runs.
   */
  async withLock<T>(name: string, fn: () => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    const tenant = getTenant();
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new TenantryError('USAGE_ERROR', 'a lock name is 1–200 letters, digits or _.:/-');
    }
    const key = `tenantry-lock:${tenant.id}:${name}`;
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      if (options.wait === false) {
        const { rows } = await client.query<{ ok: boolean }>(
          'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok',
          [key],
        );
        if (!rows[0]?.ok) throw new TenantryError('LOCK_BUSY', name);
      } else if (options.timeoutMs !== undefined) {
        await client.query(`SELECT set_config('lock_timeout', $1, false)`, [
          `${Math.max(1, Math.trunc(options.timeoutMs))}ms`,
        ]);
        try {
          await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [key]);
        } catch (error) {
          if ((error as { code?: string }).code === '55P03') throw new TenantryError('LOCK_BUSY', name);
          throw error;
        } finally {
          await client.query('RESET lock_timeout');
        }
      } else {
        await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [key]);
      }
      try {
        return await fn();
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]).catch((error: Error) => {
          broken = error; // a session that cannot unlock is not reused: closing it frees the lock
        });
      }
    } finally {
      client.release(broken);
    }
  }
}
