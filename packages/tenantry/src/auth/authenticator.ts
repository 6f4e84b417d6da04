import { TenantryError } from '../errors/catalog.ts';
import type { Principal } from './permissions.ts';

/**
 * Turns a presented credential (API key or access token) into a {@link Principal}. The
 * identification chain asks each authenticator that `accepts()` the credential's shape,
 * in order; `accepts` must be a cheap syntactic check with no I/O.
 */
export interface Authenticator {
  readonly name: string;
  accepts(credential: string): boolean;
  /** The principal, or `undefined` when the credential is invalid, expired or revoked. */
  authenticate(credential: string): Promise<Principal | undefined>;
}

/**
 * Step 2 of the request path: the principal behind `credential`, asked of the first
 * authenticator whose `accepts()` takes its shape. Throws `UNAUTHORIZED` when there is no
 * credential, no authenticator takes it, or it is invalid, expired or revoked (one answer
 * for all, so a caller learns nothing about keys it does not hold).
 *
 * @example
 * ```ts
 * const principal = await authenticate(presentedCredential(req.headers), [apiKeyAuthenticator(tenantry.apiKeys)]);
 * ```
 */
export async function authenticate(
  credential: string | undefined,
  authenticators: readonly Authenticator[],
): Promise<Principal> {
  if (!credential) {
    throw new TenantryError('UNAUTHORIZED', 'send an API key or access token as `Authorization: Bearer …`');
  }
  const authenticator = authenticators.find((a) => a.accepts(credential));
  const principal = authenticator ? await authenticator.authenticate(credential) : undefined;
  if (!principal) throw new TenantryError('UNAUTHORIZED');
  return principal;
}
