import { qualified, quoteIdent } from '../sql.ts';
import { type Finding, finding } from './finding.ts';
import type { Queryable, TableInfo } from './inspect.ts';

/** Schema of the control plane (tenants, placements, keys, audit): see migrate/control-plane.ts. */
const CONTROL_SCHEMA = 'tenantry';

/** The runtime role as `pg_roles` has it. */
export interface RuntimeRole {
  readonly oid: number;
  readonly name: string;
  readonly superuser: boolean;
  readonly bypassrls: boolean;
}

/** Looks the runtime role up; null when it does not exist. */
export async function findRuntimeRole(client: Queryable, name: string): Promise<RuntimeRole | null> {
  const { rows } = await client.query<{ oid: number; superuser: boolean; bypassrls: boolean }>(
    'SELECT oid, rolsuper AS superuser, rolbypassrls AS bypassrls FROM pg_roles WHERE rolname = $1',
    [name],
  );
  const row = rows[0];
  return row ? { oid: row.oid, name, superuser: row.superuser, bypassrls: row.bypassrls } : null;
}

function few(names: readonly string[]): string {
  return names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
}

/**
 * Whether the runtime role could get around row-level security (DESIGN.md invariants 1
 * and 5), by the same rules `assertSafeRuntimeRole` applies when Tenantry connects, so a
 * clean report means Tenantry will accept the role: not SUPERUSER or BYPASSRLS, owner of
 * no tenant table and of no table with RLS, member of no role that is any of these (a
 * member can `SET ROLE` to it), and no privilege on the control plane.
 */
export async function checkRuntimeRole(
  client: Queryable,
  name: string,
  role: RuntimeRole | null,
  tenantTables: readonly TableInfo[],
): Promise<Finding[]> {
  const r = quoteIdent(name);
  if (!role) {
    return [
      finding('RUNTIME_ROLE_MISSING', {
        message: `Role "${name}" does not exist, so nothing can be said about what tenant work may bypass; the policy checks above assumed every policy applies to it.`,
        fix: `CREATE ROLE ${r} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE (or run Tenantry's setup(), which creates it)`,
      }),
    ];
  }
  const out: Finding[] = [];
  const { rows } = await client.query<{
    role: string;
    self: boolean;
    superuser: boolean;
    bypassrls: boolean;
    owned: string[];
    via: string[];
  }>(
    `SELECT r.rolname AS role, r.oid = $1 AS self, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
            ARRAY(SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p')
                     AND (c.relrowsecurity OR c.oid = ANY ($2::oid[]))
                   ORDER BY 1) AS owned,
            ARRAY(SELECT p.rolname::text FROM pg_auth_members m JOIN pg_roles p ON p.oid = m.roleid
                   WHERE m.member = $1 AND pg_has_role(p.oid, r.oid, 'MEMBER')
                   ORDER BY 1) AS via
       FROM pg_roles r
      WHERE pg_has_role($1, r.oid, 'MEMBER')
      ORDER BY r.oid <> $1, r.rolname`,
    [role.oid, tenantTables.map((t) => t.oid)],
  );
  for (const row of rows) {
    const powers = [
      row.superuser ? 'SUPERUSER' : '',
      row.bypassrls ? 'BYPASSRLS' : '',
      row.owned.length ? `owner of ${few(row.owned)}` : '',
    ].filter(Boolean);
    if (powers.length === 0) continue;
    if (row.self) {
      if (row.superuser || row.bypassrls) {
        out.push(
          finding('RUNTIME_ROLE_CAN_BYPASS_RLS', {
            message: `Role "${name}" is ${powers.filter((p) => !p.startsWith('owner')).join(' and ')}: row-level security does not apply to it, so tenant work through it sees every tenant's rows. Tenantry refuses to use it.`,
            fix: `ALTER ROLE ${r} NOSUPERUSER NOBYPASSRLS`,
          }),
        );
      }
      if (row.owned.length) {
        out.push(
          finding('RUNTIME_ROLE_OWNS_TABLES', {
            message: `Role "${name}" owns ${few(row.owned)}: an owner may ALTER the table to drop FORCE or disable row-level security, so SQL injected into tenant work could too.`,
            fix: row.owned.map((table) => `ALTER TABLE ${table} OWNER TO <owner role>;`).join(' '),
          }),
        );
      }
      continue;
    }
    // A superuser counts as a member of every role; its own finding already says it all.
    if (role.superuser) continue;
    out.push(
      finding('RUNTIME_ROLE_MEMBER_OF_PRIVILEGED_ROLE', {
        message: `Role "${name}" is a member of "${row.role}"${row.via.includes(row.role) ? '' : ` (through ${row.via.map((v) => `"${v}"`).join(', ')})`}, which is ${powers.join(' and ')}: a member can SET ROLE to it and bypass row-level security.`,
        fix: row.via.map((v) => `REVOKE ${quoteIdent(v)} FROM ${r};`).join(' '),
      }),
    );
  }
  // A superuser can read everything anyway; its finding above says so.
  if (role.superuser) return out;

  // Effective privileges (has_*_privilege counts what membership brings), split into what
  // was granted to the role itself or PUBLIC and which role memberships bring the rest,
  // so the fix revokes the right thing.
  const { rows: reach } = await client.query<{ name: string; schema: boolean; direct: boolean; via: string[] }>(
    `SELECT c.relname AS name, false AS schema,
            c.relowner = $1 OR EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee IN ($1, 0)) AS direct,
            ARRAY(SELECT p.rolname::text FROM pg_auth_members m JOIN pg_roles p ON p.oid = m.roleid
                   WHERE m.member = $1 AND has_table_privilege(p.oid, c.oid, $3) ORDER BY 1) AS via
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND has_table_privilege($1, c.oid, $3)
     UNION ALL
     SELECT n.nspname, true,
            n.nspowner = $1 OR EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a
                                        WHERE a.grantee IN ($1, 0) AND a.privilege_type = 'CREATE'),
            ARRAY(SELECT p.rolname::text FROM pg_auth_members m JOIN pg_roles p ON p.oid = m.roleid
                   WHERE m.member = $1 AND has_schema_privilege(p.oid, n.oid, 'CREATE') ORDER BY 1)
       FROM pg_namespace n
      WHERE n.nspname = $2 AND has_schema_privilege($1, n.oid, 'CREATE')
      ORDER BY 2, 1`,
    [role.oid, CONTROL_SCHEMA, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'],
  );
  if (reach.length > 0) {
    const tables = reach.filter((x) => !x.schema);
    const schema = reach.find((x) => x.schema);
    const via = [...new Set(reach.flatMap((x) => x.via))];
    const what = [
      tables.length ? `privileges on ${few(tables.map((x) => `${CONTROL_SCHEMA}.${x.name}`))}` : '',
      schema
        ? `CREATE in schema "${CONTROL_SCHEMA}" (it could plant objects next to the registry and the context key)`
        : '',
    ].filter(Boolean);
    const directTables = tables.filter((x) => x.direct).map((x) => qualified(CONTROL_SCHEMA, x.name));
    const fix = [
      directTables.length ? `REVOKE ALL ON TABLE ${directTables.join(', ')} FROM ${r}, PUBLIC;` : '',
      schema?.direct ? `REVOKE CREATE ON SCHEMA ${quoteIdent(CONTROL_SCHEMA)} FROM ${r}, PUBLIC;` : '',
      ...via.map((v) => `REVOKE ${quoteIdent(v)} FROM ${r};`),
    ].filter(Boolean);
    out.push(
      finding('RUNTIME_ROLE_READS_CONTROL_PLANE', {
        message: `Role "${name}" can reach the control plane: ${what.join('; ')}${via.length ? ` (partly or wholly through its membership in ${via.map((v) => `"${v}"`).join(', ')})` : ''}. Tenant work must not reach tenants, placements, keys or the audit log.`,
        fix: fix.join(' '),
      }),
    );
  }
  return out;
}
