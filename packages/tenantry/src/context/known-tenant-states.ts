import type { ClientBase } from 'pg';

/**
 * What `enter()` answered about a tenant in one database: the tenant state version its row
 * was read at, and what the common call needs of the row. Sent back with the next entry, it
 * spares PostgreSQL the row read while no tenant's state there has changed since.
 */
export interface KnownTenantState {
  /** The database's tenant state version (an int8, as text) the row was read at. */
  readonly version: string;
  readonly statementTimeoutMs: number;
  /** Schema of a schema-tier tenant; `null` for the shared tables. */
  readonly place: string | null;
  /** When it was learnt (`performance.now()`), for {@link KNOWN_STATE_MAX_AGE_MS}. */
  readonly learntAt: number;
}

/**
 * How long a copy is sent back at most, whatever the version says: a database restored to an
 * earlier point could reach a version again with other rows behind it. After that, one entry
 * per tenant reads the row again.
 */
export const KNOWN_STATE_MAX_AGE_MS = 60_000;

/** Copies kept per database at most; past that, the database's copies are dropped at once. */
const MAX_PER_DATABASE = 100_000;

const VERSION = /^-?\d{1,19}$/;

/**
 * The tenant rows' copies one process keeps, per database (the tenant state version is per
 * database). Only an active tenant whose rows are in that database and that is not frozen is
 * ever kept; `enter()` checks the version before it uses a copy, so a stale copy costs one
 * row read, never a wrong answer.
 *
 * @example
 * ```ts
 * const known = new KnownTenantStates();
 * const state = known.get(databaseKey(client), tenant.id);
 * // … send state with the entry, then:
 * known.learn(databaseKey(client), tenant.id, response.enterValue);
 * ```
 */
export class KnownTenantStates {
  readonly #byDatabase = new Map<string, Map<string, KnownTenantState>>();

  /** The copy to send for `tenantId` in `database`, if there is a fresh one. */
  get(database: string, tenantId: string, now = performance.now()): KnownTenantState | undefined {
    const state = this.#byDatabase.get(database)?.get(tenantId);
    if (state === undefined || now - state.learntAt <= KNOWN_STATE_MAX_AGE_MS) return state;
    this.forget(database, tenantId);
    return undefined;
  }

  /**
   * Keeps what `enter()` answered, when it read the row: `version`, statement timeout,
   * schema (`''` for none) and path, one a line, the version empty when the tenant may not be
   * copied. A bare path (the copy was used) changes nothing.
   */
  learn(database: string, tenantId: string, answer: string | null, now = performance.now()): void {
    if (answer === null || !answer.includes('\n')) return;
    const [version = '', timeout = '', place = ''] = answer.split('\n', 3);
    const statementTimeoutMs = Number(timeout);
    if (!VERSION.test(version) || !Number.isInteger(statementTimeoutMs)) {
      this.forget(database, tenantId);
      return;
    }
    let states = this.#byDatabase.get(database);
    if (states === undefined) {
      states = new Map();
      this.#byDatabase.set(database, states);
    }
    if (states.size >= MAX_PER_DATABASE && !states.has(tenantId)) states.clear();
    states.set(tenantId, { version, statementTimeoutMs, place: place === '' ? null : place, learntAt: now });
  }

  /** Drops the copy of `tenantId` in `database` (after a refused or failed entry). */
  forget(database: string, tenantId: string): void {
    this.#byDatabase.get(database)?.delete(tenantId);
  }
}

/** Where {@link databaseKey} keeps its answer on a pg client. */
const DATABASE_KEY = Symbol('tenantry.databaseKey');

/** Which database a connection is to, as {@link KnownTenantStates} keys it. */
export function databaseKey(client: ClientBase): string {
  const c = client as unknown as { host?: string; port?: number; database?: string; [DATABASE_KEY]?: string };
  // Worked out once per connection (a connection never changes database): a string built
  // afresh for every transaction would be hashed afresh by every map lookup too.
  let key = c[DATABASE_KEY];
  if (key === undefined) {
    key = `${c.host ?? ''}:${c.port ?? ''}/${c.database ?? ''}`;
    c[DATABASE_KEY] = key;
  }
  return key;
}
