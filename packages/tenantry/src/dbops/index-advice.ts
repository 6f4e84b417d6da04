import type { Pool, PoolClient } from 'pg';
import { quoteIdent } from '../sql.ts';
import { genericPlan, type PlanNode, planNodes } from './generic-plan.ts';
import { type SlowStatement, slowQueries } from './slow-queries.ts';

/** One index {@link adviseIndexes} proposes, led by the tenant column. */
export interface IndexSuggestion {
  /** `schema.table`, unquoted. */
  readonly table: string;
  /** Key columns, the tenant column first. */
  readonly columns: readonly string[];
  /** What to run (`CREATE INDEX CONCURRENTLY …`; `tenantry db` can run it for you). */
  readonly sql: string;
  /** Why: the plan node it replaces and the filter it would serve. */
  readonly reason: string;
  /** The statement it is for (normalized) and its figures. */
  readonly statement: Pick<SlowStatement, 'queryId' | 'query' | 'calls' | 'meanMs'>;
  /** Total cost of the statement's generic plan today. */
  readonly costBefore: number;
  /**
   * With `hypopg`: the plan's cost with the index created hypothetically, and whether the
   * planner chose it. `null` when hypopg is not installed in the database.
   */
  readonly hypothetical: { readonly costAfter: number; readonly used: boolean } | null;
}

/** What {@link adviseIndexes} found. */
export interface IndexAdvice {
  /** False without pg_stat_statements (see `reason`). */
  readonly available: boolean;
  readonly reason?: string;
  /** Whether suggestions were checked with hypothetical indexes (hypopg). */
  readonly hypopg: boolean;
  readonly suggestions: readonly IndexSuggestion[];
  /** Statements that could not be planned (a parameter whose type PostgreSQL cannot infer, a dropped table…), with why. */
  readonly skipped: readonly { readonly query: string; readonly reason: string }[];
}

/** Options of {@link adviseIndexes}. */
export interface IndexAdviceOptions {
  /** Statements examined, slowest total time first (default 20). */
  readonly limit?: number;
  /** Only statements whose mean time is at least this (default 0). */
  readonly minMeanMs?: number;
  /** `search_path` the statements ran with (default `['public']`; Tenantry's tenant schema). */
  readonly schemas?: readonly string[];
  /** The tenant column (default `tenant_id`). */
  readonly tenantColumn?: string;
}

// `col = $1`, `(t.col)::text = $2`, `col > $3`: a column compared with a value. LIKE,
// <> and function calls on the column are left out: a btree on the column would not serve them.
const CONDITION = /(?:^|[\s(])(?:"?\w+"?\.)?("[^"]+"|[a-z_]\w*)\)?(?:::[\w ]+?)?\s(=|<=|>=|<|>)\s/gi;

/**
 * Suggests indexes led by the tenant column for the slowest statements of
 * `pg_stat_statements`: each statement's generic plan (see `genericPlan`) is searched for
 * scans of a tenant table that filter rows instead of finding them through an index; the
 * suggestion is `(tenant_id, equality columns…, one range column)`. When the `hypopg`
 * extension is created in the database, each suggestion is checked with a hypothetical
 * index: the plan's cost before and after, and whether the planner picked it. Runs in a
 * transaction that is rolled back, on a connection that is closed afterwards; nothing is
 * executed or created.
 *
 * @example
 * ```ts
 * const advice = await adviseIndexes(tenantry.adminPool, { schemas: ['public'] });
 * for (const s of advice.suggestions) console.log(s.sql, s.costBefore, '→', s.hypothetical?.costAfter);
 * ```
 */
export async function adviseIndexes(pool: Pool, options: IndexAdviceOptions = {}): Promise<IndexAdvice> {
  const column = options.tenantColumn ?? 'tenant_id';
  const slow = await slowQueries(pool, {
    limit: options.limit ?? 20,
    ...(options.minMeanMs !== undefined ? { minMeanMs: options.minMeanMs } : {}),
  });
  if (!slow.available) {
    return Object.freeze({ available: false, reason: slow.reason ?? '', hypopg: false, suggestions: [], skipped: [] });
  }
  const client: PoolClient = await pool.connect();
  const suggestions: IndexSuggestion[] = [];
  const skipped: { query: string; reason: string }[] = [];
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ v: number; hypopg: boolean }>(
      `SELECT current_setting('server_version_num')::int AS v,
              EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg') AS hypopg`,
    );
    const version = rows[0]?.v ?? 150000;
    const hypopg = rows[0]?.hypopg ?? false;
    const path = (options.schemas ?? ['public']).map(quoteIdent).join(', ');
    await client.query(`SET LOCAL search_path = ${path}`);
    const seen = new Set<string>();
    for (const statement of slow.statements) {
      if (!/^\s*(SELECT|WITH|UPDATE|DELETE)\b/i.test(statement.query)) continue;
      await client.query('SAVEPOINT advice');
      try {
        const plan = await genericPlan(client, statement.query, version);
        for (const candidate of await candidates(client, plan, column)) {
          const key = `${candidate.table}(${candidate.columns.join(',')})`;
          if (seen.has(key)) continue;
          seen.add(key);
          const hypothetical = hypopg ? await checkHypothetically(client, statement.query, version, candidate) : null;
          suggestions.push(
            Object.freeze({
              ...candidate,
              statement: {
                queryId: statement.queryId,
                query: statement.query,
                calls: statement.calls,
                meanMs: statement.meanMs,
              },
              costBefore: plan['Total Cost'],
              hypothetical,
            }),
          );
        }
        await client.query('RELEASE SAVEPOINT advice');
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT advice');
        skipped.push({ query: statement.query, reason: (error as Error).message });
      }
    }
    return Object.freeze({
      available: true,
      hypopg,
      suggestions: Object.freeze(suggestions),
      skipped: Object.freeze(skipped),
    });
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release(true); // prepared statements and hypothetical indexes are per session: drop it
  }
}

type Candidate = Pick<IndexSuggestion, 'table' | 'columns' | 'sql' | 'reason'>;

/** Scans of a tenant table that filter on columns no index of the table leads with. */
async function candidates(client: PoolClient, plan: PlanNode, column: string): Promise<Candidate[]> {
  const out: Candidate[] = [];
  for (const node of planNodes(plan)) {
    const relation = node['Relation Name'];
    const filter = node.Filter;
    if (!relation || !filter || !node.Schema) continue;
    const table = { schema: node.Schema, name: relation };
    const { rows } = await client.query<{ columns: string[]; has_tenant: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $3 AND NOT a.attisdropped) AS has_tenant,
              coalesce((SELECT array_agg(array_to_string(ARRAY(
                          SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
                            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n), ','))
                          FROM pg_index i WHERE i.indrelid = c.oid AND i.indisvalid), '{}') AS columns
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
      [table.schema, table.name, column],
    );
    const info = rows[0];
    if (!info?.has_tenant) continue;
    const conditions = [...`${node['Index Cond'] ?? ''} ${filter}`.matchAll(CONDITION)].map((m) => ({
      column: unquote(m[1] as string),
      op: m[2] as string,
    }));
    const equal = unique(conditions.filter((c) => c.op === '=' && c.column !== column).map((c) => c.column));
    const range = conditions.find((c) => c.op !== '=' && c.column !== column && !equal.includes(c.column))?.column;
    const keys = [column, ...equal, ...(range ? [range] : [])];
    if (keys.length < 2 && node['Node Type'] !== 'Seq Scan') continue;
    if (info.columns.some((existing) => existing === keys.join(',') || existing.startsWith(`${keys.join(',')},`)))
      continue;
    const qualified = `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
    const name = `${table.name}_${keys.join('_')}_idx`.slice(0, 63);
    out.push({
      table: `${table.schema}.${table.name}`,
      columns: Object.freeze(keys),
      sql: `CREATE INDEX CONCURRENTLY ${quoteIdent(name)} ON ${qualified} (${keys.map(quoteIdent).join(', ')})`,
      reason: `${node['Node Type']} on ${table.schema}.${table.name} filters by ${filter}`,
    });
  }
  return out;
}

/** The statement's plan with `candidate` as a hypothetical index (hypopg), which is then removed. */
async function checkHypothetically(
  client: PoolClient,
  query: string,
  version: number,
  candidate: Candidate,
): Promise<{ costAfter: number; used: boolean }> {
  const ddl = candidate.sql.replace(' CONCURRENTLY', '').replace(/INDEX "[^"]+" ON/, 'INDEX ON');
  const { rows } = await client.query<{ indexname: string }>('SELECT indexname FROM hypopg_create_index($1)', [ddl]);
  try {
    const plan = await genericPlan(client, query, version);
    const name = rows[0]?.indexname ?? '';
    return {
      costAfter: plan['Total Cost'],
      used: planNodes(plan).some((n) => n['Index Name'] === name),
    };
  } finally {
    await client.query('SELECT hypopg_reset()');
  }
}

function unquote(identifier: string): string {
  return identifier.startsWith('"') ? identifier.slice(1, -1).replaceAll('""', '"') : identifier;
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}
