import type { ApiKeyStore } from './api-key-store.ts';
import type { VerifiedKey } from './api-key-verifier.ts';
import type { Authenticator } from './authenticator.ts';
import type { Principal } from './permissions.ts';
import type { TokenService } from './tokens.ts';

const API_KEY_SHAPE = /^[a-z]{2,8}_(?:live|test|dev)_[0-9A-Za-z]+$/;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * API keys (`tnt_live_…`). The store rejects malformed and wrong-checksum keys without a
 * database query; scopes become the principal's permissions.
 *
 * @example
 * ```ts
 * createServer(tenantry, { authenticators: [apiKeyAuthenticator(tenantry.apiKeys)] });
 * ```
 */
export function apiKeyAuthenticator(store: ApiKeyStore): Authenticator {
  // The store's cache hands out the same frozen VerifiedKey while the key is cached: its
  // principal is built once (the permissions are a ReadonlySet, shared read-only).
  const principals = new WeakMap<VerifiedKey, Principal>();
  return {
    name: 'api-key',
    accepts: (credential) => credential.length <= 200 && API_KEY_SHAPE.test(credential),
    async authenticate(credential): Promise<Principal | undefined> {
      const key = await store.verify(credential);
      if (!key) return undefined;
      let principal = principals.get(key);
      if (!principal) {
        principal = Object.freeze({
          kind: 'api-key',
          tenantId: key.tenantId,
          subject: key.keyId,
          permissions: new Set(key.scopes),
        });
        principals.set(key, principal);
      }
      return principal;
    },
  };
}

/**
 * Access tokens (JWT from `POST /v1/auth/login`); the role in the token gives the permissions.
 *
 * @example
 * ```ts
 * createServer(tenantry, { authenticators: [accessTokenAuthenticator(tenantry.auth)] });
 * ```
 */
export function accessTokenAuthenticator(tokens: TokenService): Authenticator {
  return {
    name: 'jwt',
    accepts: (credential) => credential.length <= 4096 && JWT_SHAPE.test(credential),
    async authenticate(credential): Promise<Principal | undefined> {
      try {
        return await tokens.verifyAccessToken(credential);
      } catch {
        return undefined;
      }
    },
  };
}
