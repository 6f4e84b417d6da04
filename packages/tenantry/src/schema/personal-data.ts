import { TenantryError } from '../errors/catalog.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';

/**
 * Which columns of a tenant table hold one person's data, so that erasing that person
 * (`tenantry.eraseUser`, `DELETE /v1/users/{id}?erase=true`) reaches them. Declared in
 * `tenantTable({ …, personal })` and kept in the database as the comment of the `owner`
 * column, so erasure reads it from the catalog (like the tenant tables themselves).
 */
export interface PersonalData {
  /** The column naming the person: the user id (`uuid` or `text`) of whoever the row is about. */
  readonly owner: string;
  /**
   * The person's data in the row. `pseudonymise` clears them: `NULL` when the column is
   * nullable, else a pseudonym text (`erased-…`; other NOT NULL types are refused at erasure).
   */
  readonly columns: readonly string[];
  /**
   * `pseudonymise` (default): the row stays (an order, a comment); `owner` is replaced by a
   * random id, the same for all of the person's rows in the tenant and recorded nowhere, and
   * `columns` are cleared. `delete`: the person's rows are deleted (foreign keys decide what
   * happens to rows that point at them).
   */
  readonly mode?: 'pseudonymise' | 'delete';
}

/** What the owner column's comment starts with; the declaration follows as JSON. */
export const PERSONAL_MARKER = 'tenantry:personal ';

/**
 * Checks a declaration against the table's columns and returns the statement that records it.
 *
 * @example
 * ```ts
 * personalDataSql('"notes"', { owner: 'author_id', columns: ['author_email'] }, ['author_id', 'author_email'], ['id']);
 * // COMMENT ON COLUMN "notes"."author_id" IS 'tenantry:personal {"columns":["author_email"],"mode":"pseudonymise"}'
 * ```
 */
export function personalDataSql(
  target: string,
  personal: PersonalData,
  columns: readonly string[],
  primaryKey: readonly string[],
): string {
  const fail = (why: string) => new TenantryError('SCHEMA_DEFINITION_INVALID', `${target}: personal ${why}`);
  const known = new Set(columns);
  if (!known.has(personal.owner)) throw fail(`owner names unknown column ${personal.owner}`);
  const mode = personal.mode ?? 'pseudonymise';
  if (mode !== 'pseudonymise' && mode !== 'delete') throw fail(`mode must be 'pseudonymise' or 'delete'`);
  if (mode === 'pseudonymise' && primaryKey.includes(personal.owner)) {
    throw fail('owner is part of the primary key: pseudonymising would change row identities (use delete)');
  }
  for (const c of personal.columns ?? []) {
    if (!known.has(c)) throw fail(`columns names unknown column ${c}`);
    if (c === personal.owner) throw fail(`columns lists the owner column ${c}`);
    if (primaryKey.includes(c)) throw fail(`column ${c} is part of the primary key`);
  }
  const declaration = JSON.stringify({ columns: [...(personal.columns ?? [])], mode });
  return `COMMENT ON COLUMN ${target}.${quoteIdent(personal.owner)} IS ${quoteLiteral(PERSONAL_MARKER + declaration)}`;
}

/** The declaration recorded in an owner column's comment, or `undefined` for any other comment. */
export function parsePersonalComment(
  comment: string | null,
): { columns: string[]; mode: 'pseudonymise' | 'delete' } | undefined {
  if (!comment?.startsWith(PERSONAL_MARKER)) return undefined;
  const parsed = JSON.parse(comment.slice(PERSONAL_MARKER.length)) as { columns?: unknown; mode?: unknown };
  const columns = Array.isArray(parsed.columns) ? parsed.columns.filter((c) => typeof c === 'string') : [];
  return { columns, mode: parsed.mode === 'delete' ? 'delete' : 'pseudonymise' };
}
