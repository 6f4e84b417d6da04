import type { IsolationTier } from '../../packages/tenantry/src/index.ts';

/**
 * One distinct thing that went wrong. A `leak` is another tenant's row, id or text reaching
 * a caller, or a write landing outside the caller's own copy of the tables; an `anomaly`
 * is anything else the model did not allow: a lost acknowledged write, a row nobody wrote,
 * a 5xx, an unexpected error or status.
 */
export interface IsolationFinding {
  readonly severity: 'leak' | 'anomaly';
  readonly kind: string;
  readonly what: string;
  count: number;
  /** The first occurrence: enough to replay it. */
  readonly example: {
    readonly op: number;
    readonly tenant: string;
    readonly tier: IsolationTier;
    readonly detail: string;
  };
}

export interface IsolationFuzzReport {
  readonly seed: number;
  readonly ops: number;
  /** Tenant transactions and HTTP requests the operations ran in (reads may share a transaction). */
  readonly transactions: number;
  readonly concurrency: number;
  readonly opsByKind: Readonly<Record<string, number>>;
  /** Mean latency of an operation of each kind, ms. */
  readonly msPerOpByKind: Readonly<Record<string, number>>;
  readonly opsByTier: Readonly<Record<IsolationTier, number>>;
  readonly tenants: Readonly<Record<IsolationTier, number>>;
  readonly checks: number;
  readonly leaks: number;
  readonly anomalies: number;
  readonly findings: readonly IsolationFinding[];
  /** The final superuser sweep: copies of `items` read, rows in them. */
  readonly sweep: { readonly copies: number; readonly rows: number };
  readonly durationMs: number;
  /** Setup (tenants, keys) and sweep, included in `durationMs`. */
  readonly setupMs: number;
  readonly sweepMs: number;
  readonly excluded: readonly string[];
}

/** The report as people read it: figures, then each distinct finding with what replays it. */
export function formatIsolationReport(report: IsolationFuzzReport, replay?: string): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const n = (x: number) => x.toLocaleString('en-US');
  const tenants = Object.entries(report.tenants)
    .map(([tier, count]) => `${count} ${tier}`)
    .join(', ');
  const lines = [
    `isolation fuzz: seed ${report.seed}, ${n(report.ops)} ops in ${n(report.transactions)} transactions and requests, concurrency ${report.concurrency}, tenants ${tenants}`,
    `time: ${s(report.durationMs)} (setup ${s(report.setupMs)}, sweep ${s(report.sweepMs)}), ${n(Math.round(report.ops / ((report.durationMs - report.setupMs - report.sweepMs) / 1000)))} ops/s`,
    `ops by tier: ${Object.entries(report.opsByTier)
      .map(([tier, count]) => `${tier} ${n(count)}`)
      .join(', ')}`,
    'ops by kind (count, mean latency):',
    ...Object.entries(report.opsByKind).map(
      ([kind, count]) =>
        `  ${kind.padEnd(30)} ${n(count).padStart(9)}  ${(report.msPerOpByKind[kind] ?? 0).toFixed(1).padStart(7)} ms`,
    ),
    ...(report.excluded.length ? [`excluded kinds: ${report.excluded.join(', ')}`] : []),
    `sweep: ${report.sweep.copies} copies of items, ${n(report.sweep.rows)} rows`,
    `checks: ${n(report.checks)}`,
    `leaks: ${n(report.leaks)}`,
    `anomalies: ${n(report.anomalies)}`,
  ];
  for (const f of report.findings) {
    lines.push(
      `${f.severity.toUpperCase()} ×${n(f.count)} [${f.kind}] ${f.what}`,
      `  first: ${f.example.op < 0 ? 'in the final sweep' : `op #${f.example.op} by ${f.example.tenant} (${f.example.tier})`}: ${f.example.detail}`,
    );
  }
  if (report.findings.length && replay) lines.push(`replay: ${replay}`);
  return lines.join('\n');
}
