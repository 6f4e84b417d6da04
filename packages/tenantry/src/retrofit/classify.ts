import { TenantryError } from '../errors/catalog.ts';
import type { Hazard } from './hazards.ts';
import type { SourceSchema, SourceTable } from './source-schema.ts';

/** Which tables become tenant tables, which stay global, and why. */
export interface Classification {
  readonly tenant: readonly SourceTable[];
  readonly global: readonly { readonly table: SourceTable; readonly reason: string }[];
  /**
   * Tables that look like reference data — no path to a tenant-owned row: every foreign
   * key they have leads to a global table, and other tables point at them — but were not
   * named global. They stay tenant tables (the safe side: a copy per tenant, never a leak)
   * until confirmed with `global`.
   */
  readonly candidates: readonly SourceTable[];
  /** Tables that already have the tenant column: left to `doctor`. */
  readonly skipped: readonly SourceTable[];
  readonly hazards: readonly Hazard[];
}

/**
 * Splits the schema's tables into tenant and global tables. Global are the tables named
 * in `globals`, those already marked `tenantry:global`, and extension-owned tables (an
 * extension manages their rows; reported as a hazard). A global table may not reference a
 * tenant table: its rows would point into one tenant's data.
 */
export function classifyTables(source: SourceSchema, globals: readonly string[]): Classification {
  const byName = new Map(source.tables.map((t) => [t.name, t]));
  const unknown = globals.filter((g) => !byName.has(g));
  if (unknown.length > 0) {
    throw new TenantryError('INVALID_INPUT', `global: no table ${unknown.join(', ')} in schema ${source.schema}`);
  }
  const global: { table: SourceTable; reason: string }[] = [];
  const tenant: SourceTable[] = [];
  const skipped: SourceTable[] = [];
  const hazards: Hazard[] = [];
  for (const t of source.tables) {
    if (t.extension) {
      global.push({ table: t, reason: `belongs to extension ${t.extension}` });
      hazards.push({
        code: 'EXTENSION_TABLE',
        object: t.label,
        message: `${t.label} belongs to extension ${t.extension}: the extension creates and updates it, so it cannot get a tenant column; it is marked global.`,
        fix: `If its rows are per tenant, move them to a table of your own; consider ALTER EXTENSION ${t.extension} SET SCHEMA <another schema>.`,
      });
    } else if (globals.includes(t.name)) global.push({ table: t, reason: 'named global' });
    else if (t.markedGlobal) global.push({ table: t, reason: 'already marked tenantry:global' });
    else if (t.hasTenantColumn) skipped.push(t);
    else tenant.push(t);
  }
  const globalOids = new Set(global.map((g) => g.table.oid));
  const tenantOids = new Set(tenant.map((t) => t.oid));
  const bad = source.constraints.filter(
    (c) => c.type === 'f' && globalOids.has(c.tableOid) && c.refOid !== null && tenantOids.has(c.refOid),
  );
  if (bad.length > 0) {
    const names = bad.map((c) => `${source.tables.find((t) => t.oid === c.tableOid)?.label}.${c.name}`);
    throw new TenantryError(
      'RETROFIT_GLOBAL_REFERENCES_TENANT',
      `${names.join(', ')}: a global table cannot point at a tenant table; make it a tenant table or drop the key`,
    );
  }
  const fks = source.constraints.filter((c) => c.type === 'f' && c.refOid !== c.tableOid);
  const candidates = tenant.filter((t) => {
    const out = fks.filter((c) => c.tableOid === t.oid);
    const referenced = fks.some((c) => c.refOid === t.oid);
    return referenced && out.every((c) => c.refOid !== null && globalOids.has(c.refOid));
  });
  return { tenant, global, candidates, skipped, hazards };
}
