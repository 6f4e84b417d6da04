import type { QueryResult, QueryResultRow } from 'pg';
import { z } from 'zod';
import { BUILTIN_ROLES, type BuiltinRole, isPermission, type Permission, type Principal } from './permissions.ts';

/** The subset of pg's `Pool` / `PoolClient` these helpers need. */
export interface Queryable {
  query<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/** A role name: lower-case, like a permission's parts (what the `roles` table's CHECK allows). */
export const RoleName = z.string().regex(/^[a-z][a-z0-9_-]{0,39}$/, 'lower-case letters, digits, - and _, 1-40');

/** A custom role's name: a {@link RoleName} that is not a built-in role. */
export const CustomRoleName = RoleName.refine((name) => !isBuiltinRole(name), 'built-in roles cannot be redefined');

/** A custom role's permissions: well-formed `resource:action` strings, deduplicated, at most 64. */
export const PermissionList = z
  .array(z.string().refine(isPermission, 'not a resource:action permission'))
  .max(64)
  .transform((list) => [...new Set(list)].sort() as Permission[]);

/** A custom role of one tenant. */
export interface RoleRecord {
  readonly tenantId: string;
  readonly name: string;
  readonly permissions: readonly Permission[];
  readonly builtin: boolean;
}

/**
 * True for `owner`, `admin`, `member`, `viewer`.
 *
 * @example
 * ```ts
 * isBuiltinRole('viewer'); // true
 * ```
 */
export function isBuiltinRole(name: unknown): name is BuiltinRole {
  return typeof name === 'string' && Object.hasOwn(BUILTIN_ROLES, name);
}

/**
 * The permissions of `role` in `tenantId`: a built-in role's from code, a custom role's
 * from `tenantry.roles`; `undefined` when the tenant has no such role. Inside a
 * transaction that is about to point a membership at the role, pass `lock: true` so the
 * role cannot be redefined or dropped until it commits.
 *
 * @example
 * ```ts
 * const perms = await rolePermissions(pool, tenantId, 'auditor'); // ['audit:read', ...]
 * ```
 */
export async function rolePermissions(
  db: Queryable,
  tenantId: string,
  role: string,
  options: { lock?: boolean } = {},
): Promise<readonly Permission[] | undefined> {
  if (isBuiltinRole(role)) return BUILTIN_ROLES[role];
  const { rows } = await db.query<{ permissions: string[] }>(
    `SELECT permissions FROM tenantry.roles WHERE tenant_id = $1 AND name = $2${options.lock ? ' FOR KEY SHARE' : ''}`,
    [tenantId, role],
  );
  // Re-checked on the way out: the CHECK constraints do not validate each element.
  return rows[0]?.permissions.filter(isPermission);
}

/**
 * The {@link Principal} of a user acting in one tenant with one role.
 *
 * @example
 * ```ts
 * const p = userPrincipal(tenantId, userId, 'viewer', BUILTIN_ROLES.viewer);
 * p.permissions.has('items:write'); // false
 * ```
 */
export function userPrincipal(
  tenantId: string,
  userId: string,
  role: string,
  permissions: readonly string[],
): Principal {
  return Object.freeze({
    kind: 'user',
    tenantId,
    subject: userId,
    role,
    permissions: new Set(permissions) as ReadonlySet<string>,
  });
}
