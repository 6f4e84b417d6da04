/** A UUID in its canonical text form (any version, either case). */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * True when `value` is a UUID string. Checked before a value reaches a `uuid` parameter,
 * so a malformed id is "not found" or bad input, never a PostgreSQL error.
 *
 * @example
 * ```ts
 * if (!isUuid(id)) return undefined;
 * ```
 */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_PATTERN.test(value);
}
