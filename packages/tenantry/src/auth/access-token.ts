import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { TenantryError } from '../errors/catalog.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';
import { BUILTIN_ROLES, isPermission, type Principal } from './permissions.ts';
import { isBuiltinRole, userPrincipal } from './roles.ts';

let jose: Promise<typeof import('jose')> | undefined;
/** jose, loaded on the first token: importing `tenantry` does not load it. */
function loadJose(): Promise<typeof import('jose')> {
  jose ??= import('jose');
  return jose;
}

/** `iss` and `aud` of every access token. */
export const TOKEN_ISSUER = 'tenantry';
export const TOKEN_AUDIENCE = 'tenantry';

const AccessClaims = z.object({
  sub: z.string().regex(UUID),
  tid: z.string().regex(UUID),
  role: z.string().regex(/^[a-z][a-z0-9_-]{0,39}$/),
  perms: z.array(z.string().refine(isPermission)).max(64).optional(),
});

/** Every credential failure looks the same: no code, message or detail tells which check failed. */
export function unauthorized(cause?: unknown): TenantryError {
  return new TenantryError('UNAUTHORIZED', undefined, cause === undefined ? undefined : { cause });
}

/** Who an access token speaks for: its `sub`, `tid`, `role` and (custom roles only) `perms`. */
export interface AccessSession {
  readonly tenantId: string;
  readonly userId: string;
  readonly role: string;
  readonly permissions: readonly string[];
}

/**
 * Signs an access token (JWT, HS256) for `session`, valid `ttlSeconds` from now. A
 * built-in role's permissions stay out of the token (they come from code when it is
 * verified); a custom role's travel in it as `perms`.
 *
 * @example
 * ```ts
 * const jwt = await signAccessToken(key, { tenantId, userId, role: 'member', permissions }, 900);
 * ```
 */
export async function signAccessToken(key: Uint8Array, session: AccessSession, ttlSeconds: number): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const { SignJWT } = await loadJose();
  return new SignJWT({
    tid: session.tenantId,
    role: session.role,
    ...(isBuiltinRole(session.role) ? {} : { perms: [...session.permissions] }),
  })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(session.userId)
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
    .setJti(randomUUID())
    .sign(key);
}

/**
 * Verifies an access token and returns its {@link Principal}, without the database. Only
 * HS256 is accepted (no `none`, no other algorithm, no key from the header); `iss`, `aud`,
 * `typ`, `exp`, `iat`, `jti`, `sub`, `tid` and `role` are required. Any failure is
 * `UNAUTHORIZED`.
 *
 * @example
 * ```ts
 * const principal = await verifyAccessToken(key, bearer, 0);
 * ```
 */
export async function verifyAccessToken(
  key: Uint8Array,
  token: string,
  clockToleranceSeconds: number,
): Promise<Principal> {
  if (typeof token !== 'string' || token.length === 0 || token.length > 8192) throw unauthorized();
  let payload: unknown;
  try {
    const { jwtVerify } = await loadJose();
    ({ payload } = await jwtVerify(token, key, {
      algorithms: ['HS256'],
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      typ: 'JWT',
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'tid', 'role'],
      clockTolerance: clockToleranceSeconds,
    }));
  } catch (error) {
    throw unauthorized(error);
  }
  const claims = AccessClaims.safeParse(payload);
  if (!claims.success) throw unauthorized();
  const { sub, tid, role, perms } = claims.data;
  // A built-in role's permissions come from code (tokens stay small, and a deploy that
  // changes them applies at once); a custom role's travel in the token.
  const permissions = isBuiltinRole(role) ? BUILTIN_ROLES[role] : perms;
  if (!permissions || (isBuiltinRole(role) && perms !== undefined)) throw unauthorized();
  return userPrincipal(tid.toLowerCase(), sub.toLowerCase(), role, permissions);
}
