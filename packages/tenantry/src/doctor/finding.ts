/**
 * Every gap `doctor` can report, with the severity it usually carries and what it means.
 * An `error` breaks tenant isolation or an invariant of DESIGN.md (or makes the table
 * unusable for the runtime role); a `warning` costs performance or defense in depth.
 * Two codes carry either severity, depending on what PostgreSQL would actually do:
 * `POLICY_MISSING_WITH_CHECK` (see its summary) and `INDEX_NOT_LED_BY_TENANT_ID` (never an
 * error today). Codes are stable: the CLI prints them and CI scripts match on them.
 */
export const FINDINGS = {
  MISSING_TENANT_ID: { severity: 'error', summary: 'A tenant table has no tenant_id column.' },
  TENANT_ID_NULLABLE: { severity: 'error', summary: 'tenant_id allows NULL: a row can belong to no tenant.' },
  RLS_NOT_ENABLED: { severity: 'error', summary: 'Row-level security is not enabled: policies are ignored.' },
  RLS_NOT_FORCED: { severity: 'error', summary: "Row-level security is not FORCEd: the table's owner bypasses it." },
  NO_POLICY: {
    severity: 'error',
    summary: 'No permissive policy applies to the runtime role: PostgreSQL denies every row.',
  },
  POLICY_MISSING_USING: {
    severity: 'error',
    summary: 'No policy gives SELECT a USING expression: the runtime role reads no rows.',
  },
  POLICY_MISSING_WITH_CHECK: {
    severity: 'warning',
    summary:
      'A FOR ALL/UPDATE policy has no WITH CHECK, so PostgreSQL checks new rows against USING (warning); ' +
      'or nothing checks INSERTs at all although the runtime role may insert (error: every insert fails).',
  },
  POLICY_IGNORES_TENANT_ID: {
    severity: 'error',
    summary: 'A permissive policy never looks at tenant_id: permissive policies are OR-ed, so it opens the table.',
  },
  POLICY_DEFEATS_INDEX: {
    severity: 'error',
    summary:
      'The policy gives the planner no `tenant_id = <value>` index condition (OR, cast of tenant_id, VOLATILE ' +
      'call, correlated sub-select, IN (SELECT …)): every statement reads every tenant’s rows.',
  },
  POLICY_FUNCTION_PER_ROW: {
    severity: 'warning',
    summary:
      'The policy calls a non-built-in function outside a scalar sub-select: it runs once per row whenever ' +
      'the policy is a filter rather than an index condition. `(SELECT f())` runs once per statement.',
  },
  NO_TENANT_INDEX: { severity: 'error', summary: 'No index is led by tenant_id: every statement scans the table.' },
  PK_WITHOUT_TENANT_ID: {
    severity: 'error',
    summary: 'The primary key does not include tenant_id: uniqueness spans tenants.',
  },
  UNIQUE_WITHOUT_TENANT_ID: {
    severity: 'error',
    summary:
      'A unique (or exclusion) constraint or unique index does not include tenant_id: one tenant can ' +
      'detect another’s values through conflicts.',
  },
  FK_WITHOUT_TENANT_ID: {
    severity: 'error',
    summary:
      'A foreign key to a tenant table does not pair tenant_id with tenant_id: a row can point at another tenant’s row.',
  },
  INDEX_NOT_LED_BY_TENANT_ID: {
    severity: 'warning',
    summary: 'An index does not start with tenant_id: its scans walk other tenants’ entries.',
  },
  FULL_TEXT_INDEX_UNUSABLE: {
    severity: 'warning',
    summary: 'A GIN/GiST full-text index without tenant_id: under RLS the runtime role never uses it.',
  },
  FULL_TEXT_SEARCH_FILTERED: {
    severity: 'warning',
    summary: 'A full-text index led by tenant_id, but `@@` is not LEAKPROOF: searches read every row of the tenant.',
  },
  PARTITION_BYPASSES_POLICY: {
    severity: 'error',
    summary:
      'The runtime role has privileges on a partition without row-level security: querying the partition ' +
      'directly skips the parent’s policies.',
  },
  RUNTIME_ROLE_MISSING: { severity: 'error', summary: 'The runtime role does not exist.' },
  RUNTIME_ROLE_CAN_BYPASS_RLS: { severity: 'error', summary: 'The runtime role is SUPERUSER or BYPASSRLS.' },
  RUNTIME_ROLE_OWNS_TABLES: {
    severity: 'error',
    summary: 'The runtime role owns a tenant table or a table with row-level security: owners can turn RLS off.',
  },
  RUNTIME_ROLE_MEMBER_OF_PRIVILEGED_ROLE: {
    severity: 'error',
    summary:
      'The runtime role is a member of a role that is SUPERUSER, BYPASSRLS or owns such tables: it can SET ROLE to it.',
  },
  RUNTIME_ROLE_READS_CONTROL_PLANE: {
    severity: 'error',
    summary: 'The runtime role has a privilege on a control-plane table (schema tenantry) or may create objects there.',
  },
  CITUS_PEER_IDENTITY_MISSING: {
    severity: 'error',
    summary: 'Citus: no peer identity configured, so nodes refuse every tenant context that comes from another node.',
  },
  CITUS_PEER_BINDING_NETWORK: {
    severity: 'warning',
    summary:
      "Citus: peerBinding 'network': a context replayed with its transaction id on a connection straight to a node is accepted; only pg_hba.conf stops it.",
  },
  CITUS_RUNTIME_ROLE_SENDS_SQL: {
    severity: 'error',
    summary:
      'Citus: the runtime role may call a function that sends its SQL to the nodes over Citus’s own connections.',
  },
} as const satisfies Record<string, { severity: Severity; summary: string }>;

/** How bad a finding is: an `error` makes {@link DoctorReport.ok} false. */
export type Severity = 'error' | 'warning';

/** A stable code of {@link FINDINGS}. */
export type FindingCode = keyof typeof FINDINGS;

/** One gap in tenant isolation, with what to run to close it. */
export interface Finding {
  readonly code: FindingCode;
  readonly severity: Severity;
  /** `schema.table` (unquoted) when the finding is about one table. */
  readonly table?: string;
  /** What is wrong and why it matters, naming the table (and policy, index or key). */
  readonly message: string;
  /** The SQL (or, where a choice is yours, the action) that fixes it. */
  readonly fix: string;
}

/** What {@link runDoctor} found. */
export interface DoctorReport {
  /** True when no finding has severity `error`. */
  readonly ok: boolean;
  readonly findings: readonly Finding[];
  /** Number of tenant tables inspected (global tables and partitions excluded). */
  readonly tablesChecked: number;
}

/** A finding with the severity its code usually carries (see {@link FINDINGS}). */
export function finding(
  code: FindingCode,
  fields: { table?: string; message: string; fix: string; severity?: Severity },
): Finding {
  const { severity = FINDINGS[code].severity, ...rest } = fields;
  return Object.freeze({ code, severity, ...rest });
}
