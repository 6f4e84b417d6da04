import { isNode, list, scalar, type TreeNode, type TreeValue, walkTree } from './node-tree.ts';

/** What the doctor knows about a function a policy calls (from `pg_proc`). */
export interface FunctionInfo {
  /** `schema.name`, for messages. */
  readonly name: string;
  /** `provolatile`: i(mmutable), s(table) or v(olatile). */
  readonly volatility: 'i' | 's' | 'v';
  /** Lives in `pg_catalog`: cheap built-ins such as `current_setting()` are not worth a warning. */
  readonly builtin: boolean;
}

/** Functions and operators referenced by the policies, keyed by OID (as the tree prints it). */
export interface ExpressionCatalog {
  readonly functions: ReadonlyMap<string, FunctionInfo>;
  /** Operator OID → `oprname` (`=`, `<>`, …). */
  readonly operators: ReadonlyMap<string, string>;
}

/** What a policy expression means for isolation and for the planner. */
export interface ExpressionFacts {
  /** The expression looks at the row's tenant column somewhere (a correlated sub-select counts). */
  readonly referencesTenant: boolean;
  /**
   * A top-level conjunct is `tenant_id = <value fixed for the statement>` (or `= ANY(…)`),
   * which the planner can use as an index condition on an index led by tenant_id.
   */
  readonly indexable: boolean;
  /** When not indexable: why, in words, for the finding's message. */
  readonly whyNotIndexable: string | undefined;
  /** Non-built-in STABLE/VOLATILE functions called outside any sub-select, by name. */
  readonly perRowCalls: readonly string[];
}

const OPERATOR_NODES = new Set(['OPEXPR', 'DISTINCTEXPR', 'NULLIFEXPR', 'SCALARARRAYOPEXPR']);

/** The function and operator OIDs an expression tree mentions, to look up in one query. */
export function referencedOids(tree: TreeValue): { functions: Set<string>; operators: Set<string> } {
  const functions = new Set<string>();
  const operators = new Set<string>();
  walkTree(tree, (node) => {
    const funcid = node.type === 'FUNCEXPR' ? scalar(node, 'funcid') : undefined;
    if (funcid) functions.add(funcid);
    if (OPERATOR_NODES.has(node.type)) {
      const opfuncid = scalar(node, 'opfuncid');
      const opno = scalar(node, 'opno');
      if (opfuncid && opfuncid !== '0') functions.add(opfuncid);
      if (opno) operators.add(opno);
    }
  });
  return { functions, operators };
}

/** The function a node calls, if it is a call (function or operator). */
function calledFunction(node: TreeNode): string | undefined {
  if (node.type === 'FUNCEXPR') return scalar(node, 'funcid');
  if (OPERATOR_NODES.has(node.type)) return scalar(node, 'opfuncid');
  return undefined;
}

/** Binary-compatible casts (`varchar` → `text`) don't stop an index from matching; peel them. */
function peel(value: TreeValue | undefined): TreeValue | undefined {
  let v = value;
  while (isNode(v, 'RELABELTYPE')) v = v.fields.get('arg');
  return v;
}

function conjuncts(value: TreeValue): TreeValue[] {
  if (isNode(value, 'BOOLEXPR') && scalar(value, 'boolop') === 'and') return list(value, 'args').flatMap(conjuncts);
  return [value];
}

/**
 * Analyses one policy expression (`polqual` or `polwithcheck`, parsed) of a table whose
 * tenant column is attribute `tenantAttnum`.
 *
 * Why these rules (each was checked with EXPLAIN as a non-bypass role on PostgreSQL 15):
 * - `tenant_id = (SELECT f())` is an InitPlan evaluated once per statement, then an index
 *   condition; so is `tenant_id = f()` for a STABLE `f` (but `f` then also runs once per
 *   row wherever the policy ends up as a filter, hence {@link ExpressionFacts.perRowCalls}).
 * - `tenant_id = f()` for a VOLATILE `f` cannot be an index condition: a sequential scan
 *   calls it per row. Inside a scalar sub-select it is an InitPlan again, and fine.
 * - `tenant_id = x OR is_public`, `tenant_id::text = …` and `tenant_id IN (SELECT …)`
 *   (a hashed SubPlan filter) all leave the planner without an index condition.
 *
 * @example
 * ```ts
 * const facts = analyzeExpression(parseNodeTree(polqualText), 1, 'tenant_id', catalog);
 * if (!facts.indexable) console.log(facts.whyNotIndexable);
 * ```
 */
export function analyzeExpression(
  tree: TreeValue,
  tenantAttnum: number,
  column: string,
  catalog: ExpressionCatalog,
): ExpressionFacts {
  const isTenantVar = (value: TreeValue | undefined): boolean => {
    const v = peel(value);
    return isNode(v, 'VAR') && scalar(v, 'varlevelsup') === '0' && Number(scalar(v, 'varattno')) === tenantAttnum;
  };
  const volatileIn = (value: TreeValue): string | undefined => {
    let found: string | undefined;
    walkTree(value, (node, at) => {
      const fn = at.depth === 0 ? calledFunction(node) : undefined;
      const info = fn ? catalog.functions.get(fn) : undefined;
      if (!found && info?.volatility === 'v') found = info.name;
    });
    return found;
  };
  // How a value depends on the row: through a plain column, or through a sub-select that
  // reads it (correlated, so run per row). A VAR points at the policy's row when its
  // varlevelsup equals the number of sub-queries around it.
  const rowDependence = (value: TreeValue): 'column' | 'correlated' | undefined => {
    let found: 'column' | 'correlated' | undefined;
    walkTree(value, (node, at) => {
      if (node.type === 'VAR' && Number(scalar(node, 'varlevelsup')) === at.depth) {
        found = found === 'column' || at.depth === 0 ? 'column' : 'correlated';
      }
    });
    return found;
  };
  // The other side of `tenant = X`, `X = tenant` or `tenant = ANY (X)`.
  const comparedWith = (value: TreeValue): TreeValue | undefined => {
    if (!isNode(value) || !OPERATOR_NODES.has(value.type) || value.type === 'NULLIFEXPR') return undefined;
    if (catalog.operators.get(scalar(value, 'opno') ?? '') !== '=') return undefined;
    const args = list(value, 'args');
    if (args.length !== 2) return undefined;
    if (value.type === 'SCALARARRAYOPEXPR') {
      return scalar(value, 'useOr') === 'true' && isTenantVar(args[0]) ? (args[1] as TreeValue) : undefined;
    }
    if (value.type !== 'OPEXPR') return undefined;
    if (isTenantVar(args[0])) return args[1] as TreeValue;
    if (isTenantVar(args[1])) return args[0] as TreeValue;
    return undefined;
  };

  let referencesTenant = false;
  let wrapped = false;
  let inSubquery = false;
  const perRowCalls = new Set<string>();
  walkTree(tree, (node, at) => {
    if (node.type === 'VAR' && Number(scalar(node, 'varlevelsup')) === at.depth) {
      if (Number(scalar(node, 'varattno')) !== tenantAttnum) return;
      referencesTenant = true;
      if (at.depth > 0) return;
      const parent = [...at.ancestors].reverse().find((a) => a.type !== 'RELABELTYPE');
      if (parent && (parent.type === 'FUNCEXPR' || parent.type === 'COERCEVIAIO')) wrapped = true;
      if (at.ancestors.some((a) => a.type === 'SUBLINK' && scalar(a, 'subLinkType') === '2')) inSubquery = true;
      return;
    }
    const fn = at.depth === 0 && node.type === 'FUNCEXPR' ? scalar(node, 'funcid') : undefined;
    const info = fn ? catalog.functions.get(fn) : undefined;
    if (info && !info.builtin && info.volatility !== 'i') perRowCalls.add(info.name);
  });

  const parts = conjuncts(tree);
  const others = parts.map(comparedWith).filter((v): v is TreeValue => v !== undefined);
  const indexable = others.some((other) => rowDependence(other) === undefined && volatileIn(other) === undefined);
  let why: string | undefined;
  if (!indexable) {
    const volatile = others.map(volatileIn).find((v) => v !== undefined);
    const dependence = others.map(rowDependence).find((d) => d !== undefined);
    if (volatile) {
      why = `${column} is compared with VOLATILE function ${volatile}(), which PostgreSQL cannot use as an index condition and calls for every row`;
    } else if (dependence === 'correlated') {
      why = `${column} is compared with a correlated sub-select (it reads the row), which runs for every row`;
    } else if (dependence === 'column') {
      why = `${column} is compared with another column of the row`;
    } else if (parts.some((p) => isNode(p, 'BOOLEXPR') && scalar(p, 'boolop') === 'or')) {
      why = `the expression is an OR, so no single index condition on ${column} covers it`;
    } else if (inSubquery) {
      why = `${column} IN (SELECT …) runs as a filter (a hashed SubPlan), not an index condition; write ${column} = ANY (ARRAY(SELECT …))`;
    } else if (wrapped) {
      why = `${column} is wrapped in a cast or function call, so an index on ${column} cannot serve the comparison`;
    } else {
      why = `it has no top-level comparison ${column} = <value fixed for the statement>`;
    }
  }
  return { referencesTenant, indexable, whyNotIndexable: why, perRowCalls: [...perRowCalls] };
}
