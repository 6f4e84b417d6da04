import type { ClientBase } from 'pg';
import { TenantryError } from '../errors/catalog.ts';
import { type ContextDialect, type ContextEntry, entryToken } from './context-dialect.ts';
import { type ContextPurpose, mintContextToken } from './context-token.ts';

/** What {@link enterContext} needs to sign an entry token and run the context statement. */
export interface EnterContextOptions {
  readonly contextKey: Buffer;
  readonly dialect: ContextDialect;
  /** Schema of the shared tables: the `search_path` outside the schema tier. */
  readonly sharedSchema: string;
  /** Lifetime of the entry token (ms). */
  readonly tokenTtlMs: number;
  /** `pooler`: the token carries pid 0, for a transaction-mode pooler (see `contextBinding`). */
  readonly binding: 'session' | 'pooler';
}

/** The server process id pg learnt at connect time (BackendKeyData). */
export function backendPid(client: ClientBase): number {
  const pid = (client as unknown as { processID?: unknown }).processID;
  if (typeof pid !== 'number') throw new TenantryError('INTERNAL', 'the pg client did not report its backend pid');
  return pid;
}

/**
 * The values of `dialect`'s context statement for `entry` (its own `enterValues`, else the
 * token, the next secret and the shared schema).
 *
 * @example
 * ```ts
 * await client.query(dialect.enterSql, contextEntryValues(dialect, entry));
 * ```
 */
export function contextEntryValues(dialect: ContextDialect, entry: ContextEntry): unknown[] {
  return dialect.enterValues ? dialect.enterValues(entry) : [entryToken(entry), entry.nextSecret, entry.sharedSchema];
}

/**
 * Enters `tenantId`'s verified context on `client`, inside the transaction the caller has
 * already begun, with an HMAC-signed token: for Tenantry's own work on connections that are
 * not the tenant runtime pool's (moves, purges). Tenant transactions use the pipelined path
 * in `transaction/tenant-transaction.ts`, which also uses the session's one-time secret.
 *
 * @example
 * ```ts
 * await client.query('BEGIN');
 * await enterContext(client, 'maintenance', tenant.id, options);
 * ```
 */
export async function enterContext(
  client: ClientBase,
  purpose: ContextPurpose,
  tenantId: string,
  options: EnterContextOptions,
): Promise<void> {
  const pid = options.binding === 'pooler' ? 0 : backendPid(client);
  const values = contextEntryValues(options.dialect, {
    purpose,
    tenantId,
    secret: undefined,
    nextSecret: null,
    sharedSchema: options.sharedSchema,
    signedToken: () => mintContextToken(options.contextKey, purpose, tenantId, pid, Date.now() + options.tokenTtlMs),
  });
  await client.query(options.dialect.enterSql, values);
}
