/** A block of side results as ratios to one baseline side, for benchmarks with alternating sides. */
import type { SideResult } from './measure.ts';
import { fixed } from './print.ts';
import { table } from './table.ts';

/**
 * One row per side: throughput, p50 and p99, CPU per transaction of PostgreSQL's backends and
 * of this process, and the side's cost relative to `baseKey` (p50 over the baseline's p50, the
 * baseline's tx/s over the side's): 1.10 means 10 % slower.
 */
export function costTable(title: string, results: readonly SideResult[], baseKey: string): string {
  const base = results.find((r) => r.key === baseKey);
  if (!base) throw new Error(`no side ${baseKey}`);
  const rows = results.map((r) => [
    r.label,
    fixed(r.tps, 0),
    fixed(r.p50, 3),
    fixed(r.p99, 3),
    fixed(r.pgCpuUs, 0),
    fixed(r.nodeCpuUs, 0),
    fixed(r.p50 / base.p50, 2),
    fixed(base.tps / r.tps, 2),
  ]);
  const head = ['side', 'tx/s', 'p50 ms', 'p99 ms', 'pg µs/tx', 'node µs/tx', 'p50 ratio', 'time ratio'];
  return [`── ${title} ──`, table(head, rows, 1)].join('\n');
}
