import pg from 'pg';
import type { ResolvedConfig } from '../config.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { KeyRing } from '../secrets/keys.ts';

/**
 * The runtime role's URL: `runtimeUrl` when set, else `databaseUrl` logged in as the
 * runtime role with the password derived from the master secret (what `setup()` gave it).
 */
export function runtimeUrlOf(config: ResolvedConfig, keys: KeyRing): string {
  if (config.runtimeUrl) return config.runtimeUrl;
  let url: URL;
  try {
    url = new URL(config.databaseUrl);
  } catch {
    throw new TenantryError('CONFIG_INVALID', 'databaseUrl is not a URL; pass runtimeUrl explicitly');
  }
  url.username = config.roles.runtime;
  url.password = keys.runtimePassword(config.roles.runtime);
  return url.toString();
}

function hardened(pool: pg.Pool, config: ResolvedConfig): pg.Pool {
  // An idle client losing its server must not crash the process; the pool drops it.
  pool.on('error', (error) => config.logger?.warn({ err: error.message }, 'idle PostgreSQL connection failed'));
  // A checked-out client has no listener of the pool's: a server crash mid-transaction
  // would be an uncaught 'error' and end the process. The statement in flight fails on
  // its own, and the pool discards a failed client when it is released.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** The pool on `databaseUrl` (owner/admin): control plane and migrations, never tenant work. */
export function createAdminPool(config: ResolvedConfig): pg.Pool {
  return hardened(
    new pg.Pool({
      connectionString: config.databaseUrl,
      max: config.adminPoolMax,
      idleTimeoutMillis: 10_000,
      // Without it a connect to an unreachable host (or a wait for a pool slot) never ends:
      // requests would hang instead of answering DATABASE_UNAVAILABLE.
      connectionTimeoutMillis: 5_000,
    }),
    config,
  );
}

/** How long a tenant transaction waits for a runtime connection before `DATABASE_UNAVAILABLE`. */
export const RUNTIME_ACQUIRE_TIMEOUT_MS = 5_000;

/**
 * The pool on the runtime role: tenant work in the main database. Tenant transactions take
 * its connections through the `AffineLender` (tenant affinity, per-tenant cap).
 */
export function createRuntimePool(config: ResolvedConfig, keys: KeyRing): pg.Pool {
  return hardened(
    new pg.Pool({
      connectionString: runtimeUrlOf(config, keys),
      max: config.pool.max,
      idleTimeoutMillis: config.pool.idleTimeoutMs,
      maxUses: config.pool.maxUses,
      connectionTimeoutMillis: RUNTIME_ACQUIRE_TIMEOUT_MS, // see createAdminPool
    }),
    config,
  );
}
