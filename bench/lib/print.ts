/** Printing a benchmark's lines and figures. */

/** One line on standard output. */
export const log = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

/** `n` with `digits` decimals, or `n/a` when it is not a finite number. */
export const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

/** Seconds since `t0` (a `performance.now()`), e.g. `12.3 s`. */
export const since = (t0: number): string => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
