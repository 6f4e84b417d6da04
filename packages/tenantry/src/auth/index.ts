/**
 * `tenantry/auth`: step 2 of the request path — API keys, users and custom roles, login with
 * access and refresh tokens, permissions, and the authenticators the Fastify plugin chains.
 * The stores are also reachable as `tenantry.apiKeys`, `tenantry.users`, `tenantry.auth`.
 *
 * @packageDocumentation
 */
export { requireAdminToken } from './admin-token.ts';
export {
  API_KEY_ENVIRONMENTS,
  type ApiKeyEnvironment,
  apiKeyChecksum,
  DEFAULT_API_KEY_PREFIX,
  generateApiKey,
  isApiKeyPrefix,
  type ParsedApiKey,
  parseApiKey,
} from './api-key-format.ts';
export type { ApiKeyStoreOptions } from './api-key-options.ts';
export { type ApiKeyRecord, CreateApiKeyInput, type CreatedApiKey } from './api-key-record.ts';
export { ApiKeyStore } from './api-key-store.ts';
export type { VerifiedKey } from './api-key-verifier.ts';
export { type Authenticator, authenticate } from './authenticator.ts';
export { accessTokenAuthenticator, apiKeyAuthenticator } from './authenticators.ts';
export { ARGON2ID_PARAMS, PasswordHasher } from './passwords.ts';
export {
  BUILTIN_PERMISSIONS,
  BUILTIN_ROLES,
  isPermission,
  type Permission,
  type Principal,
  requirePermission,
} from './permissions.ts';
export { RoleStore } from './role-store.ts';
export { isBuiltinRole, type RoleRecord } from './roles.ts';
export { type TokenPair, TokenService, type TokenServiceOptions } from './tokens.ts';
export { type CreateUserInput, type UserRecord, UserStore, type UserStoreOptions } from './users.ts';
