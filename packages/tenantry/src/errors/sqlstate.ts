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
} as const;

/**
 * Turns an error raised by PostgreSQL inside tenant work into a catalog error when it is
 * one of Tenantry's own SQLSTATEs (or a statement timeout); anything else is returned as is.
 */
export function translatePgError(error: unknown): unknown {
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
    case '57014':
      // query_canceled also covers pg_cancel_backend(); only the timeout is the plan's limit.
      return /statement timeout/.test(String((error as { message?: unknown }).message))
        ? new TenantryError('STATEMENT_TIMEOUT', undefined, { cause: error })
        : error;
    default:
      return error;
  }
}
