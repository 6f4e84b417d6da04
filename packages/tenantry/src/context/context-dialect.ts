import { type ContextPurpose, secretContextToken } from './context-token.ts';
import type { KnownTenantState } from './known-tenant-states.ts';

/**
 * One entry into a tenant's context, as the transaction runner knows it: what a dialect
 * turns into the values of its context statement ({@link ContextDialect.enterValues}).
 */
export interface ContextEntry {
  readonly purpose: ContextPurpose;
  readonly tenantId: string;
  /** The one-time secret the previous entry stored on this backend, if the connection has one. */
  readonly secret: string | undefined;
  /** The next one-time secret, or `null` behind a transaction-mode pooler. */
  readonly nextSecret: string | null;
  /** Schema of the shared tables. */
  readonly sharedSchema: string;
  /** Mints an HMAC-signed entry token (called only when the entry needs one). */
  signedToken(): string;
  /** What `enter()` answered about the tenant in this database before, if the process kept it. */
  readonly known?: KnownTenantState | undefined;
}

/**
 * The entry token of `entry`: the session form when the connection has a secret, else a
 * freshly signed one.
 */
export function entryToken(entry: ContextEntry): string {
  return entry.secret !== undefined
    ? secretContextToken(entry.purpose, entry.tenantId, entry.secret)
    : entry.signedToken();
}

/**
 * Where the tenant id enters SQL: the one place that decides how the verified tenant
 * context is placed in a session, how policies read it, and what the tenant-id column
 * defaults to. A Citus deployment would be another dialect (see DESIGN.md, "Beyond one
 * machine"), not a fork of the code that uses these strings.
 */
export interface ContextDialect {
  readonly name: string;
  /**
   * Statement run right after `BEGIN`, in the same round trip; `$1` is the entry token,
   * `$2` the session's next one-time secret (NULL behind a pooler), `$3` the schema of the
   * shared tables. It also makes `search_path`, for the transaction and in every tier, the
   * schema of a schema-tier tenant, else `$3`, with `pg_temp` last: when the session's
   * value is already exactly that (the runtime role's default, see `setup`) it is left
   * alone, else it is set transaction-locally. So neither a session-level
   * `SET search_path` nor a temporary table that injected SQL left on a pooled connection
   * can redirect the next tenant's statements.
   */
  readonly enterSql: string;
  /**
   * The values of `enterSql`'s parameters for one entry (sent as pg sends query parameters).
   * Absent: `[token, next secret, shared schema]`, the token being
   * the session form when the entry has a secret, else a signed one.
   */
  enterValues?(entry: ContextEntry): unknown[];
  /** SQL expression for the verified current tenant id; used by column defaults. */
  readonly currentTenantExpression: string;
  /**
   * The boolean a policy uses, for `USING` and `WITH CHECK`. Wrapped in a sub-select so
   * PostgreSQL evaluates it once per statement (an InitPlan) and indexes led by
   * `tenant_id` stay usable. `place` binds the policy to one copy of the tables: the schema
   * of a schema-tier copy, `''` for the shared tables and tenant databases; a tenant whose
   * rows live elsewhere then sees nothing there and cannot write there. Without it, any
   * verified tenant matches (what `doctor` suggests for tables it did not create).
   */
  policyPredicate(column: string, place?: string): string;
  /**
   * Every tenant transaction is an explicit transaction block, even a one-statement one
   * (which otherwise runs as an implicit transaction, without `BEGIN` and `COMMIT`).
   */
  readonly transactionBlock?: boolean;
  /** Statements run at the start of every migration, after `SET ROLE` (a cluster's settings for DDL). */
  readonly migrationSettings?: readonly string[];
  /**
   * The statement that distributes a new tenant table (`table` quoted and qualified as in
   * its `CREATE TABLE`) by `tenantColumn`; absent on one server. With it, composite foreign
   * keys are added after the table is distributed (see `citus-dialect.ts`).
   */
  distributeTableSql?(table: string, tenantColumn: string): string;
}

/** Schema holding the only functions the runtime role may call. */
export const CONTEXT_SCHEMA = 'tenantry_context';

/** Name of the custom setting that carries the verified context inside a transaction. */
export const CONTEXT_SETTING = 'tenantry.ctx';

/** Name Tenantry gives the isolation policy on every tenant table; `doctor` looks for it. */
export const POLICY_NAME = 'tenant_isolation';

/** Plain PostgreSQL (13+): `set_config(…, true)` from a SECURITY DEFINER function. */
export const postgresDialect: ContextDialect = Object.freeze({
  name: 'postgres',
  // The common call (tenant work with a session secret; $1 is then NULL) passes $4 the
  // tenant's uuid and $5 the secret, so that PostgreSQL parses nothing out of a token, and
  // $6–$8 the process's copy of what enter() answered about the tenant before (its tenant
  // state version, statement timeout and schema), used while that version is current.
  enterSql: `SELECT ${CONTEXT_SCHEMA}.enter($1, $2::int8, $3, $4::uuid, $5::int8, $6::int8, $7::int4, $8) AS s`,
  enterValues(entry: ContextEntry): unknown[] {
    const common = entry.secret !== undefined && entry.purpose === 'work';
    if (!common)
      return [entryToken(entry), entry.nextSecret, entry.sharedSchema, entry.tenantId, null, null, null, null];
    const known = entry.known;
    return [
      null,
      entry.nextSecret,
      entry.sharedSchema,
      entry.tenantId,
      entry.secret,
      known?.version ?? null,
      known?.statementTimeoutMs ?? null,
      known?.place ?? null,
    ];
  },
  currentTenantExpression: `${CONTEXT_SCHEMA}.current_tenant_id()`,
  policyPredicate(column: string, place?: string): string {
    if (place === undefined) return `${column} = (SELECT ${CONTEXT_SCHEMA}.current_tenant_id())`;
    // The tenant only where this copy is its own: schema names are plain identifiers, and
    // quote_literal's rule is applied here so a stray quote could never end the literal.
    return `${column} = (SELECT ${CONTEXT_SCHEMA}.current_tenant_id_in('${place.replaceAll("'", "''")}'))`;
  },
});
