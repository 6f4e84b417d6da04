import type { Pool } from 'pg';
import { z } from 'zod';
import { inTransaction } from '../control/admin-transaction.ts';
import { parseInput } from '../control/tenant-input.ts';
import type { ActorOption } from '../control/tenant-registry.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';
import { BUILTIN_ROLES, isPermission, type Permission } from './permissions.ts';
import { CustomRoleName, PermissionList, type Queryable, type RoleRecord } from './roles.ts';

const Id = z.string().regex(UUID, 'must be a UUID');
const DefineRole = z.object({ tenantId: Id, name: CustomRoleName, permissions: PermissionList });

/**
 * Creates or replaces a custom role on `client` (inside the caller's transaction).
 * Returns the role and whether it is new. Inputs must already be validated.
 */
async function upsertRole(
  client: Queryable,
  tenantId: string,
  name: string,
  permissions: readonly Permission[],
): Promise<{ role: RoleRecord; created: boolean }> {
  const { rows } = await client.query<{ permissions: string[]; created: boolean }>(
    `INSERT INTO tenantry.roles (tenant_id, name, permissions) VALUES ($1, $2, $3)
     ON CONFLICT (tenant_id, name) DO UPDATE SET permissions = EXCLUDED.permissions, updated_at = now()
     RETURNING permissions, (xmax = 0) AS created`,
    [tenantId, name, permissions],
  );
  const row = rows[0] as { permissions: Permission[]; created: boolean };
  return { role: roleRecord(tenantId, name, row.permissions, false), created: row.created };
}

/** The tenant's roles: the built-in ones first, then its custom roles by name. */
async function listRoles(db: Queryable, tenantId: string): Promise<RoleRecord[]> {
  const builtin = Object.entries(BUILTIN_ROLES).map(([name, perms]) => roleRecord(tenantId, name, perms, true));
  const { rows } = await db.query<{ name: string; permissions: string[] }>(
    'SELECT name, permissions FROM tenantry.roles WHERE tenant_id = $1 ORDER BY name',
    [tenantId],
  );
  return [...builtin, ...rows.map((r) => roleRecord(tenantId, r.name, r.permissions.filter(isPermission), false))];
}

function roleRecord(tenantId: string, name: string, permissions: readonly Permission[], builtin: boolean): RoleRecord {
  return Object.freeze({ tenantId, name, permissions: Object.freeze([...permissions]), builtin });
}

/**
 * Custom roles of tenants, on the control plane (admin pool): named permission lists
 * beside the built-in `owner`, `admin`, `member` and `viewer`. A membership names a role;
 * its permissions are read when a token is issued or refreshed (see `rolePermissions`).
 * Bad input is `INVALID_INPUT` and writes nothing; each change is audited in its own
 * transaction.
 *
 * @example
 * ```ts
 * await tenantry.roles.define(acme.id, 'auditor', ['tenant:read', 'audit:read']);
 * await tenantry.users.create(acme.id, { email: 'eve@acme.test', role: 'auditor' });
 * ```
 */
export class RoleStore {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  /**
   * Creates or replaces a custom role of the tenant. Built-in role names are refused;
   * members holding the role get the new permissions at their next token refresh.
   *
   * @example
   * ```ts
   * await roles.define(tenantId, 'auditor', ['tenant:read', 'audit:read']);
   * ```
   */
  async define(
    tenantId: string,
    name: string,
    permissions: readonly string[],
    options: ActorOption = {},
  ): Promise<RoleRecord> {
    const data = parseInput(DefineRole, { tenantId, name, permissions });
    return inTransaction(this.#pool, async (client) => {
      const { rowCount } = await client.query('SELECT 1 FROM tenantry.tenants WHERE id = $1 FOR KEY SHARE', [
        data.tenantId,
      ]);
      if (!rowCount) throw new TenantryError('TENANT_NOT_FOUND');
      const { role, created } = await upsertRole(client, data.tenantId, data.name, data.permissions);
      await writeAudit(client, {
        actor: options.actor ?? 'system',
        tenantId: data.tenantId,
        action: 'role.defined',
        details: { name: role.name, permissions: role.permissions, created },
      });
      return role;
    });
  }

  /**
   * The tenant's roles: built-in, then custom by name.
   *
   * @example
   * ```ts
   * for (const r of await roles.list(tenantId)) console.log(r.name, r.builtin, r.permissions);
   * ```
   */
  async list(tenantId: string): Promise<RoleRecord[]> {
    const { tenantId: tid } = parseInput(z.object({ tenantId: Id }), { tenantId });
    return listRoles(this.#pool, tid);
  }
}
