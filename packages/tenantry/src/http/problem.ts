import { ERRORS, type ErrorCode, TenantryError } from '../errors/catalog.ts';
import { isConnectionFailure } from '../errors/sqlstate.ts';

/** An RFC 9457 problem details body, with Tenantry's stable `code` and the request id. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: ErrorCode;
  requestId?: string;
  errors?: unknown;
}

/** Media type of problem details responses. */
export const PROBLEM_JSON = 'application/problem+json';

/**
 * The one builder of problem bodies: `code`'s catalog title and status, its `type` URI,
 * and what the caller adds. Every problem the server sends is made here.
 *
 * @example
 * ```ts
 * reply.code(503).type(PROBLEM_JSON).send(problemOf('NOT_READY', { detail: 'PostgreSQL is unreachable', requestId: req.id }));
 * ```
 */
export function problemOf(
  code: ErrorCode,
  extra: {
    detail?: string | undefined;
    requestId?: string | undefined;
    errors?: unknown;
    /** The status when it is not the catalog's (a framework 4xx without a code of its own). */
    status?: number | undefined;
  } = {},
): ProblemDetails {
  return {
    type: `https://tenantry.dev/errors/${code}`,
    title: ERRORS[code].message,
    status: extra.status ?? ERRORS[code].status,
    ...(extra.detail !== undefined ? { detail: extra.detail } : {}),
    code,
    ...(extra.requestId ? { requestId: extra.requestId } : {}),
    ...(extra.errors !== undefined ? { errors: extra.errors } : {}),
  };
}

/** Codes of the framework's client errors by status; any other 4xx is `INVALID_INPUT`. */
const FRAMEWORK_CODES: Readonly<Partial<Record<number, ErrorCode>>> = {
  404: 'NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
};

/**
 * Converts any error into problem details at the HTTP edge. A {@link TenantryError} keeps
 * its code, status and message; a lost or refused PostgreSQL connection becomes
 * `DATABASE_UNAVAILABLE` (503); anything else becomes a generic 500 — no stack trace, no
 * driver message (it could name another tenant's row) ever leaves the server.
 */
export function toProblem(error: unknown, requestId?: string): ProblemDetails {
  if (error instanceof TenantryError) {
    return problemOf(error.code, {
      detail: error.message !== ERRORS[error.code].message ? error.message : undefined,
      requestId,
      errors: error.details?.problems,
    });
  }
  const status = (error as { statusCode?: unknown })?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // A client error raised by the HTTP framework (bad JSON, body too large, validation):
    // the catalog's code for its status where there is one, so code and title match it.
    const code = FRAMEWORK_CODES[status] ?? 'INVALID_INPUT';
    return problemOf(code, { status, detail: String((error as Error).message ?? ''), requestId });
  }
  if (isConnectionFailure(error)) {
    // Raised outside a tenant transaction (API key or tenant lookup on the admin pool, a
    // pool connect): the same 503 as inside one, so clients see one code for an outage.
    // Checked after the framework's 4xx: a client that hung up mid-body is no outage.
    return toProblem(new TenantryError('DATABASE_UNAVAILABLE'), requestId);
  }
  return problemOf('INTERNAL', { requestId });
}
