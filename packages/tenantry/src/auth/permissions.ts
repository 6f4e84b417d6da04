import { TenantryError } from '../errors/catalog.ts';

/**
 * Permissions are `resource:action` strings. API key scopes and user roles both resolve to
 * a set of them, so a route checks one thing whoever calls it.
 */
export const BUILTIN_PERMISSIONS = [
  'tenant:read',
  'items:read',
  'items:write',
  'users:read',
  'users:write',
  'keys:read',
  'keys:write',
  'audit:read',
  'webhooks:read',
  'webhooks:write',
  'events:read',
  'jobs:read',
  'jobs:write',
] as const;

/** A permission: one of {@link BUILTIN_PERMISSIONS} or an application's own `resource:action`. */
export type Permission = (typeof BUILTIN_PERMISSIONS)[number] | `${string}:${string}`;

/** Built-in roles, from most to least powerful. Custom roles map to permission lists too. */
export const BUILTIN_ROLES = {
  owner: [...BUILTIN_PERMISSIONS],
  admin: [...BUILTIN_PERMISSIONS],
  member: ['tenant:read', 'items:read', 'items:write', 'users:read'],
  viewer: ['tenant:read', 'items:read', 'users:read'],
} as const satisfies Record<string, readonly Permission[]>;

export type BuiltinRole = keyof typeof BUILTIN_ROLES;

const PERMISSION = /^[a-z][a-z0-9_-]{0,39}:[a-z][a-z0-9_-]{0,39}$/;

/** True when `value` is a well-formed permission string. */
export function isPermission(value: unknown): value is Permission {
  return typeof value === 'string' && PERMISSION.test(value);
}

/** Who is calling, once authenticated: always exactly one tenant. */
export interface Principal {
  readonly kind: 'api-key' | 'user';
  readonly tenantId: string;
  /** The API key id or the user id. */
  readonly subject: string;
  readonly permissions: ReadonlySet<string>;
  /** For users: the role name; for keys: undefined. */
  readonly role?: string;
}

/**
 * Throws `FORBIDDEN` unless `principal` holds `permission`.
 *
 * @example
 * ```ts
 * requirePermission(principal, 'items:write');
 * ```
 */
export function requirePermission(principal: Principal, permission: Permission): void {
  if (!principal.permissions.has(permission)) {
    throw new TenantryError('FORBIDDEN', `missing permission ${permission}`);
  }
}
