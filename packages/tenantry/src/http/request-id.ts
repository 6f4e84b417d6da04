import { randomUUID } from 'node:crypto';
import type { CredentialHeaders } from '../identify/credential.ts';

/** What a client may send as `X-Request-ID` and have kept (anything else gets a fresh uuid). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The id of a request for the adapters without one of their own: `known` when the adapter
 * already chose one, else a well-formed `X-Request-ID` the client sent, else a fresh uuid.
 * The reference server applies the same rule through Fastify's `genReqId`.
 *
 * @example
 * ```ts
 * requestIdOf({ 'x-request-id': 'abc-1' }); // 'abc-1'
 * ```
 */
export function requestIdOf(headers: CredentialHeaders, known?: unknown): string {
  if (typeof known === 'string' && known.length > 0) return known;
  const sent = headers['x-request-id'];
  return typeof sent === 'string' && REQUEST_ID.test(sent) ? sent : randomUUID();
}
