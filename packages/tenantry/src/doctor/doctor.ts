import type { ClientBase, Pool } from 'pg';
import { type ContextDialect, postgresDialect } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { checkCitusPeer } from './citus-checks.ts';
import type { DoctorReport, Finding } from './finding.ts';
import { inspectCatalog } from './inspect.ts';
import { checkKeys } from './key-checks.ts';
import { checkPolicies } from './policy-checks.ts';
import { checkRuntimeRole, findRuntimeRole } from './role-checks.ts';
import { checkTable } from './table-checks.ts';

/** Options of {@link runDoctor}. */
export interface DoctorOptions {
  /** Schemas whose tables are tenant tables (e.g. `['public']`). */
  readonly schemas: readonly string[];
  /** The role tenant work connects as (e.g. `tenantry_runtime`). */
  readonly runtimeRole: string;
  /** Name of the tenant column; default `tenant_id`. */
  readonly tenantColumn?: string;
  /** Dialect whose policy predicate the fixes propose; default {@link postgresDialect}. */
  readonly dialect?: ContextDialect;
}

function validate(options: DoctorOptions): void {
  const { schemas, runtimeRole, tenantColumn } = options ?? {};
  if (!Array.isArray(schemas) || schemas.length === 0 || !schemas.every((s) => typeof s === 'string' && s !== '')) {
    throw new TenantryError('USAGE_ERROR', 'doctor: schemas must be a non-empty list of schema names');
  }
  if (typeof runtimeRole !== 'string' || runtimeRole === '') {
    throw new TenantryError('USAGE_ERROR', 'doctor: runtimeRole must be a role name');
  }
  if (tenantColumn !== undefined && (typeof tenantColumn !== 'string' || tenantColumn === '')) {
    throw new TenantryError('USAGE_ERROR', 'doctor: tenantColumn must be a column name');
  }
}

/**
 * Inspects a PostgreSQL database for gaps in tenant isolation and returns them as
 * findings, each with the SQL that fixes it. Reads the system catalog only (no table is
 * scanned, nothing is changed), so it is safe on production; run it on the admin (owner
 * or superuser) connection, which sees every table, policy and role.
 *
 * **Tenant tables** are the ordinary and partitioned tables of `schemas` (partitions are
 * checked through their parent), except **global tables**: a table whose comment starts
 * with `tenantry:global` holds data shared by all tenants (countries, plans, feature
 * catalogs) and needs no tenant_id, RLS or policy. Foreign keys to it stay single-column.
 *
 * ```sql
 * COMMENT ON TABLE public.countries IS 'tenantry:global — ISO 3166 reference data';
 * ```
 *
 * Checked on every tenant table: tenant_id present and NOT NULL; RLS enabled and forced;
 * policies (for the runtime role) that exist, read and check new rows by tenant_id and
 * let PostgreSQL use an index on it; tenant_id in every primary key, unique constraint,
 * unique index and foreign key to a tenant table, and leading the indexes; full-text
 * indexes RLS leaves usable; partitions not reachable around the policy. Then the runtime
 * role: exists, cannot bypass RLS (itself or through a role it belongs to), owns no such
 * table, and cannot reach the control plane (schema `tenantry`). With the Citus dialect, the
 * peer binding (docs/citus.md): a peer identity configured, not the `'network'` opt-out
 * (a warning), and no Citus function that sends the runtime role's SQL to the nodes. Severities are in
 * `FINDINGS` (finding.ts); `ok` is false when any finding is an `error`.
 *
 * @example
 * ```ts
 * const report = await runDoctor(tenantry.adminPool, { schemas: ['public'], runtimeRole: 'tenantry_runtime' });
 * for (const f of report.findings) console.log(`${f.severity} ${f.code} ${f.table ?? ''}\n  ${f.message}\n  fix: ${f.fix}`);
 * if (!report.ok) process.exitCode = 1;
 * ```
 */
export async function runDoctor(client: Pool | ClientBase, options: DoctorOptions): Promise<DoctorReport> {
  validate(options);
  const column = options.tenantColumn ?? 'tenant_id';
  const dialect = options.dialect ?? postgresDialect;
  const runtime = await findRuntimeRole(client, options.runtimeRole);
  const snapshot = await inspectCatalog(client, {
    schemas: options.schemas,
    tenantColumn: column,
    runtimeOid: runtime?.oid ?? null,
  });
  const tenantTables = new Map(snapshot.tables.map((t) => [t.oid, t]));
  const settings = { column, runtimeRole: options.runtimeRole, dialect };
  const findings: Finding[] = [];
  for (const table of snapshot.tables) {
    const mine = <T extends { tableOid: number }>(items: readonly T[]) => items.filter((i) => i.tableOid === table.oid);
    findings.push(
      ...checkTable(
        table,
        snapshot.exposedPartitions.filter((p) => p.rootOid === table.oid),
        settings,
      ),
      ...checkPolicies(table, mine(snapshot.policies), snapshot.expressions, settings),
      ...checkKeys(table, mine(snapshot.constraints), mine(snapshot.indexes), tenantTables, settings),
    );
  }
  findings.push(...(await checkRuntimeRole(client, options.runtimeRole, runtime, snapshot.tables)));
  if (dialect.name === 'citus') findings.push(...(await checkCitusPeer(client, options.runtimeRole)));
  return Object.freeze({
    ok: findings.every((f) => f.severity !== 'error'),
    findings: Object.freeze(findings),
    tablesChecked: snapshot.tables.length,
  });
}
