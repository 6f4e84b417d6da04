/**
 * The soak's time series: one sample every 30 s (load seen in the period, memory of the
 * process), appended to a CSV as it is taken (a killed run keeps what it sampled), and drawn
 * as a PNG chart at the end.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { chartPng } from './line-chart.ts';

export interface Sample {
  /** Seconds since the load began. */
  readonly elapsedS: number;
  readonly requestsPerS: number;
  readonly requests: number;
  readonly errors: number;
  /** Requests refused as documented for the tenant's state (suspended, moving). */
  readonly refused: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly rssMb: number;
  /** Heap in use as sampled, garbage included. */
  readonly heapUsedMb: number;
  /** Heap in use after a full collection (NaN without `--expose-gc`): what is really retained. */
  readonly heapLiveMb: number;
  /** Heap the V8 has reserved (RSS less this is native memory, code and stacks). */
  readonly heapTotalMb: number;
  readonly externalMb: number;
  readonly moves: number;
  readonly suspensions: number;
  readonly loadAverage1m: number;
}

const COLUMNS: readonly (keyof Sample)[] = [
  'elapsedS',
  'requestsPerS',
  'requests',
  'errors',
  'refused',
  'p50Ms',
  'p99Ms',
  'rssMb',
  'heapUsedMb',
  'heapLiveMb',
  'heapTotalMb',
  'externalMb',
  'moves',
  'suspensions',
  'loadAverage1m',
];
const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Writes samples to `<out>.csv` as they come and the chart to `<out>.png` on `finish`. */
export class SampleLog {
  readonly samples: Sample[] = [];
  readonly #csv: string;
  readonly #png: string;

  constructor(out: string) {
    this.#csv = `${out}.csv`;
    this.#png = `${out}.png`;
    mkdirSync(dirname(this.#csv), { recursive: true });
    writeFileSync(this.#csv, `${COLUMNS.map(snake).join(',')}\n`);
  }

  add(sample: Sample): void {
    this.samples.push(sample);
    appendFileSync(
      this.#csv,
      `${COLUMNS.map((c) => (Number.isFinite(sample[c]) ? Number(sample[c].toFixed(2)) : '')).join(',')}\n`,
    );
  }

  /** Draws the chart; returns the paths written. */
  finish(title: string, subtitle: readonly string[]): { csv: string; png: string } {
    const s = this.samples;
    const minutes = s.map((x) => x.elapsedS / 60);
    const png = chartPng({
      title,
      subtitle,
      xLabel: 'minutes since the load began',
      x: minutes,
      panels: [
        {
          title: 'Throughput and errors (per 30 s period)',
          unit: 'requests/s',
          series: [
            { label: 'requests/s', color: '#1f77b4', values: s.map((x) => x.requestsPerS) },
            { label: 'errors (count)', color: '#d62728', values: s.map((x) => x.errors) },
            { label: 'refused as documented', color: '#ff7f0e', values: s.map((x) => x.refused) },
          ],
        },
        {
          title: 'Latency (per 30 s period)',
          unit: 'ms',
          series: [
            { label: 'p50', color: '#2ca02c', values: s.map((x) => x.p50Ms) },
            { label: 'p99', color: '#9467bd', values: s.map((x) => x.p99Ms) },
          ],
        },
        {
          title: 'Memory of the process (server and load)',
          unit: 'MB',
          series: [
            { label: 'RSS', color: '#1f77b4', values: s.map((x) => x.rssMb) },
            { label: 'heap reserved', color: '#17becf', values: s.map((x) => x.heapTotalMb) },
            { label: 'heap used', color: '#8c564b', values: s.map((x) => x.heapUsedMb) },
            { label: 'heap live (after GC)', color: '#e377c2', values: s.map((x) => x.heapLiveMb) },
            { label: 'external', color: '#7f7f7f', values: s.map((x) => x.externalMb) },
          ],
        },
      ],
    });
    writeFileSync(this.#png, png);
    return { csv: this.#csv, png: this.#png };
  }
}

/** Least-squares slope of `y` over `x` (units of y per unit of x). */
export function slope(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  if (n < 2) return Number.NaN;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((x[i] as number) - mx) * ((y[i] as number) - my);
    den += ((x[i] as number) - mx) ** 2;
  }
  return den ? num / den : Number.NaN;
}
