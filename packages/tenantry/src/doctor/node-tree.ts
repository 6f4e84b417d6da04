/**
 * A reader for PostgreSQL's `pg_node_tree` text (what `pg_policy.polqual::text` returns):
 * `{OPEXPR :opno 2972 :args ({VAR :varattno 1 …} {SUBLINK …})}`. The doctor reads policies
 * from this tree rather than from `pg_get_expr()` text because the tree names functions
 * by OID (so their volatility can be looked up exactly) and shows where sub-selects begin
 * and end; deparsed text would need an SQL parser for both.
 *
 * The format is internal to PostgreSQL, but the parts read here (node names, `:args`,
 * `:funcid`, `:opno`, `:varattno`, `:varlevelsup`, `:boolop`, `:subLinkType`) have been
 * stable for many major versions; a node the doctor does not know is just walked through.
 */

/** One node: its type (`OPEXPR`) and its fields (`args`, `opno`, …). */
export interface TreeNode {
  readonly type: string;
  readonly fields: ReadonlyMap<string, TreeValue>;
}

/** A field value: a node, a list, a scalar token (`2972`, `true`, `"name"`), or `<>` (null). */
export type TreeValue = TreeNode | readonly TreeValue[] | string | null;

/**
 * Splits node text into tokens. `{ } ( )` are structure unless backslash-escaped;
 * PostgreSQL's outToken() escapes them (and spaces) inside names, so this never needs
 * to understand quoting.
 */
function tokenize(text: string): string[] {
  const tokens: string[] = [];
  let word = '';
  let inWord = false;
  const flush = () => {
    if (inWord) tokens.push(word);
    word = '';
    inWord = false;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === '\\') {
      word += text[i + 1] ?? '';
      inWord = true;
      i++;
    } else if (ch === '{' || ch === '}' || ch === '(' || ch === ')') {
      flush();
      tokens.push(ch);
    } else if (ch === ' ' || ch === '\n' || ch === '\t' || ch === '\r') {
      flush();
    } else {
      word += ch;
      inWord = true;
    }
  }
  flush();
  return tokens;
}

/**
 * Parses a `pg_node_tree` text into nodes and lists.
 *
 * @example
 * ```ts
 * const tree = parseNodeTree('{CONST :consttype 16 :constisnull false}');
 * // tree.type === 'CONST', tree.fields.get('consttype') === '16'
 * ```
 */
export function parseNodeTree(text: string): TreeValue {
  const tokens = tokenize(text);
  let pos = 0;
  const value = (): TreeValue => {
    const token = tokens[pos++];
    if (token === undefined) throw new SyntaxError('pg_node_tree ended early');
    if (token === '{') return node();
    if (token === '(') {
      const items: TreeValue[] = [];
      while (tokens[pos] !== ')') {
        if (pos >= tokens.length) throw new SyntaxError('unterminated list in pg_node_tree');
        items.push(value());
      }
      pos++;
      return items;
    }
    return token === '<>' ? null : token;
  };
  const node = (): TreeNode => {
    const type = tokens[pos++] ?? '';
    const fields = new Map<string, TreeValue>();
    while (tokens[pos] !== '}') {
      if (pos >= tokens.length) throw new SyntaxError(`unterminated ${type} node in pg_node_tree`);
      const name = tokens[pos++] as string;
      if (!name.startsWith(':')) continue; // e.g. the `[ 1 0 0 0 ]` bytes after a Const's length
      if (tokens[pos] === '}' || tokens[pos]?.startsWith(':')) fields.set(name.slice(1), null);
      else fields.set(name.slice(1), value());
    }
    pos++;
    return { type, fields };
  };
  return value();
}

/** True when `value` is a node (of `type`, if given). */
export function isNode(value: TreeValue | undefined, type?: string): value is TreeNode {
  // Array.isArray does not narrow readonly arrays away, hence the `in` test.
  return typeof value === 'object' && value !== null && 'type' in value && (!type || value.type === type);
}

/** A field read as a string token (`undefined` when absent, null or not a scalar). */
export function scalar(node: TreeNode, field: string): string | undefined {
  const v = node.fields.get(field);
  return typeof v === 'string' ? v : undefined;
}

/** A field read as a list (empty when absent or null). */
export function list(node: TreeNode, field: string): readonly TreeValue[] {
  const v = node.fields.get(field);
  return Array.isArray(v) ? v : [];
}

/** Where a node sits: how many sub-queries enclose it, and its ancestors (nearest last). */
export interface TreePosition {
  /** Number of enclosing `QUERY` nodes (sub-selects): 0 is the policy expression itself. */
  readonly depth: number;
  readonly ancestors: readonly TreeNode[];
}

/** Calls `visit` for every node under `root`, depth first, parents before children. */
export function walkTree(
  root: TreeValue,
  visit: (node: TreeNode, position: TreePosition) => void,
  start: TreePosition = { depth: 0, ancestors: [] },
): void {
  const go = (value: TreeValue, depth: number, ancestors: readonly TreeNode[]): void => {
    if (Array.isArray(value)) {
      for (const item of value) go(item, depth, ancestors);
      return;
    }
    if (!isNode(value)) return;
    visit(value, { depth, ancestors });
    const inner = value.type === 'QUERY' ? depth + 1 : depth;
    const next = [...ancestors, value];
    for (const field of value.fields.values()) go(field, inner, next);
  };
  go(root, start.depth, start.ancestors);
}
