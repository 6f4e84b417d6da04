import type { IsolationTier } from '../../packages/tenantry/src/index.ts';
import { RawHttp } from '../fuzz.ts';
import { Checker, describeError } from './checks.ts';
import { type FuzzContext, type Within, withTenant } from './context.ts';
import {
  httpBodyTenantId,
  httpCreate,
  httpDelete,
  httpForeignId,
  httpGet,
  httpList,
  httpPatch,
  httpRevokedKey,
  httpSearch,
  httpTenantHeaderMismatch,
  rotateKey,
} from './http-operations.ts';
import {
  HTTP_WEIGHTS,
  LIB_WEIGHTS,
  MAX_READS_BEFORE_REFUSAL,
  MAX_READS_PER_TRANSACTION,
  OP_KINDS,
  type OpKind,
  READS,
  REFUSALS,
  weighted,
} from './kinds.ts';
import { libForgeContext, libSessionState } from './library-context.ts';
import {
  libCloneForeignId,
  libForeignId,
  libInsertOtherTenant,
  libMoveToOtherTenant,
  libOtherSchemaRead,
  libOtherSchemaWrite,
  libWhereOtherTenant,
} from './library-other-tenants.ts';
import { libDelete, libGet, libInsert, libList, libSearch, libUpdate } from './library-own-items.ts';
import { Model, type Op, type TenantState } from './model.ts';
import { type IsolationFuzzOptions, RunError } from './options.ts';
import type { IsolationFuzzReport } from './report.ts';
import { opSeed, Rng } from './rng.ts';
import { finalSweep } from './sweep.ts';
import { createTenants, DEFAULT_TENANTS } from './tenants.ts';

/** The engine; {@link runIsolationFuzz} is its entry point. */
class IsolationFuzzer {
  readonly #o: IsolationFuzzOptions;
  readonly #c: FuzzContext;
  readonly #libKinds: [OpKind, number][];
  readonly #httpKinds: [OpKind, number][];
  readonly #readKinds: [OpKind, number][];
  readonly #cap: number;
  readonly #opsByKind = new Map<string, number>();
  /** Time spent in operations of each kind, summed (they overlap: this is latency, not wall time). */
  readonly #msByKind = new Map<string, number>();
  readonly #opsByTier: Record<IsolationTier, number> = { pool: 0, schema: 0, database: 0 };
  #done = 0;
  /** Tenant transactions and HTTP requests the operations ran in. */
  #units = 0;

  constructor(options: IsolationFuzzOptions) {
    this.#o = options;
    const model = new Model();
    this.#c = {
      tenantry: options.tenantry,
      http: new RawHttp(options.baseUrl),
      model,
      checker: new Checker(model, options.onFinding),
      stolen: [],
    };
    this.#cap = Math.min(90, Math.max(4, options.maxItemsPerTenant ?? 24));
    const excluded = new Set(options.exclude ?? []);
    for (const kind of excluded) {
      if (!(OP_KINDS as readonly string[]).includes(kind)) throw new RunError(`no operation kind ${kind}`);
    }
    const enabled = (weights: Readonly<Partial<Record<OpKind, number>>>) =>
      (Object.entries(weights) as [OpKind, number][]).filter(([kind]) => !excluded.has(kind));
    this.#libKinds = enabled(LIB_WEIGHTS);
    this.#httpKinds = enabled(HTTP_WEIGHTS);
    this.#readKinds = this.#libKinds.filter(([kind]) => READS.includes(kind));
  }

  async run(): Promise<IsolationFuzzReport> {
    const started = performance.now();
    await createTenants(this.#c.tenantry, this.#c.model, this.#o);
    const setupMs = performance.now() - started;
    const concurrency = Math.max(1, this.#o.concurrency ?? 16);
    let next = 0;
    let issued = 0;
    // Everything an operation draws is drawn before its first await, in index order: the
    // stream of operations does not depend on timing, only their targets do.
    const worker = async () => {
      while (issued < this.#o.ops) {
        const index = next++;
        const rng = new Rng(opSeed(this.#o.seed, index));
        const tenant = rng.pick(this.#c.model.tenants);
        const http =
          this.#httpKinds.length > 0 && (this.#libKinds.length === 0 || rng.chance(this.#o.httpShare ?? 0.1));
        const kind = this.#substitute(tenant, weighted(rng, http ? this.#httpKinds : this.#libKinds));
        const batch = READS.includes(kind)
          ? 1 + rng.int(MAX_READS_PER_TRANSACTION)
          : REFUSALS.includes(kind) && this.#readKinds.length > 0
            ? 1 + rng.int(MAX_READS_BEFORE_REFUSAL + 1)
            : 1;
        const steps = Math.min(batch, this.#o.ops - issued);
        issued += steps;
        await this.#runOp(index, rng, tenant, kind, steps);
      }
    };
    const progress = setInterval(() => {
      this.#o.onProgress?.({
        done: this.#done,
        transactions: this.#units,
        total: this.#o.ops,
        elapsedMs: performance.now() - started,
        checks: this.#c.checker.checks,
        leaks: this.#c.checker.leaks,
        anomalies: this.#c.checker.anomalies,
      });
    }, this.#o.progressEveryMs ?? 10_000);
    try {
      await Promise.all(Array.from({ length: concurrency }, worker));
    } finally {
      clearInterval(progress);
      this.#c.http.close();
    }
    const sweepStarted = performance.now();
    const sweep = await finalSweep(this.#c, this.#o);
    const sweepMs = performance.now() - sweepStarted;
    const tenants = this.#o.tenants ?? DEFAULT_TENANTS;
    return {
      seed: this.#o.seed,
      ops: this.#done,
      transactions: this.#units,
      concurrency,
      opsByKind: Object.fromEntries([...this.#opsByKind].sort(([a], [b]) => a.localeCompare(b))),
      msPerOpByKind: Object.fromEntries(
        [...this.#msByKind].map(([kind, ms]) => [kind, ms / (this.#opsByKind.get(kind) ?? 1)]),
      ),
      opsByTier: { ...this.#opsByTier },
      tenants: { ...tenants },
      checks: this.#c.checker.checks,
      leaks: this.#c.checker.leaks,
      anomalies: this.#c.checker.anomalies,
      findings: [...this.#c.checker.findings.values()],
      sweep,
      durationMs: performance.now() - started,
      setupMs,
      sweepMs,
      excluded: [...(this.#o.exclude ?? [])],
    };
  }

  // -------------------------------------------------------------------------------------
  // Choosing and running an operation

  /**
   * Runs operation `index`: one transaction or request; or, for reads and refusals, `steps`
   * operations in one tenant transaction (reads first, `kind` last), as application code
   * and injected SQL do. Each is an operation of its own, checked on its own; sharing saves
   * the transaction's fixed cost (two round trips and the context check), most of a read's.
   */
  async #runOp(index: number, rng: Rng, tenant: TenantState, kind: OpKind, steps: number): Promise<void> {
    const start = this.#c.model.clock;
    const ops: Op[] = [];
    for (let j = 1; j < steps; j++) {
      ops.push({ index, kind: weighted(rng, this.#readKinds), tenant, start, detail: '' });
    }
    ops.push({ index, kind, tenant, start, detail: '' });
    const started = performance.now();
    const ran = new Set<Op>();
    try {
      if (steps === 1) {
        ran.add(ops[0] as Op);
        await this.#dispatch(ops[0] as Op, rng, (fn) => withTenant(this.#c, tenant, fn));
      } else {
        await withTenant(this.#c, tenant, async (tx, db) => {
          for (const [j, op] of ops.entries()) {
            ran.add(op);
            op.via = `statement ${j + 1} of ${steps} in one transaction: `;
            await this.#dispatch(op, rng, (fn) => fn(tx, db));
          }
        });
      }
    } catch (error) {
      const failed = [...ran].at(-1) ?? (ops[0] as Op);
      ran.add(failed);
      const aborted = (error as { code?: unknown }).code === 'TRANSACTION_ABORTED';
      // The last statement was refused (and its refusal checked): the commit is refused too.
      if (aborted && steps > 1 && ran.size === steps && REFUSALS.includes(failed.kind as OpKind))
        this.#c.checker.checks++;
      else this.#c.checker.fail(failed, 'anomaly', 'unexpected error', describeError(error));
    }
    const ms = (performance.now() - started) / ran.size;
    for (const op of ran) {
      this.#msByKind.set(op.kind, (this.#msByKind.get(op.kind) ?? 0) + ms);
      this.#opsByKind.set(op.kind, (this.#opsByKind.get(op.kind) ?? 0) + 1);
      this.#opsByTier[tenant.record.tier]++;
      this.#done++;
    }
    this.#units++;
  }

  /** Keeps each tenant between a few and `cap` items: a read of nothing checks little, a full read of thousands costs much. */
  #substitute(t: TenantState, kind: OpKind): OpKind {
    const size = t.live.size + t.inflight.size;
    const settled = this.#c.model.settled(t).length;
    const lib = kind.startsWith('lib.');
    if ((kind === 'lib.insert' || kind === 'http.create' || kind === 'lib.clone-foreign-id') && size >= this.#cap) {
      return settled > 0 ? (lib ? 'lib.delete' : 'http.delete') : lib ? 'lib.get' : 'http.get';
    }
    const needsItem: readonly OpKind[] = [
      'lib.update',
      'lib.delete',
      'lib.move-to-other-tenant',
      'http.patch',
      'http.delete',
    ];
    if (needsItem.includes(kind) && (settled === 0 || (size < 4 && kind.endsWith('delete')))) {
      return lib ? 'lib.insert' : 'http.create';
    }
    return kind;
  }

  #dispatch(op: Op, rng: Rng, within: Within): Promise<void> {
    switch (op.kind) {
      case 'lib.insert':
        return libInsert(this.#c, op, rng);
      case 'lib.get':
        return libGet(this.#c, op, rng, within);
      case 'lib.list':
        return libList(this.#c, op, rng, within);
      case 'lib.search':
        return libSearch(this.#c, op, rng, within);
      case 'lib.update':
        return libUpdate(this.#c, op, rng);
      case 'lib.delete':
        return libDelete(this.#c, op, rng);
      case 'lib.foreign-id':
        return libForeignId(this.#c, op, rng, within);
      case 'lib.where-other-tenant':
        return libWhereOtherTenant(this.#c, op, rng, within);
      case 'lib.insert-other-tenant':
        return libInsertOtherTenant(this.#c, op, rng, within);
      case 'lib.move-to-other-tenant':
        return libMoveToOtherTenant(this.#c, op, rng, within);
      case 'lib.clone-foreign-id':
        return libCloneForeignId(this.#c, op, rng);
      case 'lib.forge-context':
        return libForgeContext(this.#c, op, rng);
      case 'lib.other-schema-read':
        return libOtherSchemaRead(this.#c, op, rng, within);
      case 'lib.other-schema-write':
        return libOtherSchemaWrite(this.#c, op, rng, within);
      case 'lib.session-state':
        return libSessionState(this.#c, op, rng);
      case 'http.create':
        return httpCreate(this.#c, op, rng);
      case 'http.get':
        return httpGet(this.#c, op, rng);
      case 'http.list':
        return httpList(this.#c, op);
      case 'http.search':
        return httpSearch(this.#c, op, rng);
      case 'http.patch':
        return httpPatch(this.#c, op, rng);
      case 'http.delete':
        return httpDelete(this.#c, op, rng);
      case 'http.foreign-id':
        return httpForeignId(this.#c, op, rng);
      case 'http.tenant-header-mismatch':
        return httpTenantHeaderMismatch(this.#c, op, rng);
      case 'http.body-tenant-id':
        return httpBodyTenantId(this.#c, op, rng);
      case 'http.revoked-key':
        return httpRevokedKey(this.#c, op, rng);
      case 'ctl.rotate-key':
        return rotateKey(this.#c, op);
      case 'sweep':
        return Promise.resolve();
    }
  }
}

/**
 * Runs the isolation fuzzer (see `index.ts`) and returns its report; it never
 * throws for a finding, only for a setup it cannot run on.
 *
 * @example
 * ```ts
 * const server = await createServer(tenantry, { logger: false, plans: fuzzPlans() });
 * const baseUrl = await server.listen({ port: 0, host: '127.0.0.1' });
 * const report = await runIsolationFuzz({ tenantry, baseUrl, ops: 100_000, seed: 42 });
 * console.log(formatIsolationReport(report)); // leaks: 0
 * ```
 */
export function runIsolationFuzz(options: IsolationFuzzOptions): Promise<IsolationFuzzReport> {
  if (!Number.isSafeInteger(options.ops) || options.ops < 0) throw new RunError('ops must be a non-negative integer');
  if (!Number.isSafeInteger(options.seed) || options.seed < 0 || options.seed > 0xffffffff) {
    throw new RunError('seed must be an integer from 0 to 4294967295');
  }
  return new IsolationFuzzer(options).run();
}
