import { TenantryError } from './errors/catalog.ts';

/**
 * Quotes an SQL identifier. Identifiers are escaped exactly once, here, at the boundary
 * where names become SQL text.
 */
export function quoteIdent(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.includes('\0')) {
    throw new TenantryError('USAGE_ERROR', `invalid SQL identifier ${JSON.stringify(name)}`);
  }
  return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes a string literal (for the rare DDL that takes no bind parameters). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new TenantryError('USAGE_ERROR', 'SQL literal contains a NUL byte');
  return `'${value.replaceAll("'", "''")}'`;
}

/** `schema.name`, each part quoted. */
export function qualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}
