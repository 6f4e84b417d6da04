import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import { median, quantile } from './stats.ts';
import type { Side, SideKey } from './workloads.ts';

/** One timed run of one side. */
export interface Slice {
  readonly transactions: number;
  readonly seconds: number;
  readonly tps: number;
  /** Latency percentiles of one transaction, in ms (nearest rank). */
  readonly p50: number;
  readonly p99: number;
  /** CPU of this Node process per transaction, in µs (user + system). */
  readonly nodeCpuUs: number;
  /** CPU of the PostgreSQL backends of the benchmark database per transaction, in µs; NaN when unreadable. */
  readonly pgCpuUs: number;
}

/**
 * A side over all rounds: tx/s and CPU per transaction are medians over the rounds;
 * p50 and p99 are over every transaction of every round.
 */
export interface SideResult extends Slice {
  readonly key: SideKey;
  readonly label: string;
  readonly rounds: readonly Slice[];
}

/**
 * CPU time of the benchmark database's client backends, from `/proc/<pid>/schedstat`
 * (nanoseconds on CPU; finer than the 10 ms ticks of `/proc/<pid>/stat`). Works when
 * PostgreSQL runs on this machine and its `/proc` entries are readable; else NaN.
 */
export class ServerCpu {
  readonly #monitor: pg.Pool;

  constructor(monitor: pg.Pool) {
    this.#monitor = monitor;
  }

  async #pids(): Promise<number[]> {
    const { rows } = await this.#monitor.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    );
    return rows.map((r) => r.pid);
  }

  static async #read(pids: readonly number[]): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    await Promise.all(
      pids.map(async (pid) => {
        try {
          const text = await readFile(`/proc/${pid}/schedstat`, 'utf8');
          out.set(pid, Number(text.split(' ')[0]));
        } catch {
          // Gone, or not on this machine.
        }
      }),
    );
    return out;
  }

  /** Starts a measurement; the returned function gives the nanoseconds used since, or NaN. */
  async start(): Promise<() => Promise<number>> {
    const pids = await this.#pids();
    const before = await ServerCpu.#read(pids);
    return async () => {
      if (before.size === 0) return Number.NaN;
      const after = await ServerCpu.#read([...before.keys()]);
      let ns = 0;
      for (const [pid, t] of after) ns += t - (before.get(pid) as number);
      return ns;
    };
  }
}

/**
 * Runs `side` on `clients` concurrent loops for `seconds`: each loop starts its next
 * transaction as soon as the previous one settles. Transactions in flight at the deadline
 * finish and count; the elapsed time includes them.
 */
export async function runSlice(
  side: Side,
  clients: number,
  seconds: number,
  cpu?: ServerCpu,
): Promise<{ slice: Slice; latencies: Float64Array }> {
  const latencies: number[] = [];
  const stopServerCpu = cpu ? await cpu.start() : undefined;
  const nodeBefore = process.cpuUsage();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await side.run();
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: clients }, loop));
  const elapsed = (performance.now() - start) / 1000;
  const node = process.cpuUsage(nodeBefore);
  const serverNs = stopServerCpu ? await stopServerCpu() : Number.NaN;
  const sorted = Float64Array.from(latencies).sort();
  const n = latencies.length;
  const slice = {
    transactions: n,
    seconds: elapsed,
    tps: n / elapsed,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    nodeCpuUs: (node.user + node.system) / n,
    pgCpuUs: serverNs / 1000 / n,
  };
  return { slice, latencies: sorted };
}

/** One side over its rounds (see {@link SideResult}). */
export function summarize(
  key: SideKey,
  label: string,
  rounds: readonly Slice[],
  latencies: readonly Float64Array[],
): SideResult {
  const m = (f: (s: Slice) => number) => median(rounds.map(f));
  const all = new Float64Array(latencies.reduce((n, l) => n + l.length, 0));
  let offset = 0;
  for (const l of latencies) {
    all.set(l, offset);
    offset += l.length;
  }
  all.sort();
  return {
    key,
    label,
    rounds,
    transactions: rounds.reduce((sum, r) => sum + r.transactions, 0),
    seconds: rounds.reduce((sum, r) => sum + r.seconds, 0),
    tps: m((r) => r.tps),
    p50: quantile(all, 0.5),
    p99: quantile(all, 0.99),
    nodeCpuUs: m((r) => r.nodeCpuUs),
    pgCpuUs: m((r) => r.pgCpuUs),
  };
}

/**
 * Measures every side of a workload: a warm-up of each, then `rounds` rounds that each run
 * every side for `seconds / rounds`, in order a, b, … on even rounds and reversed on odd
 * ones, so drift and noise on the shared machine hit all sides alike.
 */
export async function measureSides(
  sides: readonly Side[],
  options: { clients: number; seconds: number; rounds: number; warmup: number; cpu?: ServerCpu | undefined },
  onSlice?: (key: SideKey, round: number, slice: Slice) => void,
): Promise<SideResult[]> {
  if (options.warmup > 0) {
    for (const side of sides) await runSlice(side, options.clients, options.warmup);
  }
  const slices = new Map<SideKey, Slice[]>(sides.map((s) => [s.key, []]));
  const latencies = new Map<SideKey, Float64Array[]>(sides.map((s) => [s.key, []]));
  const per = options.seconds / options.rounds;
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      const { slice, latencies: l } = await runSlice(side, options.clients, per, options.cpu);
      slices.get(side.key)?.push(slice);
      latencies.get(side.key)?.push(l);
      onSlice?.(side.key, round, slice);
    }
  }
  return sides.map((s) => summarize(s.key, s.label, slices.get(s.key) ?? [], latencies.get(s.key) ?? []));
}
