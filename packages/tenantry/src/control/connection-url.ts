import { createHash } from 'node:crypto';
import type pg from 'pg';
import { TenantryError } from '../errors/catalog.ts';

/** Credentials of a role, for a connection built from another URL. */
export interface RoleCredentials {
  readonly user: string;
  readonly password: string;
}

/**
 * `url` pointed at `database` (when given) and logged in as `as` (when given). Placement
 * URLs name a server and an admin login; Tenantry derives from them the admin connection
 * to each tenant database and the runtime role's connection.
 */
export function connectionConfig(url: string, database?: string, as?: RoleCredentials): pg.ClientConfig {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Never echo the URL: it may hold a password.
    throw new TenantryError('CONFIG_INVALID', 'a placement or database URL is not a valid URL');
  }
  if (database) parsed.pathname = `/${encodeURIComponent(database)}`;
  if (as) {
    parsed.username = encodeURIComponent(as.user);
    parsed.password = encodeURIComponent(as.password);
  }
  return { connectionString: parsed.toString() };
}

/** The database a URL names (its path), or `undefined` when it names none. */
export function databaseOf(url: string): string | undefined {
  try {
    const name = decodeURIComponent(new URL(url).pathname.slice(1));
    return name === '' ? undefined : name;
  } catch {
    return undefined;
  }
}

/**
 * Tenant and template databases are named `<prefix>_t_<random>` and `<prefix>_tpl_<random>`,
 * the prefix being the main database's name, so installations sharing a server never
 * collide. Past 40 characters (PostgreSQL allows 63) it keeps the name's start and end
 * around a hash of the whole: names that differ only in the middle stay apart, and a
 * trailing timestamp or random suffix stays readable.
 */
export function tenantDatabasePrefix(mainDatabase: string): string {
  const clean = mainDatabase.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (clean.length <= 40) return clean;
  const hash = createHash('sha256').update(mainDatabase).digest('hex').slice(0, 8);
  return `${clean.slice(0, 14)}_${hash}_${clean.slice(-16)}`.replace(/__+/g, '_');
}
