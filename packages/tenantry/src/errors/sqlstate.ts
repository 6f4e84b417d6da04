import { TenantryError } from './catalog.ts';

/**
 * SQLSTATEs raised by Tenantry's own SQL functions (class `TN`, free for applications).
 * Kept beside the catalog so both sides of the mapping are in one place.
 */
export const TENANTRY_SQLSTATE = {
  invalidContext: 'TN001',
  tenantSuspended: 'TN002',
  tenantNotActive: 'TN003',
  tenantNotFound: 'TN004',
  tenantMoved: 'TN005',
  auditAppendOnly: 'TN006',
  /** A job's completion came after its lease was lost: its transaction must not commit. */
  jobLeaseLost: 'TN016',
} as const;

/**
 * SQLSTATEs that mean the server is going away or not accepting sessions yet: class `08`
 * (connection exception) is matched by prefix, these by value. `57P01` is also what
 * `pg_terminate_backend()` raises: either way, this session is gone.
 */
const UNAVAILABLE_SQLSTATES: ReadonlySet<string> = new Set([
  '57P01', // admin_shutdown (also `pg_ctl stop -m fast|immediate`)
  '57P02', // crash_shutdown: another backend crashed, the server resets every session
  '57P03', // cannot_connect_now: starting up, shutting down or in recovery
]);

/** Socket errors of Node (`error.code`) that mean the server could not be reached or hung up. */
const UNAVAILABLE_ERRNOS: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/**
 * Messages of `pg` and `pg-pool` errors that carry no code: a socket that closed under a
 * client ("Connection terminated unexpectedly"), a connect attempt past
 * `connectionTimeoutMillis`, or a client that already failed.
 */
const UNAVAILABLE_MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect$/,
  /^Client has encountered a connection error and is not queryable$/,
];

/**
 * True when `error` (or its `cause`, or one of an `AggregateError`'s errors — Node raises
 * one when every address of a host refused) says PostgreSQL is unreachable, restarting or
 * dropped the connection: a condition worth retrying later, unlike an error of the SQL.
 *
 * @example
 * ```ts
 * try { await pool.query('SELECT 1') } catch (e) { if (isConnectionFailure(e)) retryLater() }
 * ```
 */
export function isConnectionFailure(error: unknown, depth = 0): boolean {
  if (depth > 4 || error === null || typeof error !== 'object' || error instanceof TenantryError) return false;
  const { code, message, cause } = error as { code?: unknown; message?: unknown; cause?: unknown };
  if (typeof code === 'string') {
    if (/^08[0-9A-Z]{3}$/.test(code) || UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_ERRNOS.has(code)) return true;
  }
  if (typeof message === 'string' && UNAVAILABLE_MESSAGES.some((pattern) => pattern.test(message))) return true;
  if (error instanceof AggregateError && error.errors.some((e) => isConnectionFailure(e, depth + 1))) return true;
  return cause !== undefined && isConnectionFailure(cause, depth + 1);
}

/**
 * Turns an error raised by PostgreSQL inside tenant work into a catalog error when it is
 * one of Tenantry's own SQLSTATEs (or a statement timeout); a lost or refused connection
 * becomes `DATABASE_UNAVAILABLE`; anything else is returned as is.
 */
export function translatePgError(error: unknown): unknown {
  if (isConnectionFailure(error)) return new TenantryError('DATABASE_UNAVAILABLE', undefined, { cause: error });
  const code = (error as { code?: unknown } | null)?.code;
  switch (code) {
    case TENANTRY_SQLSTATE.invalidContext:
      return new TenantryError('INVALID_TENANT_CONTEXT', undefined, { cause: error });
    case TENANTRY_SQLSTATE.tenantSuspended:
      return new TenantryError('TENANT_SUSPENDED', undefined, { cause: error });
    case TENANTRY_SQLSTATE.tenantNotActive:
      return new TenantryError('TENANT_NOT_ACTIVE', undefined, { cause: error });
    case TENANTRY_SQLSTATE.tenantNotFound:
      return new TenantryError('TENANT_NOT_FOUND', undefined, { cause: error });
    case TENANTRY_SQLSTATE.tenantMoved:
      return new TenantryError('TENANT_MOVED', undefined, { cause: error });
    case TENANTRY_SQLSTATE.auditAppendOnly:
      return new TenantryError('AUDIT_APPEND_ONLY', undefined, { cause: error });
    case '25006':
      // read_only_sql_transaction: enter() made the transaction read-only because the
      // tenant is frozen for a move.
      return new TenantryError('TENANT_MOVING', undefined, { cause: error });
    case '57014':
      // query_canceled also covers pg_cancel_backend(); only the timeout is the plan's limit.
      return /statement timeout/.test(String((error as { message?: unknown }).message))
        ? new TenantryError('STATEMENT_TIMEOUT', undefined, { cause: error })
        : error;
    default:
      return error;
  }
}
