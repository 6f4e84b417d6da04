/** A microsecond UTC time as list cursors carry it: `YYYY-MM-DDTHH:MM:SS.ffffff`, then `suffix`. */
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}/;

/**
 * True for a real calendar time in the cursor format (`2026-12-07T00:31:02.123456`, then
 * `suffix`, e.g. `Z`). `Date.parse` would accept "1", "2020-02-30" or year 0, which
 * PostgreSQL refuses: a forged cursor must be a 400, never reach SQL as a 500.
 *
 * @example
 * ```ts
 * isCursorTime('2026-02-30T00:00:00.000000'); // false
 * ```
 */
export function isCursorTime(value: unknown, suffix = ''): value is string {
  if (typeof value !== 'string' || !MICRO_TIME.test(value) || value.length !== 26 + suffix.length) return false;
  if (!value.endsWith(suffix)) return false;
  const date = new Date(`${value.slice(0, 23)}Z`);
  return (
    !Number.isNaN(date.getTime()) &&
    date.getUTCFullYear() >= 1 &&
    date.toISOString().slice(0, 19) === value.slice(0, 19)
  );
}
