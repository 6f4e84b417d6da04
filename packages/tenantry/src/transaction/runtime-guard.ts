import type { ClientBase } from 'pg';
import { TenantryError } from '../errors/catalog.ts';

/**
 * Refuses a runtime connection whose role could bypass row-level security: a superuser,
 * a BYPASSRLS role, the owner of any table, or a member of such a role (a member
 * can `SET ROLE` to it, so an injection could too). Before PostgreSQL 16 a CREATEROLE role
 * may grant itself membership in any non-superuser role (the owner role included), so it
 * is refused there too; so is a role that may create temporary objects (it could make its
 * own context registers). Says what to do instead.
 */
export async function assertSafeRuntimeRole(client: ClientBase): Promise<void> {
  const { rows } = await client.query<{ role: string; why: string; me: string }>(`
    SELECT r.rolname AS role, current_user AS me,
           CASE WHEN r.rolsuper THEN 'SUPERUSER'
                WHEN r.rolbypassrls THEN 'BYPASSRLS'
                WHEN r.rolcreaterole AND current_setting('server_version_num')::int < 160000
                  THEN 'CREATEROLE (before PostgreSQL 16 it can grant itself the table owner role)'
                ELSE 'the owner of tables (the runtime role must own nothing)' END AS why
      FROM pg_roles r
     WHERE pg_has_role(current_user, r.oid, 'MEMBER')
       AND (r.rolsuper OR r.rolbypassrls
            OR (r.rolcreaterole AND current_setting('server_version_num')::int < 160000)
            -- Owning any table lets the role ALTER it (disable RLS, drop the policy); temporary
            -- tables of its own sessions are fine.
            OR EXISTS (SELECT 1 FROM pg_class c
                        WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p')
                          AND c.relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname LIKE 'pg\\_temp\\_%')))
     ORDER BY r.rolname = current_user DESC, r.rolname`);
  const bad = rows[0];
  if (!bad) {
    // A runtime role that may create temporary objects could create its own context
    // registers in a fresh session (they are temporary sequences) before enter() does.
    const temp = await client.query<{ me: string; db: string; temp: boolean }>(
      `SELECT current_user AS me, current_database() AS db,
              has_database_privilege(current_user, current_database(), 'TEMPORARY') AS temp`,
    );
    const t = temp.rows[0];
    if (!t?.temp) return;
    throw new TenantryError(
      'UNSAFE_RUNTIME_ROLE',
      `role "${t.me}" may create temporary objects in database "${t.db}", which would let it forge the tenant context registers. Run \`REVOKE TEMPORARY ON DATABASE "${t.db}" FROM PUBLIC, "${t.me}"\` (setup() does).`,
      { details: { role: t.me, reason: 'TEMPORARY' } },
    );
  }
  const via =
    bad.role === bad.me
      ? `role "${bad.me}" is ${bad.why}`
      : `role "${bad.me}" is a member of "${bad.role}", which is ${bad.why}`;
  throw new TenantryError(
    'UNSAFE_RUNTIME_ROLE',
    `${via}. Connect tenant work as a role that is NOSUPERUSER NOBYPASSRLS NOCREATEROLE, owns no table and is a member of no such role: \`tenantry serve\`/\`setup()\` create one ("tenantry_runtime"); leave runtimeUrl unset to use it.`,
    { details: { role: bad.me, reason: bad.why } },
  );
}

/**
 * {@link assertSafeRuntimeRole}, once per server: the first connection to each server is
 * checked, later ones wait for that check. Only a passing check is remembered: a failure
 * (or a connection dropped during it) is checked again on the next transaction.
 */
export class RuntimeRoleGuard {
  readonly #passed = new Map<string, Promise<void>>();

  /** Resolves once the runtime role on `server` is known to be unable to bypass RLS. */
  check(server: string, client: ClientBase): Promise<void> {
    let check = this.#passed.get(server);
    if (!check) {
      check = assertSafeRuntimeRole(client).catch((error: unknown) => {
        this.#passed.delete(server);
        throw error;
      });
      this.#passed.set(server, check);
    }
    return check;
  }
}
