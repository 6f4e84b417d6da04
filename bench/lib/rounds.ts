/** Command-line options of the benchmarks that alternate their sides in timed rounds (`measureSides`). */
import { parseArgs } from 'node:util';
import { positive } from './argv.ts';

/** How long and how often each side runs, and at which concurrencies. */
export interface RoundOptions {
  readonly seconds: number;
  readonly rounds: number;
  readonly warmup: number;
  readonly clients: readonly number[];
}

/**
 * Parses `--seconds --rounds --warmup --clients --quick` and the benchmark's own whole-number
 * options, `extra`: name → [default, default with `--quick`]. `--quick`: 3 s, 2 rounds, 0.3 s warm-up.
 */
export function parseRoundOptions<K extends string>(
  argv: readonly string[],
  clients: string,
  extra: Record<K, readonly [number, number]>,
): RoundOptions & Readonly<Record<K, number>> {
  const names = Object.keys(extra) as K[];
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      clients: { type: 'string' },
      quick: { type: 'boolean', default: false },
      ...Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])),
    },
  });
  const quick = values.quick === true;
  const own = Object.fromEntries(
    names.map((name) => {
      const [full, short] = extra[name];
      return [
        name,
        Math.round(
          positive(
            (values as Record<string, unknown>)[name] as string | undefined,
            quick ? short : full,
            `--${name}`,
            false,
          ),
        ),
      ];
    }),
  ) as Record<K, number>;
  return Object.freeze({
    seconds: positive(values.seconds as string | undefined, quick ? 3 : 12, '--seconds', false),
    rounds: Math.round(positive(values.rounds as string | undefined, quick ? 2 : 6, '--rounds', false)),
    warmup: positive(values.warmup as string | undefined, quick ? 0.3 : 1, '--warmup', false),
    clients: Object.freeze(
      ((values.clients as string | undefined) ?? clients)
        .split(',')
        .map((c) => Math.round(positive(c, 1, '--clients', false))),
    ),
    ...own,
  });
}
