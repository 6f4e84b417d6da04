import { quoteIdent } from '../sql.ts';
import { type Finding, finding } from './finding.ts';
import { foreignKeyWithTenant, indexWithTenant, leadWith } from './fix-sql.ts';
import type { ConstraintInfo, IndexInfo, TableInfo } from './inspect.ts';

/**
 * A replacement for a primary key, unique or exclusion constraint, with tenant_id leading.
 * An exclusion constraint compares tenant_id with `=`, which GiST gets from btree_gist.
 */
function constraintWithTenant(table: TableInfo, c: ConstraintInfo, column: string): string {
  const name = quoteIdent(c.name);
  const exclusion = c.type === 'x';
  const def = leadWith(c.definition, column, 0, exclusion ? `${quoteIdent(column)} WITH =` : undefined);
  const alter = `ALTER TABLE ${table.sql} DROP CONSTRAINT ${name}, ADD CONSTRAINT ${name} ${def}`;
  return exclusion ? `CREATE EXTENSION IF NOT EXISTS btree_gist; ${alter}` : alter;
}

/** GIN keeps each column in its own entries, so column order means nothing to it. */
function leads(index: IndexInfo, attnum: number): boolean {
  return index.method === 'gin' ? index.keys.includes(attnum) : index.keys[0] === attnum;
}

/**
 * Keys and indexes of one tenant table: tenant_id in every primary key, unique constraint
 * and unique index (else uniqueness spans tenants and conflicts reveal other tenants'
 * values); foreign keys to tenant tables composite, tenant_id paired with tenant_id; an
 * index led by tenant_id; indexes led by it; full-text indexes that RLS leaves usable.
 * A foreign key to a table that is not a tenant table (global, or outside the inspected
 * schemas) is left alone.
 */
export function checkKeys(
  table: TableInfo,
  constraints: readonly ConstraintInfo[],
  indexes: readonly IndexInfo[],
  tenantTables: ReadonlyMap<number, TableInfo>,
  options: { column: string },
): Finding[] {
  const attnum = table.tenantAttnum;
  if (attnum === null) return []; // MISSING_TENANT_ID says it; every key would repeat it
  const { column } = options;
  const t = table.label;
  const out: Finding[] = [];

  for (const c of constraints) {
    if (c.type === 'f') {
      const ref = c.refOid === null ? undefined : tenantTables.get(c.refOid);
      if (!ref) continue;
      const paired = c.keys.some((k, i) => k === attnum && c.refKeys[i] === ref.tenantAttnum);
      if (paired) continue;
      out.push(
        finding('FK_WITHOUT_TENANT_ID', {
          table: t,
          message: `${t}: foreign key "${c.name}" (${c.definition}) does not pair ${column} with ${ref.label}.${column}, so a row can reference another tenant's row (and the check itself reveals that the row exists). The referenced table needs a unique key on (${column}, …).`,
          fix: `ALTER TABLE ${table.sql} DROP CONSTRAINT ${quoteIdent(c.name)}, ADD CONSTRAINT ${quoteIdent(c.name)} ${foreignKeyWithTenant(c.definition, column, c.columns, c.refColumns)}`,
        }),
      );
    } else if (!c.keys.includes(attnum)) {
      const what = c.type === 'p' ? 'primary key' : c.type === 'u' ? 'unique constraint' : 'exclusion constraint';
      out.push(
        finding(c.type === 'p' ? 'PK_WITHOUT_TENANT_ID' : 'UNIQUE_WITHOUT_TENANT_ID', {
          table: t,
          message: `${t}: ${what} "${c.name}" (${c.definition}) does not include ${column}: it is enforced across all tenants, so one tenant's insert fails on another tenant's value and learns that it exists.${c.type === 'p' ? ' Foreign keys that reference it must be recreated as composite keys too.' : ''}`,
          fix: constraintWithTenant(table, c, column),
        }),
      );
    }
  }

  const serving = indexes.some((i) => i.valid && !i.partial && i.method !== 'brin' && leads(i, attnum));
  if (!serving) {
    out.push(
      finding('NO_TENANT_INDEX', {
        table: t,
        message: `${t} has no index led by ${column}, so every statement under the tenant policy scans all tenants' rows. Usually the primary key should lead with it.`,
        fix: `CREATE INDEX ON ${table.sql} (${quoteIdent(column)})`,
      }),
    );
  }

  for (const i of indexes) {
    const has = i.keys.includes(attnum);
    if (leads(i, attnum) && i.fullTextUnderRls) {
      out.push(
        finding('FULL_TEXT_SEARCH_FILTERED', {
          table: t,
          message:
            `${t}: full-text index "${i.name}" serves the tenant condition, but \`@@\` (ts_match_vq) is not LEAKPROOF here, so under row-level security ` +
            `PostgreSQL tests it on every row of the tenant instead of using the index: search cost grows with the tenant's size. ` +
            `Declaring ts_match_vq LEAKPROOF lets the index serve the match (a security judgement: see docs/isolation-tiers.md).`,
          fix: `-- as a superuser, in this database (or Tenantry's leakproofFullTextSearch: true):\nALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF;`,
        }),
      );
    }
    if (i.method === 'brin' || leads(i, attnum)) continue; // BRIN summarises block ranges: no leading column
    const backed = i.constraint === null ? undefined : constraints.find((c) => c.name === i.constraint);
    // An index behind a constraint is rebuilt through the constraint, never dropped on its own.
    const rebuild = backed
      ? constraintWithTenant(table, backed, column)
      : `DROP INDEX ${i.sql}; ${indexWithTenant(i.definition, column)}`;
    if (!has && (backed || i.unique)) {
      if (!backed) {
        out.push(
          finding('UNIQUE_WITHOUT_TENANT_ID', {
            table: t,
            message: `${t}: unique index "${i.name}" (${i.definition}) does not include ${column}: it is enforced across all tenants, so one tenant's write fails on another tenant's value and learns that it exists.`,
            fix: rebuild,
          }),
        );
      }
      continue; // a constraint's own finding covers its index
    }
    if (!has && i.fullTextUnderRls) {
      out.push(
        finding('FULL_TEXT_INDEX_UNUSABLE', {
          table: t,
          message:
            `${t}: full-text index "${i.name}" (${i.method}) does not include ${column}, and under row-level security the runtime role never uses it: ` +
            `the policy must be applied first, \`@@\` is not LEAKPROOF so PostgreSQL will not run it as an index condition ahead of the policy, ` +
            `and the index has no ${column} to serve the policy's own condition. It costs every write and serves no read. ` +
            `With ${column} in it (${i.method === 'gist' ? 'btree_gist' : 'btree_gin'}) it serves the tenant condition and the \`@@\` match filters that tenant's rows; ` +
            `\`@@\` itself becomes an index condition only if a superuser marks ts_match_vq LEAKPROOF.`,
          fix: rebuild,
        }),
      );
      continue;
    }
    const which = backed ? `index "${i.name}", behind constraint "${backed.name}",` : `index "${i.name}"`;
    out.push(
      finding('INDEX_NOT_LED_BY_TENANT_ID', {
        table: t,
        message: `${t}: ${which} does not start with ${column} (${i.definition}): a tenant's scan of it walks every tenant's entries and leaves RLS to discard the others'${i.method === 'gin' ? '; and most GIN operators (jsonb @>, array @>, trigram) are not LEAKPROOF, so under RLS it may not be used at all' : ''}.`,
        fix: rebuild,
      }),
    );
  }
  return out;
}
