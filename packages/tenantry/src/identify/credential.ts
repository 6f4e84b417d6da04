/** The request headers identification reads (Node's `IncomingHttpHeaders` fits). */
export type CredentialHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * The credential a request presents: `Authorization: Bearer <token>` (an access token or an
 * API key), else an `X-API-Key` header; `undefined` when it presents none. Only the shape is
 * read here; step 2 (`auth/`) decides whether it is valid.
 *
 * @example
 * ```ts
 * presentedCredential({ authorization: 'Bearer tnt_live_abc' }); // 'tnt_live_abc'
 * ```
 */
export function presentedCredential(headers: CredentialHeaders): string | undefined {
  const authorization = headers.authorization;
  if (typeof authorization === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (m) return m[1];
  }
  const key = headers['x-api-key'];
  return typeof key === 'string' && key.length > 0 ? key : undefined;
}
