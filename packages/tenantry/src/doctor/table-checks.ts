import type { ContextDialect } from '../context/context-dialect.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';
import { type Finding, finding } from './finding.ts';
import type { ExposedPartition, TableInfo } from './inspect.ts';

/**
 * The tenant column and row-level security switches of one tenant table, and the
 * partitions under it that the runtime role can reach around the policy.
 */
export function checkTable(
  table: TableInfo,
  partitions: readonly ExposedPartition[],
  options: { column: string; runtimeRole: string; dialect: ContextDialect },
): Finding[] {
  const { column, runtimeRole, dialect } = options;
  const t = table.label;
  const col = quoteIdent(column);
  const out: Finding[] = [];
  if (table.tenantAttnum === null) {
    out.push(
      finding('MISSING_TENANT_ID', {
        table: t,
        message: `${t} has no ${column} column, so nothing ties its rows to a tenant. If it is shared reference data, mark it global instead.`,
        // Added nullable first: existing rows have no tenant until backfilled.
        fix:
          `ALTER TABLE ${table.sql} ADD COLUMN ${col} uuid DEFAULT ${dialect.currentTenantExpression}; ` +
          `-- backfill ${column}, then: ALTER TABLE ${table.sql} ALTER COLUMN ${col} SET NOT NULL ` +
          `-- or, for a global table: COMMENT ON TABLE ${table.sql} IS ${quoteLiteral('tenantry:global')}`,
      }),
    );
  } else if (!table.tenantNotNull) {
    out.push(
      finding('TENANT_ID_NULLABLE', {
        table: t,
        message: `${t}.${column} allows NULL: such a row belongs to no tenant, so no tenant can see or purge it, and only the policy's WITH CHECK stops the runtime role from writing one.`,
        fix: `ALTER TABLE ${table.sql} ALTER COLUMN ${col} SET NOT NULL`,
      }),
    );
  }
  if (!table.rls) {
    out.push(
      finding('RLS_NOT_ENABLED', {
        table: t,
        message: `${t} does not have row-level security enabled: its policies are ignored and the runtime role sees every tenant's rows.`,
        fix: `ALTER TABLE ${table.sql} ENABLE ROW LEVEL SECURITY`,
      }),
    );
  }
  if (!table.forced) {
    out.push(
      finding('RLS_NOT_FORCED', {
        table: t,
        message: `${t} does not FORCE row-level security: its owner (and whoever can SET ROLE to it, such as a migration or a view owned by it) bypasses the policies.`,
        fix: `ALTER TABLE ${table.sql} FORCE ROW LEVEL SECURITY`,
      }),
    );
  }
  for (const p of partitions) {
    out.push(
      finding('PARTITION_BYPASSES_POLICY', {
        table: t,
        message: `${p.label}, a partition of ${t}, has no row-level security, yet role "${runtimeRole}" holds privileges on it: a query naming the partition skips the policies of ${t}.`,
        fix: `REVOKE ALL ON TABLE ${p.sql} FROM ${quoteIdent(runtimeRole)}, PUBLIC`,
      }),
    );
  }
  return out;
}
