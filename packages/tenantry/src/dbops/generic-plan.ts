import type { ClientBase } from 'pg';

/** The parts of an `EXPLAIN (FORMAT JSON)` plan node that index advice reads. */
export interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Relation Name'?: string;
  readonly Schema?: string;
  readonly 'Index Name'?: string;
  readonly Filter?: string;
  readonly 'Index Cond'?: string;
  readonly 'Recheck Cond'?: string;
  readonly 'Sort Key'?: readonly string[];
  readonly 'Total Cost': number;
  readonly Plans?: readonly PlanNode[];
}

let statementNumber = 0;

/**
 * The generic plan of a normalized statement (`$1`, `$2` … instead of values), as
 * `EXPLAIN (FORMAT JSON)` gives it, without running it. PostgreSQL 16 has
 * `EXPLAIN (GENERIC_PLAN)`; on 15 the statement is prepared (PostgreSQL infers each
 * parameter's type) and `EXPLAIN EXECUTE` runs with `plan_cache_mode = force_generic_plan`
 * and NULLs as values, which the generic plan never looks at. Call it inside a
 * transaction the caller rolls back: the setting is `SET LOCAL`, and the prepared
 * statement is deallocated here.
 *
 * @example
 * ```ts
 * const plan = await genericPlan(client, 'SELECT * FROM items WHERE tenant_id = $1 AND title = $2', 150000);
 * console.log(plan['Total Cost']);
 * ```
 */
export async function genericPlan(client: ClientBase, query: string, serverVersionNum: number): Promise<PlanNode> {
  if (serverVersionNum >= 160000) {
    const { rows } = await client.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
      `EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) ${query}`,
    );
    return rows[0]?.['QUERY PLAN'][0]?.Plan as PlanNode;
  }
  const name = `tenantry_advice_${process.pid}_${++statementNumber}`;
  await client.query('SET LOCAL plan_cache_mode = force_generic_plan');
  await client.query(`PREPARE ${name} AS ${query}`);
  try {
    const { rows: params } = await client.query<{ n: number }>(
      'SELECT coalesce(cardinality(parameter_types), 0) AS n FROM pg_prepared_statements WHERE name = $1',
      [name],
    );
    const n = params[0]?.n ?? 0;
    const args = n > 0 ? `(${Array.from({ length: n }, () => 'NULL').join(', ')})` : '';
    const { rows } = await client.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
      `EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE ${name}${args}`,
    );
    return rows[0]?.['QUERY PLAN'][0]?.Plan as PlanNode;
  } finally {
    // In a failed transaction this fails too; the caller's connection is discarded then.
    await client.query(`DEALLOCATE ${name}`).catch(() => {});
  }
}

/**
 * Every node of a plan, depth first.
 *
 * @example
 * ```ts
 * const scans = planNodes(plan).filter((n) => n['Node Type'] === 'Seq Scan');
 * ```
 */
export function planNodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(planNodes)];
}
