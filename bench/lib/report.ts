import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { SideResult, Slice } from './measure.ts';
import { fixed } from './print.ts';
import { median } from './stats.ts';
import { table } from './table.ts';
import type { WireCounts } from './wire-counter.ts';
import type { SideKey } from './workloads.ts';

/** The target: Tenantry costs at most 10% against the baseline. */
export const TARGET = Object.freeze({ latency: 1.1, throughput: 0.91 });

/** Where the figures came from. */
export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly postgres: string;
  readonly loadAverage: readonly number[];
}

export async function describeMachine(postgresVersion: string): Promise<Machine> {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const info = await readFile('/proc/cpuinfo', 'utf8');
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpuModel;
  } catch {
    // Not Linux: os.cpus() is good enough.
  }
  return {
    cpus: os.availableParallelism(),
    cpuModel,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: postgresVersion,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/**
 * Ratios of one Tenantry side against the baseline (and against autocommit, when measured).
 * Latency and throughput ratios are medians of the per-round ratios: the sides of one round
 * ran within seconds of each other, so a burst of load from elsewhere on the machine hits
 * a pair together rather than skewing one side's median.
 */
export interface Ratios {
  readonly side: SideKey;
  /** p50 latency of the side / p50 of `a`: the "b/a latency" of the target. */
  readonly latency: number;
  /** p99 / p99 of `a`, over all transactions (information: p99 is noisy on a shared machine). */
  readonly p99: number;
  /** tx/s of the side / tx/s of `a`: the "b/a throughput" of the target. */
  readonly throughput: number;
  readonly pass: boolean;
  readonly vsAutocommit?: { readonly latency: number; readonly throughput: number } | undefined;
}

function paired(x: SideResult, y: SideResult, f: (s: Slice) => number): number {
  const n = Math.min(x.rounds.length, y.rounds.length);
  const values: number[] = [];
  for (let i = 0; i < n; i++) values.push(f(x.rounds[i] as Slice) / f(y.rounds[i] as Slice));
  return median(values);
}

export function ratios(results: readonly SideResult[]): Ratios[] {
  const get = (k: SideKey) => results.find((r) => r.key === k);
  const a = get('a');
  const c = get('c');
  if (!a) return [];
  return results
    .filter((r) => r.key === 'b' || r.key === 'b-raw' || r.key === 'q' || r.key === 'q-prep')
    .map((r) => {
      const latency = paired(r, a, (s) => s.p50);
      const throughput = paired(r, a, (s) => s.tps);
      return {
        side: r.key,
        latency,
        p99: r.p99 / a.p99,
        throughput,
        pass: latency <= TARGET.latency && throughput >= TARGET.throughput,
        vsAutocommit: c ? { latency: paired(r, c, (s) => s.p50), throughput: paired(r, c, (s) => s.tps) } : undefined,
      };
    });
}

/** The block printed after each workload and client count. */
export function formatBlock(title: string, clients: number, results: readonly SideResult[]): string {
  const rows = results.map((r) => [
    r.key,
    r.label,
    fixed(r.tps, 0),
    fixed(r.p50, 3),
    fixed(r.p99, 3),
    fixed(r.nodeCpuUs, 0),
    fixed(r.pgCpuUs, 0),
  ]);
  const out = [
    `── ${title} — ${clients} client${clients === 1 ? '' : 's'} ${'─'.repeat(Math.max(0, 60 - title.length))}`,
    table(['side', 'what', 'tx/s', 'p50 ms', 'p99 ms', 'node µs/tx', 'pg µs/tx'], rows, 2),
  ];
  for (const r of ratios(results)) {
    const verdict = r.pass ? 'PASS' : 'MISS';
    const target = r.side === 'b' ? ` → ${verdict}` : ` (${verdict.toLowerCase()}, info)`;
    out.push(
      `${r.side}/a latency ${fixed(r.latency, 2)} (p99 ${fixed(r.p99, 2)})   ${r.side}/a throughput ${fixed(r.throughput, 2)}${target}` +
        (r.vsAutocommit
          ? `   ${r.side}/c latency ${fixed(r.vsAutocommit.latency, 2)}  ${r.side}/c throughput ${fixed(r.vsAutocommit.throughput, 2)}`
          : ''),
    );
  }
  return out.join('\n');
}

/** The closing summary: one line per workload and client count. */
export function formatSummary(
  blocks: readonly { title: string; clients: number; results: readonly SideResult[] }[],
): string {
  const rows: string[][] = [];
  for (const block of blocks) {
    const all = ratios(block.results);
    const b = all.find((r) => r.side === 'b');
    const raw = all.find((r) => r.side === 'b-raw');
    const a = block.results.find((r) => r.key === 'a');
    const bResult = block.results.find((r) => r.key === 'b');
    rows.push([
      block.title,
      String(block.clients),
      fixed(a?.tps ?? Number.NaN, 0),
      fixed(bResult?.tps ?? Number.NaN, 0),
      fixed(b?.latency ?? Number.NaN, 2),
      fixed(b?.throughput ?? Number.NaN, 2),
      b ? (b.pass ? 'PASS' : 'MISS') : '',
      fixed(raw?.latency ?? Number.NaN, 2),
      fixed(raw?.throughput ?? Number.NaN, 2),
      b?.vsAutocommit ? fixed(b.vsAutocommit.latency, 2) : '',
    ]);
  }
  return table(
    [
      'workload',
      'clients',
      'a tx/s',
      'b tx/s',
      'b/a latency',
      'b/a throughput',
      'target',
      'b-raw/a lat',
      'b-raw/a thr',
      'b/c lat',
    ],
    rows,
    1,
  );
}

export function formatWire(rows: readonly { workload: string; side: SideKey; counts: WireCounts }[]): string {
  return table(
    ['workload', 'side', 'round trips/tx', 'ReadyForQuery/tx', 'frontend messages/tx', 'bytes up/tx', 'bytes down/tx'],
    rows.map((r) => [
      r.workload,
      r.side,
      fixed(r.counts.roundTrips, 2),
      fixed(r.counts.readyForQuery, 2),
      Object.entries(r.counts.frontend)
        // Connection open/close (a pool's idle timeout) is not per-transaction traffic.
        .filter(([t]) => t !== 'X' && t !== 'startup')
        .map(([t, n]) => `${t}×${Number.isInteger(n) ? n : n.toFixed(2)}`)
        .join(' '),
      fixed(r.counts.bytesUp, 0),
      fixed(r.counts.bytesDown, 0),
    ]),
    2,
  );
}

/** What each breakdown step adds to the one it builds on. */
const STEP_BASE: Readonly<Record<string, string>> = {
  'a+pipe': 'a',
  'a+enter': 'a+pipe',
  'r+enter': 'a+enter',
  'r+lazy': 'r+enter',
  'b-sql': 'r+enter',
  'b-raw': 'b-sql',
  b: 'b-sql',
};

/** Median over rounds of `f(x) − f(y)` of the same round. */
function pairedDelta(x: SideResult, y: SideResult, f: (s: Slice) => number): number {
  const n = Math.min(x.rounds.length, y.rounds.length);
  const values: number[] = [];
  for (let i = 0; i < n; i++) values.push(f(x.rounds[i] as Slice) - f(y.rounds[i] as Slice));
  return median(values);
}

/** For the breakdown: each step's added p50 latency and CPU against the step it builds on (paired by round). */
export function formatSteps(results: readonly SideResult[]): string {
  const get = (k: string) => results.find((r) => r.key === k);
  const rows: string[][] = [];
  for (const r of results) {
    const base = STEP_BASE[r.key];
    const b = base ? get(base) : undefined;
    if (!b) continue;
    rows.push([
      `${b.key} → ${r.key}`,
      fixed(pairedDelta(r, b, (s) => s.p50) * 1000, 0),
      fixed(
        pairedDelta(r, b, (s) => s.nodeCpuUs),
        0,
      ),
      fixed(
        pairedDelta(r, b, (s) => s.pgCpuUs),
        0,
      ),
    ]);
  }
  return table(['step', '+p50 µs', '+node µs/tx', '+pg µs/tx'], rows, 1);
}
