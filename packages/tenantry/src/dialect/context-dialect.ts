/**
 * Where the tenant id enters SQL: the one place that decides how the verified tenant
 * context is placed in a session, how policies read it, and what the tenant-id column
 * defaults to. A Citus deployment would be another dialect (see DESIGN.md, "Beyond one
 * machine"), not a fork of the code that uses these strings.
 */
export interface ContextDialect {
  readonly name: string;
  /** Statement run right after `BEGIN`, in the same round trip; `$1` is the signed entry token. */
  readonly enterSql: string;
  /** SQL expression for the verified current tenant id; used by column defaults. */
  readonly currentTenantExpression: string;
  /**
   * The boolean a policy uses, for `USING` and `WITH CHECK`. Wrapped in a sub-select so
   * PostgreSQL evaluates it once per statement (an InitPlan) and indexes led by
   * `tenant_id` stay usable.
   */
  policyPredicate(column: string): string;
}

/** Schema holding the only two functions the runtime role may call. */
export const CONTEXT_SCHEMA = 'tenantry_context';

/** Name of the custom setting that carries the verified context inside a transaction. */
export const CONTEXT_SETTING = 'tenantry.ctx';

/** Name Tenantry gives the isolation policy on every tenant table; `doctor` looks for it. */
export const POLICY_NAME = 'tenant_isolation';

/** Plain PostgreSQL (13+): `set_config(…, true)` from a SECURITY DEFINER function. */
export const postgresDialect: ContextDialect = Object.freeze({
  name: 'postgres',
  enterSql: `SELECT ${CONTEXT_SCHEMA}.enter($1) AS tenant_id`,
  currentTenantExpression: `${CONTEXT_SCHEMA}.current_tenant_id()`,
  policyPredicate(column: string): string {
    return `${column} = (SELECT ${CONTEXT_SCHEMA}.current_tenant_id())`;
  },
});
