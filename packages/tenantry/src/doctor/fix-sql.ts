import { type ContextDialect, postgresDialect } from '../context/context-dialect.ts';
import { quoteIdent } from '../sql.ts';

/** The parenthesised group starting at the first `(` at or after `from`, outside quotes. */
function group(def: string, from: number): { open: number; close: number; items: string[] } | undefined {
  let open = -1;
  let depth = 0;
  let quote: string | undefined;
  let start = 0;
  const items: string[] = [];
  for (let i = from; i < def.length; i++) {
    const ch = def[i] as string;
    if (quote) {
      if (ch !== quote) continue;
      if (def[i + 1] === quote)
        i++; // a doubled quote inside "…" or '…' is the character itself
      else quote = undefined;
      continue;
    }
    if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '(') {
      depth++;
      if (depth === 1 && open < 0) {
        open = i;
        start = i + 1;
      }
    } else if (ch === ')') {
      depth--;
      if (depth === 0 && open >= 0) {
        items.push(def.slice(start, i).trim());
        return { open, close: i, items };
      }
    } else if (ch === ',' && depth === 1 && open >= 0) {
      items.push(def.slice(start, i).trim());
      start = i + 1;
    }
  }
  return undefined;
}

/** True when a key element (`tenant_id`, `"tenant_id" DESC`) is the tenant column itself. */
function isColumn(element: string, column: string): boolean {
  const first = element.startsWith('"') ? element.slice(0, element.indexOf('"', 1) + 1) : element.split(/\s/)[0];
  return first === column || first === quoteIdent(column);
}

/**
 * Rewrites the first key list at or after `from` in a definition (from
 * `pg_get_indexdef()` or `pg_get_constraintdef()`) so `column` leads it, moving it if it
 * was elsewhere. `element` is what goes first (`"tenant_id" WITH =` for an exclusion
 * constraint).
 */
export function leadWith(def: string, column: string, from = 0, element = quoteIdent(column)): string {
  const g = group(def, from);
  if (!g) return def;
  const items = [element, ...g.items.filter((item) => item !== '' && !isColumn(item, column))];
  return `${def.slice(0, g.open + 1)}${items.join(', ')}${def.slice(g.close)}`;
}

/**
 * `CREATE INDEX …` with the tenant column leading its key columns. Hash indexes hold one
 * column, so they become btree; GIN and GiST need btree_gin/btree_gist to index a uuid.
 *
 * @example
 * ```ts
 * indexWithTenant('CREATE INDEX d_search ON public.d USING gin (search)', 'tenant_id');
 * // 'CREATE EXTENSION IF NOT EXISTS btree_gin; CREATE INDEX d_search ON public.d USING gin ("tenant_id", search)'
 * ```
 */
export function indexWithTenant(indexDef: string, column: string): string {
  const using = /\sUSING\s+(\w+)\s*\(/.exec(indexDef);
  if (!using) return indexDef;
  const method = using[1] as string;
  let def = leadWith(indexDef, column, using.index + using[0].length - 1);
  if (method === 'hash') def = def.replace(/\sUSING\s+hash\s*\(/, ' USING btree (');
  const extension = method === 'gin' ? 'btree_gin' : method === 'gist' ? 'btree_gist' : undefined;
  return extension ? `CREATE EXTENSION IF NOT EXISTS ${extension}; ${def}` : def;
}

/**
 * A foreign key definition made composite: the tenant column pairs with the referenced
 * table's tenant column, replacing whatever column was paired with it, else leading both
 * lists. `ON DELETE SET NULL`/`SET DEFAULT` get an explicit column list (PostgreSQL 15+),
 * since nulling tenant_id itself would violate NOT NULL.
 *
 * @example
 * ```ts
 * foreignKeyWithTenant('FOREIGN KEY (item_id) REFERENCES items(id) ON DELETE CASCADE', 'tenant_id', ['item_id'], ['id']);
 * // 'FOREIGN KEY ("tenant_id", "item_id") REFERENCES items ("tenant_id", "id") ON DELETE CASCADE'
 * ```
 */
export function foreignKeyWithTenant(
  fkDef: string,
  column: string,
  own: readonly string[],
  referenced: readonly string[],
): string {
  const at = fkDef.indexOf(' REFERENCES ');
  const refGroup = at < 0 ? undefined : group(fkDef, at);
  if (!refGroup) return fkDef;
  const paired = referenced.indexOf(column);
  const mine = paired >= 0 ? own.map((c, i) => (i === paired ? column : c)) : [column, ...own];
  const theirs = paired >= 0 ? referenced : [column, ...referenced];
  const target = fkDef.slice(at + ' REFERENCES '.length, refGroup.open).trim();
  const tail = fkDef
    .slice(refGroup.close + 1)
    .replace(/ON DELETE SET (NULL|DEFAULT)(?!\s*\()/, (m) => `${m} (${own.map(quoteIdent).join(', ')})`);
  const list = (cols: readonly string[]) => cols.map(quoteIdent).join(', ');
  return `FOREIGN KEY (${list(mine)}) REFERENCES ${target} (${list(theirs)})${tail}`;
}

/** An expression from `pg_get_expr()` as one parenthesised clause (it may or may not bring its own). */
export function clause(expression: string): string {
  const g = group(expression, 0);
  return g && g.open === 0 && g.close === expression.length - 1 ? expression : `(${expression})`;
}

/** Deparsed SQL on one line, for messages. */
export function oneLine(sql: string | null): string {
  return (sql ?? '').replace(/\s+/g, ' ').trim();
}

/** The isolation predicate of `dialect` on the tenant column, for CREATE/ALTER POLICY fixes. */
export function tenantPredicate(column: string, dialect: ContextDialect = postgresDialect): string {
  return dialect.policyPredicate(quoteIdent(column));
}
