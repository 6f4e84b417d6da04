import { type ContextDialect, POLICY_NAME } from '../context/context-dialect.ts';
import { quoteIdent } from '../sql.ts';
import { type Finding, finding } from './finding.ts';
import { clause, oneLine, tenantPredicate } from './fix-sql.ts';
import type { PolicyCommand, PolicyInfo, TableInfo } from './inspect.ts';
import type { TreeValue } from './node-tree.ts';
import { analyzeExpression, type ExpressionCatalog, type ExpressionFacts } from './policy-expression.ts';

const COMMAND: Record<PolicyCommand, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };

/** A deparsed expression for a message: one line, in parentheses. */
function shown(expression: string | null): string {
  return clause(oneLine(expression));
}

function covers(p: PolicyInfo, command: Exclude<PolicyCommand, '*'>): boolean {
  return p.command === '*' || p.command === command;
}

/**
 * What PostgreSQL checks new rows against for this policy: its WITH CHECK, else its
 * USING (rowsecurity.c, QUAL_FOR_WCO). Only INSERT/UPDATE/ALL policies check new rows.
 */
function effectiveCheck(p: PolicyInfo): TreeValue | null {
  if (p.command === 'r' || p.command === 'd') return null;
  return p.check ?? p.using;
}

function effectiveCheckText(p: PolicyInfo): string | null {
  return p.check === null ? p.usingText : p.checkText;
}

/** `ALTER POLICY` with only the clauses its command allows (INSERT has no USING; SELECT/DELETE no WITH CHECK). */
function alterPolicy(table: TableInfo, p: PolicyInfo, using: string | null, check: string | null): string {
  const clauses: string[] = [];
  if (using !== null && p.command !== 'a') clauses.push(`USING (${using})`);
  if (check !== null && (p.command === '*' || p.command === 'a' || p.command === 'w')) {
    clauses.push(`WITH CHECK (${check})`);
  }
  return `ALTER POLICY ${quoteIdent(p.name)} ON ${table.sql} ${clauses.join(' ')}`;
}

function freePolicyName(policies: readonly PolicyInfo[], base: string): string {
  const taken = new Set(policies.map((p) => p.name));
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}_${i}`)) return `${base}_${i}`;
}

/**
 * The row-level security policies of one tenant table, as they apply to the runtime role
 * (policies `TO` PUBLIC or to a role it is a member of).
 *
 * PostgreSQL combines them so: permissive policies are OR-ed, restrictive ones AND-ed on
 * top; with no permissive policy for a command, every row is denied; new rows are checked
 * against a policy's WITH CHECK, or its USING when WITH CHECK is absent (FOR ALL / UPDATE).
 * That last rule makes a missing WITH CHECK safe exactly as long as USING is a pure tenant
 * predicate: once USING reads `tenant_id = x OR is_public`, a tenant may write public rows
 * under any tenant_id. So a missing WITH CHECK is a warning; nothing checking inserts at
 * all (every insert then fails) is an error when the runtime role holds INSERT.
 */
export function checkPolicies(
  table: TableInfo,
  policies: readonly PolicyInfo[],
  expressions: ExpressionCatalog,
  options: { column: string; runtimeRole: string; dialect: ContextDialect },
): Finding[] {
  const { column, runtimeRole } = options;
  const t = table.label;
  const pred = tenantPredicate(column, options.dialect);
  const create = (name: string, body: string) =>
    `CREATE POLICY ${quoteIdent(freePolicyName(policies, name))} ON ${table.sql} ${body}`;
  const isolation = `USING (${pred}) WITH CHECK (${pred})`;

  if (policies.length === 0) {
    return [
      finding('NO_POLICY', {
        table: t,
        message: `${t} has no row-level security policy: with RLS on, PostgreSQL denies every row to role "${runtimeRole}"; with it off, nothing isolates tenants.`,
        fix: create(POLICY_NAME, isolation),
      }),
    ];
  }
  const applicable = policies.filter((p) => p.applies);
  const permissive = applicable.filter((p) => p.permissive);
  const restrictive = applicable.filter((p) => !p.permissive);
  if (permissive.length === 0) {
    const names = policies.map((p) => `"${p.name}"`).join(', ');
    return [
      finding('NO_POLICY', {
        table: t,
        message: `${t}: none of its policies (${names}) is a permissive policy for role "${runtimeRole}" (TO PUBLIC or to a role it belongs to), so PostgreSQL denies it every row.`,
        fix: create(POLICY_NAME, isolation),
      }),
    ];
  }

  const out: Finding[] = [];
  if (!permissive.some((p) => covers(p, 'r') && p.using !== null)) {
    out.push(
      finding('POLICY_MISSING_USING', {
        table: t,
        message: `${t}: no policy for role "${runtimeRole}" has a USING expression for SELECT, so it reads no rows at all.`,
        fix: create(`${POLICY_NAME}_read`, `FOR SELECT USING (${pred})`),
      }),
    );
  }
  if (table.runtimeMayInsert && !permissive.some((p) => covers(p, 'a') && effectiveCheck(p) !== null)) {
    out.push(
      finding('POLICY_MISSING_WITH_CHECK', {
        severity: 'error',
        table: t,
        message: `${t}: no FOR INSERT/ALL policy for role "${runtimeRole}" has a WITH CHECK (or USING) expression, so nothing constrains the tenant of a new row and PostgreSQL refuses every INSERT, although the role holds the INSERT privilege.`,
        fix: create(`${POLICY_NAME}_insert`, `FOR INSERT WITH CHECK (${pred})`),
      }),
    );
  }
  for (const p of permissive) {
    if ((p.command === '*' || p.command === 'w') && p.check === null && p.using !== null) {
      out.push(
        finding('POLICY_MISSING_WITH_CHECK', {
          table: t,
          message: `${t}: policy "${p.name}" (FOR ${COMMAND[p.command]}) has no WITH CHECK, so PostgreSQL checks new and updated rows against its USING ${shown(p.usingText)}. That holds only while USING is a pure tenant predicate; state WITH CHECK explicitly.`,
          fix: alterPolicy(table, p, null, pred),
        }),
      );
    }
  }
  if (table.tenantAttnum === null) return out; // MISSING_TENANT_ID says it; nothing to analyse against

  const attnum = table.tenantAttnum;
  const memo = new Map<TreeValue, ExpressionFacts>();
  const facts = (tree: TreeValue): ExpressionFacts => {
    let f = memo.get(tree);
    if (!f) {
      f = analyzeExpression(tree, attnum, column, expressions);
      memo.set(tree, f);
    }
    return f;
  };
  // A restrictive policy that pins the tenant closes whatever a permissive one leaves open.
  const pinnedBy = (p: PolicyInfo, side: 'using' | 'check') =>
    restrictive.some((r) => {
      const tree = side === 'using' ? r.using : effectiveCheck(r);
      return (r.command === '*' || r.command === p.command) && tree !== null && facts(tree).referencesTenant;
    });

  const flagged = new Set<string>();
  for (const p of permissive) {
    const check = effectiveCheck(p);
    const readsOpen = p.using !== null && !facts(p.using).referencesTenant && !pinnedBy(p, 'using');
    const writesOpen = check !== null && !facts(check).referencesTenant && !pinnedBy(p, 'check');
    if (!readsOpen && !writesOpen) continue;
    flagged.add(p.name);
    const what = readsOpen && writesOpen ? 'read and write' : readsOpen ? 'read' : 'write';
    out.push(
      finding('POLICY_IGNORES_TENANT_ID', {
        table: t,
        message: `${t}: policy "${p.name}" (FOR ${COMMAND[p.command]}, ${readsOpen ? `USING ${shown(p.usingText)}` : `WITH CHECK ${shown(effectiveCheckText(p))}`}) never looks at ${column}. Permissive policies are OR-ed, so role "${runtimeRole}" can ${what} every tenant's rows through it.`,
        fix: alterPolicy(
          table,
          p,
          readsOpen ? `${pred} AND ${clause(p.usingText ?? 'true')}` : null,
          writesOpen && p.check !== null ? `${pred} AND ${clause(p.checkText ?? 'true')}` : null,
        ),
      }),
    );
  }

  for (const command of ['r', 'w', 'd'] as const) {
    if (restrictive.some((r) => covers(r, command) && r.using !== null && facts(r.using).indexable)) continue;
    const readers = permissive.filter((p) => covers(p, command) && p.using !== null);
    for (const p of readers) {
      const f = facts(p.using as TreeValue);
      if (f.indexable || flagged.has(p.name)) continue;
      flagged.add(p.name);
      const ored =
        readers.length > 1
          ? ` PostgreSQL ORs the ${readers.length} permissive policies for ${COMMAND[command]}, so this one is enough to lose the index.`
          : '';
      out.push(
        finding('POLICY_DEFEATS_INDEX', {
          table: t,
          message: `${t}: policy "${p.name}" (USING ${shown(p.usingText)}) gives PostgreSQL no index condition on ${column}: ${f.whyNotIndexable}. Every ${COMMAND[command]} under it scans all tenants' rows.${ored}`,
          fix: alterPolicy(table, p, pred, null),
        }),
      );
    }
  }

  for (const p of applicable) {
    if (flagged.has(p.name)) continue;
    const calls = new Set([
      ...(p.using === null ? [] : facts(p.using).perRowCalls),
      ...(p.check === null ? [] : facts(p.check).perRowCalls),
    ]);
    if (calls.size === 0) continue;
    const names = [...calls].map((c) => `${c}()`).join(', ');
    out.push(
      finding('POLICY_FUNCTION_PER_ROW', {
        table: t,
        message: `${t}: policy "${p.name}" calls ${names} outside a scalar sub-select. The index on ${column} still works, but PostgreSQL runs the call once per row wherever the policy is a filter rather than an index condition (sequential scans, rechecks, the inner side of joins); wrapped as (SELECT …) it runs once per statement. (Citus is the exception: it cannot propagate a policy with a sub-select.)`,
        fix: `Wrap each call in a scalar sub-select, e.g. ${alterPolicy(table, p, pred, pred)}`,
      }),
    );
  }
  return out;
}
