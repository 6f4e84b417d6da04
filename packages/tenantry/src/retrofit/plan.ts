import { type ContextDialect, postgresDialect } from '../context/context-dialect.ts';
import type { Queryable } from '../doctor/inspect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { quoteIdent } from '../sql.ts';
import { classifyTables } from './classify.ts';
import { findHazards } from './hazards.ts';
import { keySteps } from './key-steps.ts';
import type { RetrofitPlan, RetrofitStep, StepDraft } from './plan-step.ts';
import { readSourceSchema } from './source-schema.ts';
import { columnSteps, cutoverStep, globalStep, secureStep, type TableStepOptions } from './table-steps.ts';

/** Options of {@link planRetrofit}. */
export interface RetrofitPlanOptions {
  /** Schema of the application's tables; default `public`. */
  readonly schema?: string;
  /** Tables shared by all tenants (reference data such as `country`, `language`). */
  readonly global?: readonly string[];
  /** Slug of the tenant that receives every existing row. */
  readonly defaultTenant: string;
  /** Tenantry's owner role (takes ownership of the tables). */
  readonly ownerRole: string;
  /** Tenantry's runtime role (gets DML on tenant tables, SELECT on global ones). */
  readonly runtimeRole: string;
  /**
   * Roles the running application uses, which keep the default tenant's rows until
   * cutover; default: the tables' owners and the roles granted writes on them, except
   * superusers and BYPASSRLS roles (row-level security does not stop those anyway).
   */
  readonly legacyRoles?: readonly string[];
  readonly tenantColumn?: string;
  readonly dialect?: ContextDialect;
}

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Plans the retrofit of an existing single-tenant schema into Tenantry tenant tables:
 * reads the catalog (nothing is changed), decides which tables are tenant tables and
 * which are global, reports hazards, and orders the steps so each is safe while the old
 * application keeps running. Render it with {@link renderPlan} and run it with
 * {@link applyRetrofit}.
 *
 * @example
 * ```ts
 * const plan = await planRetrofit(tenantry.adminPool, {
 *   schema: 'public', global: ['country', 'language'], defaultTenant: 'acme',
 *   ownerRole: tenantry.config.roles.owner, runtimeRole: tenantry.config.roles.runtime,
 * });
 * await writeFile('plan.sql', renderPlan(plan));
 * ```
 */
export async function planRetrofit(client: Queryable, options: RetrofitPlanOptions): Promise<RetrofitPlan> {
  const schema = options.schema ?? 'public';
  const column = options.tenantColumn ?? 'tenant_id';
  const dialect = options.dialect ?? postgresDialect;
  if (typeof options.defaultTenant !== 'string' || !SLUG.test(options.defaultTenant)) {
    throw new TenantryError('INVALID_INPUT', `default tenant ${JSON.stringify(options.defaultTenant)} is not a slug`);
  }
  const { rows } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (rows.length === 0) throw new TenantryError('INVALID_INPUT', `schema ${schema} does not exist`);
  const source = await readSourceSchema(client, {
    schema,
    tenantColumn: column,
    ignoreRoles: [options.ownerRole, options.runtimeRole],
  });
  const classes = classifyTables(source, options.global ?? []);
  const legacyRoles = options.legacyRoles ?? source.writers.filter((w) => !w.bypassrls).map((w) => w.role);
  const o: TableStepOptions = {
    column,
    ownerRole: options.ownerRole,
    runtimeRole: options.runtimeRole,
    legacyRoles,
    dialect,
  };
  const keys = keySteps(classes.tenant, source, column);
  const drafts: StepDraft[] = [
    {
      action: 'default-tenant',
      target: options.defaultTenant,
      mode: 'registry',
      why: `Every existing row belongs to tenant ${options.defaultTenant}, created through the registry so it exists in the control plane; its id fills in :'default_tenant_id'.`,
      estimate: 'one control-plane row',
      sql: '',
      rollback: null,
      weight: 1,
    },
    {
      action: 'schema-grants',
      target: schema,
      mode: 'transaction',
      why: `The owner role creates and alters objects in ${schema}; the runtime role may look up its tables (privileges per table follow).`,
      estimate: 'catalog only',
      sql: `GRANT USAGE, CREATE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(o.ownerRole)};\nGRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(o.runtimeRole)};`,
      rollback: `REVOKE USAGE ON SCHEMA ${quoteIdent(schema)} FROM ${quoteIdent(o.runtimeRole)};`,
      weight: 1,
    },
    ...[...keys.extensions].sort().map(
      (e): StepDraft => ({
        action: 'extension',
        target: e,
        mode: 'transaction',
        why: `GIN/GiST indexes and exclusion constraints need ${e} to hold the uuid tenant column.`,
        estimate: 'catalog only',
        sql: `CREATE EXTENSION IF NOT EXISTS ${quoteIdent(e)};`,
        rollback: null,
        weight: 1,
      }),
    ),
    ...classes.global.map((g) => globalStep(g.table, g.reason, o)),
    ...classes.tenant.flatMap((t) => columnSteps(t, o)),
    ...keys.steps,
    ...classes.tenant.map((t) => secureStep(t, o)),
    ...classes.tenant.map((t) => cutoverStep(t, o)),
  ];
  const steps: RetrofitStep[] = drafts.map((d, i) => Object.freeze({ ...d, n: i + 1, phase: d.phase ?? 'retrofit' }));
  const hazards = [...classes.hazards, ...(await findHazards(client, source, classes.tenant))];
  return Object.freeze({
    format: 1,
    schema,
    tenantColumn: column,
    defaultTenant: options.defaultTenant,
    ownerRole: options.ownerRole,
    runtimeRole: options.runtimeRole,
    legacyRoles,
    tenantTables: classes.tenant.map((t) => t.label),
    globalTables: classes.global.map((g) => ({ table: g.table.label, reason: g.reason })),
    candidates: classes.candidates.map((t) => t.label),
    skipped: classes.skipped.map((t) => t.label),
    hazards,
    steps,
  });
}
