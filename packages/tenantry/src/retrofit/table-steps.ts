import type { ContextDialect } from '../context/context-dialect.ts';
import { POLICY_NAME } from '../context/context-dialect.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';
import { DEFAULT_TENANT_ID, derivedName, formatBytes, formatRows, LEGACY_POLICY, type StepDraft } from './plan-step.ts';
import type { SourceTable } from './source-schema.ts';

/** What the table steps need to know besides the table. */
export interface TableStepOptions {
  readonly column: string;
  readonly ownerRole: string;
  readonly runtimeRole: string;
  readonly legacyRoles: readonly string[];
  readonly dialect: ContextDialect;
}

const SHORT_LOCK = 'ACCESS EXCLUSIVE for a catalog change only, waited for at most lock_timeout';

/**
 * The tenant column of one table, in the order that never fails a write of the old
 * application: add it nullable with the default tenant as default (new rows get it), fill
 * the existing rows in short batches, then NOT NULL by way of a `CHECK … NOT VALID` that is
 * validated without blocking writes, which lets `SET NOT NULL` skip its scan.
 */
export function columnSteps(t: SourceTable, o: TableStepOptions): StepDraft[] {
  const col = quoteIdent(o.column);
  const check = derivedName(t.name, `_${o.column}_not_null`);
  const leaves = t.kind === 'p' ? t.partitions : [{ label: t.label, sql: t.sql, rows: t.rows, pages: t.pages }];
  return [
    {
      action: 'add-column',
      target: t.label,
      mode: 'transaction',
      why:
        `${t.label} becomes a tenant table. The column is added without a default, which PostgreSQL does without rewriting ` +
        `the table; the default then gives the old application's new rows the default tenant.`,
      estimate: `${formatRows(t.rows)}; no rewrite; ${SHORT_LOCK}`,
      sql: `ALTER TABLE ${t.sql} ADD COLUMN ${col} uuid;\nALTER TABLE ${t.sql} ALTER COLUMN ${col} SET DEFAULT ${DEFAULT_TENANT_ID}::uuid;`,
      rollback: `ALTER TABLE ${t.sql} DROP COLUMN ${col};`,
      weight: 1,
    },
    ...leaves.map(
      (leaf): StepDraft => ({
        action: 'backfill',
        target: leaf.label,
        mode: 'batched',
        why:
          `Existing rows of ${leaf.label} belong to the default tenant. Short transactions over ranges of pages hold row locks ` +
          `briefly; the final sweep catches rows the old application updated meanwhile. Triggers do not fire ` +
          `(session_replication_role = replica): this is not an application change. Edit the SET to map rows to other tenants.`,
        estimate: `${formatRows(leaf.rows)}, ${leaf.pages.toLocaleString('en-US')} pages; row locks only`,
        sql:
          `UPDATE ${leaf.sql} SET ${col} = ${DEFAULT_TENANT_ID}::uuid WHERE ${col} IS NULL AND ctid >= :'batch_start'::tid AND ctid < :'batch_end'::tid;\n` +
          `UPDATE ${leaf.sql} SET ${col} = ${DEFAULT_TENANT_ID}::uuid WHERE ${col} IS NULL;`,
        rollback: null,
        relation: leaf.sql,
        weight: Math.max(leaf.rows ?? leaf.pages * 50, 1),
      }),
    ),
    {
      action: 'not-null-check',
      target: t.label,
      mode: 'transaction',
      why: `Every row now has a tenant and every new one gets the default; NOT VALID checks new writes without scanning.`,
      estimate: `no scan; ${SHORT_LOCK}`,
      sql: `ALTER TABLE ${t.sql} ADD CONSTRAINT ${check} CHECK (${col} IS NOT NULL) NOT VALID;`,
      rollback: `ALTER TABLE ${t.sql} DROP CONSTRAINT ${check};`,
      weight: 1,
    },
    {
      action: 'validate-not-null',
      target: t.label,
      mode: 'transaction',
      why: `VALIDATE scans under SHARE UPDATE EXCLUSIVE, which lets the old application read and write meanwhile.`,
      estimate: `scans ${formatRows(t.rows)} (${formatBytes(t.bytes)}); writes not blocked`,
      sql: `ALTER TABLE ${t.sql} VALIDATE CONSTRAINT ${check};`,
      rollback: null,
      weight: Math.max(t.rows ?? 0, 1),
    },
    {
      action: 'set-not-null',
      target: t.label,
      mode: 'transaction',
      why: `With the validated check PostgreSQL sets NOT NULL without scanning (invariant: tenant_id NOT NULL); the check is then redundant.`,
      estimate: `no scan; ${SHORT_LOCK}`,
      sql: `ALTER TABLE ${t.sql} ALTER COLUMN ${col} SET NOT NULL;\nALTER TABLE ${t.sql} DROP CONSTRAINT ${check};`,
      rollback: `ALTER TABLE ${t.sql} ALTER COLUMN ${col} DROP NOT NULL;`,
      weight: 1,
    },
  ];
}

function legacyGrants(t: SourceTable, o: TableStepOptions, what: string): string[] {
  return o.legacyRoles.flatMap((r) => [
    `GRANT ${what} ON ${t.sql} TO ${quoteIdent(r)};`,
    ...t.sequences.map((s) => `GRANT USAGE, SELECT, UPDATE ON SEQUENCE ${s.sql} TO ${quoteIdent(r)};`),
  ]);
}

/**
 * Row-level security on one tenant table, in one transaction so no statement ever sees a
 * half-secured table: ownership to the owner role (its partitions too), grants for the
 * runtime role, Tenantry's policy, ENABLE and FORCE. The old application's roles lose
 * ownership, so they get grants and a policy of their own that keeps them on the default
 * tenant's rows until cutover; Tenantry's policy is for the runtime role until then,
 * since those roles may not call the context functions.
 */
export function secureStep(t: SourceTable, o: TableStepOptions): StepDraft {
  const owner = quoteIdent(o.ownerRole);
  const runtime = quoteIdent(o.runtimeRole);
  const col = quoteIdent(o.column);
  const predicate = o.dialect.policyPredicate(col, '');
  const legacy = o.legacyRoles.map(quoteIdent);
  const lines = [
    `ALTER TABLE ${t.sql} OWNER TO ${owner};`,
    ...t.partitions.map((p) => `ALTER TABLE ${p.sql} OWNER TO ${owner};`),
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ${t.sql} TO ${runtime};`,
    ...t.sequences.map((s) => `GRANT USAGE, SELECT ON SEQUENCE ${s.sql} TO ${runtime};`),
    ...legacyGrants(t, o, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
    ...(legacy.length
      ? [
          `CREATE POLICY ${quoteIdent(LEGACY_POLICY)} ON ${t.sql} TO ${legacy.join(', ')} USING (${col} = ${DEFAULT_TENANT_ID}::uuid) WITH CHECK (${col} = ${DEFAULT_TENANT_ID}::uuid);`,
        ]
      : []),
    `CREATE POLICY ${quoteIdent(POLICY_NAME)} ON ${t.sql}${legacy.length ? ` TO ${runtime}` : ''} USING (${predicate}) WITH CHECK (${predicate});`,
    `ALTER TABLE ${t.sql} ENABLE ROW LEVEL SECURITY;`,
    `ALTER TABLE ${t.sql} FORCE ROW LEVEL SECURITY;`,
  ];
  return {
    action: 'secure',
    target: t.label,
    mode: 'transaction',
    why:
      `Row-level security with Tenantry's policy (${POLICY_NAME}), enabled and forced, owned by the owner role, ` +
      `DML granted to the runtime role${legacy.length ? `; ${o.legacyRoles.join(', ')} keep the default tenant's rows until cutover` : ''}.`,
    estimate: `no scan; ${SHORT_LOCK}`,
    sql: lines.join('\n'),
    rollback: [
      `ALTER TABLE ${t.sql} NO FORCE ROW LEVEL SECURITY;`,
      `ALTER TABLE ${t.sql} DISABLE ROW LEVEL SECURITY;`,
      `DROP POLICY IF EXISTS ${quoteIdent(POLICY_NAME)} ON ${t.sql};`,
      ...(legacy.length ? [`DROP POLICY IF EXISTS ${quoteIdent(LEGACY_POLICY)} ON ${t.sql};`] : []),
      `ALTER TABLE ${t.sql} OWNER TO ${quoteIdent(t.owner)};`,
    ].join('\n'),
    weight: 1,
  };
}

/** A global table: marked for doctor, owned by the owner role, readable by the runtime role. */
export function globalStep(t: SourceTable, reason: string, o: TableStepOptions): StepDraft {
  const note = quoteLiteral(`tenantry:global (retrofit: ${reason})`);
  return {
    action: 'global',
    target: t.label,
    mode: 'transaction',
    why: `${t.label} is shared by all tenants (${reason}): no tenant column; the runtime role may only read it.`,
    estimate: `${formatRows(t.rows)}; catalog only`,
    sql: [
      `COMMENT ON TABLE ${t.sql} IS ${note};`,
      ...(t.extension ? [] : [`ALTER TABLE ${t.sql} OWNER TO ${quoteIdent(o.ownerRole)};`]),
      `GRANT SELECT ON ${t.sql} TO ${quoteIdent(o.runtimeRole)};`,
      ...(t.extension ? [] : legacyGrants(t, o, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')),
    ].join('\n'),
    rollback: `COMMENT ON TABLE ${t.sql} IS NULL;${t.extension ? '' : `\nALTER TABLE ${t.sql} OWNER TO ${quoteIdent(t.owner)};`}`,
    weight: 1,
  };
}

/**
 * After the application runs on the runtime role: new rows take the tenant of the
 * verified context, Tenantry's policy applies to everyone, and the old roles lose access.
 */
export function cutoverStep(t: SourceTable, o: TableStepOptions): StepDraft {
  const col = quoteIdent(o.column);
  const legacy = o.legacyRoles.map(quoteIdent);
  return {
    action: 'cutover',
    target: t.label,
    phase: 'cutover',
    mode: 'transaction',
    why: `The application now works through the runtime role: new rows take the verified tenant, not the default one.`,
    estimate: `catalog only; ${SHORT_LOCK}`,
    sql: [
      `ALTER TABLE ${t.sql} ALTER COLUMN ${col} SET DEFAULT ${o.dialect.currentTenantExpression};`,
      ...(legacy.length
        ? [
            `ALTER POLICY ${quoteIdent(POLICY_NAME)} ON ${t.sql} TO PUBLIC;`,
            `DROP POLICY IF EXISTS ${quoteIdent(LEGACY_POLICY)} ON ${t.sql};`,
            `REVOKE ALL ON ${t.sql} FROM ${legacy.join(', ')};`,
            ...t.sequences.map((q) => `REVOKE ALL ON SEQUENCE ${q.sql} FROM ${legacy.join(', ')};`),
          ]
        : []),
    ].join('\n'),
    rollback: `ALTER TABLE ${t.sql} ALTER COLUMN ${col} SET DEFAULT ${DEFAULT_TENANT_ID}::uuid;`,
    weight: 1,
  };
}
