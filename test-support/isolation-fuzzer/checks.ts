import type { Model, Op, Row, TenantState, Version } from './model.ts';
import type { IsolationFinding } from './report.ts';
import { MARKER, markerOf } from './text.ts';

/**
 * Findings and the checks that make them: every row read and every answer is held to the
 * model; what it does not allow is a finding, grouped by severity, kind and what.
 */
export class Checker {
  readonly findings = new Map<string, IsolationFinding>();
  checks = 0;
  leaks = 0;
  anomalies = 0;
  readonly #model: Model;
  readonly #onFinding: ((finding: IsolationFinding) => void) | undefined;

  constructor(model: Model, onFinding?: (finding: IsolationFinding) => void) {
    this.#model = model;
    this.#onFinding = onFinding;
  }

  fail(op: Op, severity: IsolationFinding['severity'], what: string, detail: string): void {
    if (severity === 'leak') this.leaks++;
    else this.anomalies++;
    const key = `${severity}\u0000${op.kind}\u0000${what}`;
    const found = this.findings.get(key);
    if (found) {
      found.count++;
      return;
    }
    const t = op.tenant.record;
    const finding: IsolationFinding = {
      severity,
      kind: op.kind,
      what,
      count: 1,
      example: {
        op: op.index,
        tenant: t.slug,
        tier: t.tier,
        detail: `${op.via ?? ''}${op.detail} → ${detail}`.slice(0, 2000),
      },
    };
    this.findings.set(key, finding);
    this.#onFinding?.(finding);
  }

  /** The index of another tenant whose marker is in `s`, if any. */
  foreignMarker(t: TenantState, s: string | null | undefined): number | undefined {
    if (!s) return undefined;
    for (const m of s.matchAll(MARKER)) {
      const owner = Number(m[1]);
      if (owner !== t.i) return owner;
    }
    return undefined;
  }

  /**
   * A row `op`'s tenant read: its tenant, its text and its id must be the tenant's, and its
   * version one the model allows a read that started at `op.start` to see.
   */
  checkRow(op: Op, row: Row): void {
    const t = op.tenant;
    this.checks++;
    const show = () => JSON.stringify(row).slice(0, 300);
    if (row.tenant_id !== undefined && row.tenant_id !== t.record.id) {
      const owner = this.#model.byId.get(row.tenant_id);
      this.fail(op, 'leak', `row of another tenant (${owner?.record.tier ?? 'unknown'} tier)`, show());
      return;
    }
    const foreign = this.foreignMarker(t, row.title) ?? this.foreignMarker(t, row.description);
    if (foreign !== undefined) {
      this.fail(op, 'leak', `text of another tenant (${this.#model.tenants[foreign]?.record.tier} tier)`, show());
      return;
    }
    const same = (v: Version) =>
      v.title === row.title && (row.description === undefined || v.description === row.description);
    const item = t.live.get(row.id);
    if (item) {
      if (item.uncertain || same(item) || (item.busy && item.busy !== 'delete' && same(item.busy))) return;
      if (item.previous.some((p) => p.until > op.start && same(p))) return;
      this.fail(op, 'anomaly', 'row is not the acknowledged version', show());
      return;
    }
    const gone = t.gone.get(row.id);
    if (gone && same(gone)) {
      if (gone.until <= op.start) this.fail(op, 'anomaly', 'acknowledged delete not visible', show());
      return;
    }
    const m = markerOf(row.title);
    if (m && (t.inflight.has(m) || t.uncertain.has(m))) return;
    if (t.planted.has(row.id)) return;
    if (this.#model.owners(row.id, t).length > 0) {
      this.fail(op, 'leak', 'id of another tenant’s item', show());
      return;
    }
    this.fail(op, 'anomaly', 'row the model does not know', show());
  }

  /** After a read of every row of the tenant: each item acknowledged before it started is there. */
  checkComplete(op: Op, rows: readonly Row[]): void {
    const seen = new Set(rows.map((r) => r.id));
    for (const [id, item] of op.tenant.live) {
      if (item.busy || item.uncertain || item.since > op.start) continue;
      this.checks++;
      if (!seen.has(id)) this.fail(op, 'anomaly', 'acknowledged item missing from a full read', id);
    }
  }

  /** An item read by id: exactly the model's version when no write of it is in flight, else one it allows. */
  checkOne(op: Op, id: string, rows: readonly Row[]): void {
    const t = op.tenant;
    for (const row of rows) this.checkRow(op, row);
    this.checks++;
    if (rows.length > 1) this.fail(op, 'anomaly', 'several rows for one id', String(rows.length));
    const item = t.live.get(id);
    const settled = item && !item.busy && !item.uncertain && item.since <= op.start;
    if (settled && rows.length === 0) this.fail(op, 'anomaly', 'acknowledged item not found', id);
    const gone = t.gone.get(id);
    if (!item && gone && gone.until <= op.start && rows.length > 0) {
      this.fail(op, 'anomaly', 'acknowledged delete not visible', id);
    }
  }

  /** A refusal was expected and came: counted. A success is handed to `judge`. */
  async refused<T>(attempt: Promise<T>, judge: (result: T) => void): Promise<void> {
    let result: T;
    try {
      result = await attempt;
    } catch {
      this.checks++;
      return;
    }
    judge(result);
  }

  checkSearch(op: Op, term: { q: string; expect?: string }, rows: readonly Row[]): void {
    for (const row of rows) this.checkRow(op, row);
    if (!term.expect) return;
    const item = op.tenant.live.get(term.expect);
    if (!item || item.busy || item.uncertain || item.since > op.start) return;
    this.checks++;
    if (!rows.some((r) => r.id === term.expect)) this.fail(op, 'anomaly', 'search missed an acknowledged item', term.q);
  }
}

/** An error as a finding shows it. */
export function describeError(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown; stack?: unknown };
  const code = typeof e?.code === 'string' ? `${e.code}: ` : '';
  const message = typeof e?.message === 'string' ? e.message : String(error);
  // A fuzzer bug (no code) is easier to find with its stack.
  return code || typeof e?.stack !== 'string' ? `${code}${message}` : String(e.stack).slice(0, 1000);
}
