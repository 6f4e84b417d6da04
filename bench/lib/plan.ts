/** One scan node of a query plan, as the benchmark reports it. */
export interface ScanNode {
  readonly type: string;
  readonly relation: string | undefined;
  readonly index: string | undefined;
  readonly indexCond: string | undefined;
  readonly recheckCond: string | undefined;
  readonly filter: string | undefined;
  readonly rowsRemovedByFilter: number | undefined;
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  'Recheck Cond'?: string;
  Filter?: string;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/** Literal uuids and long strings make plans unreadable; the shape is what matters. */
function shorten(cond: string | undefined): string | undefined {
  return cond?.replace(/'[0-9a-f-]{36}'::uuid/g, "'…'::uuid").replace(/'v1\.[^']*'/g, "'…'");
}

/** The scan nodes of an `EXPLAIN (FORMAT JSON)` result, depth first. */
export function scanNodes(explainJson: unknown): ScanNode[] {
  const root = (explainJson as { Plan: PlanNode }[])[0]?.Plan;
  const out: ScanNode[] = [];
  const walk = (node: PlanNode) => {
    if (node['Relation Name'] || node['Index Name']) {
      out.push({
        type: node['Node Type'],
        relation: node['Relation Name'],
        index: node['Index Name'],
        indexCond: shorten(node['Index Cond']),
        recheckCond: shorten(node['Recheck Cond']),
        filter: shorten(node.Filter),
        rowsRemovedByFilter: node['Rows Removed by Filter'],
      });
    }
    for (const child of node.Plans ?? []) walk(child);
  };
  if (root) walk(root);
  return out;
}

/** One line per scan node: `Index Scan on items_pkey [index: …] [filter: …]`. */
export function describeScans(nodes: readonly ScanNode[]): string[] {
  return nodes.map((n) => {
    const parts = [`${n.type}${n.index ? ` on ${n.index}` : n.relation ? ` on ${n.relation}` : ''}`];
    if (n.indexCond) parts.push(`index cond ${n.indexCond}`);
    if (n.filter) parts.push(`filter ${n.filter}${n.rowsRemovedByFilter ? ` (removed ${n.rowsRemovedByFilter})` : ''}`);
    return parts.join('; ');
  });
}

/** Does the plan search the full-text column through `index` (`@@` in an index condition)? */
export function searchesThroughIndex(nodes: readonly ScanNode[], index: string): boolean {
  return nodes.some((n) => n.index === index && (n.indexCond ?? '').includes('@@'));
}
