/** Command-line values shared by the benchmarks. */

/** The server a benchmark runs against: `DATABASE_URL`, or a local superuser by default. */
export function benchDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
}

/**
 * The number an option gives, or `fallback` when it is absent. Throws a readable error
 * naming `what` (e.g. `--seconds`) unless it is positive (and, with `integer`, whole).
 */
export function positive(value: string | undefined, fallback: number, what: string, integer: boolean): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`${what} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}
