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
