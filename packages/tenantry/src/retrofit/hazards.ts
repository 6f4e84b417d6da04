import type { Queryable } from '../doctor/inspect.ts';
import type { SourceSchema, SourceTable } from './source-schema.ts';

/**
 * What a retrofit cannot make safe by itself: objects that would read or write across
 * tenants once the tables are shared, or that change meaning. Each is reported in the plan
 * with a fix; the plan changes none of them.
 */
export const HAZARDS = {
  VIEW_BYPASSES_RLS: 'A view without security_invoker reads its tables as the view owner, not through the policy.',
  MATERIALIZED_VIEW: 'A materialized view stores every tenant’s rows and has no row-level security.',
  SECURITY_DEFINER_FUNCTION: 'A SECURITY DEFINER function reads tenant tables with its owner’s rights.',
  TRIGGER_WRITES_ACROSS_TABLES: 'A trigger writes to other tables: those rows need the same tenant.',
  RULE_WRITES_ACROSS_TABLES: 'A rule rewrites a statement into writes on other tables.',
  PARTITIONED_TABLE: 'Partitions are tables of their own: queried by name, they skip the parent’s policy.',
  SHARED_SEQUENCE: 'A sequence (serial or identity) is shared by all tenants: ids reveal others’ activity.',
  UNIQUE_BECOMES_PER_TENANT: 'A unique constraint becomes unique per tenant, no longer across the database.',
  EXTENSION_TABLE: 'A table belongs to an extension: it is left alone and marked global.',
  LARGE_OBJECTS: 'Large objects have no row-level security: any role with access reads every tenant’s.',
  UNDECLARED_REFERENCE: 'A column names another tenant table by convention but has no foreign key.',
} as const;

/** A stable code of {@link HAZARDS}. */
export type HazardCode = keyof typeof HAZARDS;

/** One hazard, naming the object and the fix. */
export interface Hazard {
  readonly code: HazardCode;
  /** The object concerned (`schema.name`, a function signature, or `database`). */
  readonly object: string;
  readonly message: string;
  readonly fix: string;
}

const WRITE = /\b(insert\s+into|update|delete\s+from)\s+(?:only\s+)?(?:"?[\w$]+"?\s*\.\s*)?"?([\w$]+)"?/gi;

/** The tables a piece of SQL or PL/pgSQL writes to (by name, lower-cased). */
function writtenTables(source: string): string[] {
  return [...new Set([...source.matchAll(WRITE)].map((m) => (m[2] as string).toLowerCase()))];
}

function mentions(source: string, table: string): boolean {
  return new RegExp(`(^|[^\\w$])"?${table.replace(/\$/g, '\\$')}"?([^\\w$]|$)`, 'i').test(source);
}

/** `customer_id` → customer, customers; `category_id` → category, categories. */
function namesFor(column: string): string[] {
  const base = column.slice(0, -3);
  return [base, `${base}s`, `${base}es`, base.endsWith('y') ? `${base.slice(0, -1)}ies` : ''].filter(Boolean);
}

/**
 * Finds the hazards of retrofitting `source` with `tenant` (the tables that become tenant
 * tables); the catalog queries are read-only.
 */
export async function findHazards(
  client: Queryable,
  source: SourceSchema,
  tenant: readonly SourceTable[],
): Promise<Hazard[]> {
  const out: Hazard[] = [];
  const oids = tenant.map((t) => t.oid);
  const byOid = new Map(tenant.map((t) => [t.oid, t]));
  const names = new Map(tenant.map((t) => [t.name.toLowerCase(), t]));

  const [views, functions, triggers, rules, largeObjects] = await Promise.all([
    client.query<{ label: string; kind: 'v' | 'm'; invoker: boolean; tables: string[] }>(
      `SELECT vn.nspname || '.' || v.relname AS label, v.relkind AS kind,
              coalesce(array_to_string(v.reloptions, ',') ~* 'security_invoker=(true|on|yes|1)', false) AS invoker,
              array_agg(DISTINCT t.relname::text ORDER BY t.relname::text) AS tables
         FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
         JOIN pg_rewrite rw ON rw.ev_class = v.oid
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                         AND d.refclassid = 'pg_class'::regclass
         JOIN pg_class t ON t.oid = d.refobjid
        WHERE v.relkind IN ('v', 'm') AND t.oid = ANY ($1::oid[]) AND t.oid <> v.oid
        GROUP BY 1, 2, 3 ORDER BY 1`,
      [oids],
    ),
    client.query<{ signature: string; source: string }>(
      `SELECT p.oid::regprocedure::text AS signature, p.prosrc AS source
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenantry', 'tenantry_context')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                             AND d.objid = p.oid AND d.deptype = 'e')
        ORDER BY 1`,
    ),
    client.query<{ table_oid: number; name: string; fn: string; source: string }>(
      `SELECT tg.tgrelid AS table_oid, tg.tgname AS name, p.oid::regprocedure::text AS fn, p.prosrc AS source
         FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
        WHERE NOT tg.tgisinternal AND tg.tgparentid = 0 AND tg.tgrelid = ANY ($1::oid[])
        ORDER BY tg.tgrelid, tg.tgname`,
      [oids],
    ),
    client.query<{ table_oid: number; name: string; definition: string }>(
      `SELECT r.ev_class AS table_oid, r.rulename AS name, pg_get_ruledef(r.oid) AS definition
         FROM pg_rewrite r WHERE r.ev_class = ANY ($1::oid[]) AND r.rulename <> '_RETURN' ORDER BY 1, 2`,
      [oids],
    ),
    client.query<{ count: string }>('SELECT count(*)::text AS count FROM pg_largeobject_metadata'),
  ]);

  for (const v of views.rows) {
    if (v.kind === 'm') {
      out.push({
        code: 'MATERIALIZED_VIEW',
        object: v.label,
        message: `${v.label} is a materialized view over ${v.tables.join(', ')}: it stores every tenant's rows and row-level security cannot apply to it.`,
        fix: `Replace it with a view WITH (security_invoker = true), or add tenant_id to its query and read it only through such a view; never grant it to the runtime role.`,
      });
    } else if (!v.invoker) {
      out.push({
        code: 'VIEW_BYPASSES_RLS',
        object: v.label,
        message: `${v.label} reads ${v.tables.join(', ')} with its owner's rights: through it, the policy of the querying role does not apply.`,
        fix: `ALTER VIEW ${v.label} SET (security_invoker = true);`,
      });
    }
  }
  for (const f of functions.rows) {
    const read = tenant.filter((t) => mentions(f.source, t.name)).map((t) => t.label);
    if (read.length === 0) continue;
    out.push({
      code: 'SECURITY_DEFINER_FUNCTION',
      object: f.signature,
      message: `${f.signature} is SECURITY DEFINER and uses ${read.join(', ')}: it runs with its owner's rights, which may bypass row-level security or see every tenant.`,
      fix: `ALTER FUNCTION ${f.signature} SECURITY INVOKER; (or filter by tenantry_context.current_tenant_id() inside it, and own it by a role without BYPASSRLS)`,
    });
  }
  for (const tg of triggers.rows) {
    const own = byOid.get(tg.table_oid) as SourceTable;
    const targets = writtenTables(tg.source).filter((n) => n !== own.name.toLowerCase());
    if (targets.length === 0) continue;
    const global = targets.filter((n) => !names.has(n));
    out.push({
      code: 'TRIGGER_WRITES_ACROSS_TABLES',
      object: `${own.label}.${tg.name}`,
      message: `Trigger ${tg.name} on ${own.label} (${tg.fn}) writes to ${targets.join(', ')}${global.length ? `; ${global.join(', ')} is not a tenant table, so those rows would be shared by all tenants` : ''}.`,
      fix: `Make the rows it writes carry NEW.tenant_id (the column default does this for the runtime role) and keep ${tg.fn} SECURITY INVOKER, so the target's policy checks them.`,
    });
  }
  for (const r of rules.rows) {
    const own = byOid.get(r.table_oid) as SourceTable;
    const targets = writtenTables(r.definition.replace(/^CREATE RULE[\s\S]*?\bDO\b/i, '')).filter(
      (n) => n !== own.name.toLowerCase(),
    );
    if (targets.length === 0) continue;
    out.push({
      code: 'RULE_WRITES_ACROSS_TABLES',
      object: `${own.label}.${r.name}`,
      message: `Rule ${r.name} on ${own.label} writes to ${targets.join(', ')}: rules run with the table owner's rights on the rewritten statement.`,
      fix: `Replace the rule with a trigger that copies NEW.tenant_id: DROP RULE ${r.name} ON ${own.label};`,
    });
  }
  if (Number(largeObjects.rows[0]?.count ?? 0) > 0) {
    out.push({
      code: 'LARGE_OBJECTS',
      object: 'database',
      message: `The database holds ${largeObjects.rows[0]?.count} large objects: pg_largeobject has no row-level security, so they cannot be isolated by tenant.`,
      fix: 'Move their contents into a bytea column of a tenant table (or object storage keyed by tenant); keep lo_compat_privileges off and grant no large object to the runtime role.',
    });
  }
  for (const t of tenant) {
    if (t.kind === 'p') {
      out.push({
        code: 'PARTITIONED_TABLE',
        object: t.label,
        message: `${t.label} is partitioned (${t.partitions.map((p) => p.label).join(', ') || 'no partitions yet'}): the policy is on the parent only, and its keys are rebuilt under a lock (no concurrent build on a partitioned table).`,
        fix: `Grant nothing on the partitions (the plan grants the parent only); run the plan's key steps for ${t.label} at a quiet time, or detach old partitions first to shorten them.`,
      });
    }
    for (const s of t.sequences) {
      out.push({
        code: 'SHARED_SEQUENCE',
        object: s.sql,
        message: `${t.label}.${s.column} takes its values from ${s.sql}, shared by all tenants: a tenant can estimate the others' activity from the gaps between its ids.`,
        fix: `Acceptable while ids stay internal; otherwise expose another identifier (uuid), or give ${t.label} a uuid key.`,
      });
    }
    for (const c of t.columns) {
      if (!c.name.endsWith('_id') || c.name.length <= 3) continue;
      const ref = namesFor(c.name)
        .map((n) => names.get(n))
        .find((x) => x !== undefined);
      if (!ref || ref.oid === t.oid) continue;
      const declared = source.constraints.some(
        (k) => k.tableOid === t.oid && k.type === 'f' && k.columns.includes(c.name),
      );
      if (declared) continue;
      out.push({
        code: 'UNDECLARED_REFERENCE',
        object: `${t.label}.${c.name}`,
        message: `${t.label}.${c.name} looks like a reference to ${ref.label} but has no foreign key: nothing stops it from naming another tenant's row.`,
        fix: `ALTER TABLE ${t.sql} ADD FOREIGN KEY (tenant_id, ${c.name}) REFERENCES ${ref.sql} (tenant_id, <key>) NOT VALID; then VALIDATE CONSTRAINT.`,
      });
    }
  }
  for (const c of source.constraints) {
    if ((c.type !== 'u' && c.type !== 'x') || !byOid.has(c.tableOid)) continue;
    const t = byOid.get(c.tableOid) as SourceTable;
    out.push(perTenant(t, c.name, c.definition));
  }
  for (const i of source.indexes) {
    if (!i.unique || i.constraint !== null || !byOid.has(i.tableOid)) continue;
    out.push(perTenant(byOid.get(i.tableOid) as SourceTable, i.name, i.definition));
  }
  return out;
}

function perTenant(t: SourceTable, name: string, definition: string): Hazard {
  return {
    code: 'UNIQUE_BECOMES_PER_TENANT',
    object: `${t.label}.${name}`,
    message: `${name} on ${t.label} (${definition}) will hold per tenant: two tenants may then have the same value. The plan rewrites it with tenant_id first.`,
    fix: `If the value must stay unique across tenants (a login e-mail), keep it in a global table of its own; otherwise nothing to do.`,
  };
}
