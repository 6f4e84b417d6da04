import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type pg from 'pg';
import type { Machine as BaseMachine } from '../lib/report.ts';

/** Where the figures came from: the core benchmark's machine facts, plus the source measured. */
export interface Machine extends BaseMachine {
  /** The commit measured, and how many files of `packages/tenantry/src` differ from it. */
  readonly source: string;
}

/** `git` state of the Tenantry sources measured (read-only git commands). */
function sourceState(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', stdio: 'pipe' }).trim();
    const commit = git('rev-parse', '--short', 'HEAD');
    const changed = git('status', '--porcelain', '--', 'packages/tenantry/src').split('\n').filter(Boolean).length;
    return changed ? `${commit} + ${changed} uncommitted file(s) in packages/tenantry/src` : commit;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function describeMachine(postgres: string): Machine {
  const cpuinfo = read('/proc/cpuinfo') ?? '';
  return {
    cpus: os.availableParallelism(),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
    source: sourceState(),
  };
}

/** Jiffies spent busy and in all, over every CPU of the machine (`/proc/stat`), or undefined off Linux. */
export function machineTicks(): { busy: number; total: number } | undefined {
  const line = read('/proc/stat')?.split('\n', 1)[0];
  if (!line?.startsWith('cpu ')) return undefined;
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

let clockTicks: number | undefined;
/** Jiffies per second (`getconf CLK_TCK`, almost always 100). */
export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of a process, in jiffies, or undefined when it is gone (or not on this machine). */
function processTicks(pid: number): number | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  // Fields after the command name (which may hold spaces) start at field 3 (state).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * CPU time of the PostgreSQL backends serving one side, told apart by `application_name`.
 * PostgreSQL must run on this machine (its pids are read from `/proc`); otherwise every
 * reading is undefined. A backend that exits mid-round loses its last slice; one born
 * mid-round counts whole.
 */
export class BackendCpu {
  readonly #monitor: pg.Client;
  readonly #database: string;

  constructor(monitor: pg.Client, database: string) {
    this.#monitor = monitor;
    this.#database = database;
  }

  async snapshot(applicationName: string): Promise<Map<number, number>> {
    const { rows } = await this.#monitor.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2',
      [this.#database, applicationName],
    );
    const ticks = new Map<number, number>();
    for (const { pid } of rows) {
      const t = processTicks(pid);
      if (t !== undefined) ticks.set(pid, t);
    }
    return ticks;
  }

  /** Microseconds of CPU between two snapshots, or undefined when no backend could be read. */
  static microseconds(before: Map<number, number>, after: Map<number, number>): number | undefined {
    if (after.size === 0) return undefined;
    let ticks = 0;
    for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
    return (ticks / ticksPerSecond()) * 1e6;
  }
}

/** Server-side counters of one database (`pg_stat_database`). */
export interface DatabaseStats {
  readonly xactCommit: number;
  readonly xactRollback: number;
  readonly tupReturned: number;
  readonly tupFetched: number;
  /** Milliseconds backends spent running statements (PostgreSQL 14+). */
  readonly activeMs: number;
  /** Milliseconds backends sat idle inside an open transaction, waiting for the client (PostgreSQL 14+). */
  readonly idleInTransactionMs: number;
}

export async function databaseStats(monitor: pg.Client, database: string): Promise<DatabaseStats> {
  const { rows } = await monitor.query<Record<string, string | null>>(
    `SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, active_time, idle_in_transaction_time
       FROM pg_stat_database WHERE datname = $1`,
    [database],
  );
  const r = rows[0] ?? {};
  const n = (v: string | null | undefined) => Number(v ?? 0);
  return {
    xactCommit: n(r.xact_commit),
    xactRollback: n(r.xact_rollback),
    tupReturned: n(r.tup_returned),
    tupFetched: n(r.tup_fetched),
    activeMs: n(r.active_time),
    idleInTransactionMs: n(r.idle_in_transaction_time),
  };
}
