import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { ItemsDB } from '../packages/tenantry/src/example/items.ts';
import {
  CONTEXT_SETTING,
  definePlans,
  type IsolationTier,
  type PlanCatalog,
  type TenantRecord,
  type Tenantry,
  type TenantTransaction,
} from '../packages/tenantry/src/index.ts';
import { RawHttp, UNICODE_EDGES } from './fuzz.ts';

/**
 * The isolation fuzzer: many tenants on all three tiers, one seeded stream of random
 * operations run concurrently against them — through the library (raw SQL and Kysely)
 * and over real sockets through the reference server — many of them adversarial, and a
 * model of who owns what that every answer is checked against. At the end a superuser
 * reads every copy of `items` (the shared table, each tenant schema, each tenant
 * database) and compares it with the model.
 *
 * It is what `npm run fuzz:isolation` and `packages/tenantry/test/isolation-fuzz.test.ts`
 * run. Multi-tenancy bugs are silent: a query that forgot its tenant still answers 200.
 * So the verdict is not "no error" but "no row, id or text of another tenant ever
 * reached a caller, every acknowledged write is where the model says, and nothing else is".
 *
 * An operation is one library statement or one HTTP request, checked on its own. Each
 * runs in a tenant transaction of its own, except that up to six plain reads, or up to
 * three reads followed by a statement that should be refused, share one (as application
 * code and injected SQL do): that halves the cost of a run.
 *
 * Reproducibility: operation `i` draws everything it does (kind, tenant, variant, text,
 * explicit ids) from a PRNG seeded by `(seed, i)`; which item it targets is then read from
 * the model, which depends on what finished before it. The same seed therefore replays
 * the same stream of operations, and with `concurrency: 1` the same targets too (bar the
 * choice of a revoked key, which depends on the clock).
 *
 * Memory is bounded whatever the number of operations: each tenant keeps at most
 * `maxItemsPerTenant` live items (inserts turn into deletes above it), a short ring of
 * deleted ids and a few earlier versions per item; findings are grouped by kind.
 */

/** Which operations a run draws from. `lib.*` go through `tenantry.withTenant`, `http.*` over a socket. */
export const OP_KINDS = [
  'lib.insert',
  'lib.get',
  'lib.list',
  'lib.search',
  'lib.update',
  'lib.delete',
  'lib.foreign-id',
  'lib.where-other-tenant',
  'lib.insert-other-tenant',
  'lib.move-to-other-tenant',
  'lib.clone-foreign-id',
  'lib.forge-context',
  'lib.other-schema-read',
  'lib.other-schema-write',
  'lib.session-state',
  'http.create',
  'http.get',
  'http.list',
  'http.search',
  'http.patch',
  'http.delete',
  'http.foreign-id',
  'http.tenant-header-mismatch',
  'http.body-tenant-id',
  'http.revoked-key',
  'ctl.rotate-key',
] as const;

export type OpKind = (typeof OP_KINDS)[number];

/**
 * Relative weights of what an operation starts as (reads then bring more reads along).
 * Cheap library reads dominate, so that 100,000 operations fit in a test file's time;
 * the rarest kind still runs over a hundred times per 100,000.
 */
const LIB_WEIGHTS: Readonly<Partial<Record<OpKind, number>>> = {
  'lib.insert': 11,
  'lib.get': 13,
  'lib.list': 7,
  'lib.search': 9,
  'lib.update': 8,
  'lib.delete': 5,
  'lib.foreign-id': 9,
  'lib.where-other-tenant': 5,
  'lib.insert-other-tenant': 4,
  'lib.move-to-other-tenant': 3,
  'lib.clone-foreign-id': 2,
  'lib.forge-context': 6,
  'lib.other-schema-read': 3,
  'lib.other-schema-write': 1,
  'lib.session-state': 0.3,
};

const HTTP_WEIGHTS: Readonly<Partial<Record<OpKind, number>>> = {
  'http.create': 5,
  'http.get': 4,
  'http.list': 2,
  'http.search': 3,
  'http.patch': 3,
  'http.delete': 2,
  'http.foreign-id': 4,
  'http.tenant-header-mismatch': 2,
  'http.body-tenant-id': 1,
  'http.revoked-key': 1.5,
  'ctl.rotate-key': 0.5,
};

/** The plan the fuzzer's tenants are on: a rate limit no run reaches, so a 429 never hides an answer. */
export const FUZZ_PLAN = 'isolation-fuzz';

/** Plans for `createServer(tenantry, { plans })` of the server a run talks to. */
export const fuzzPlans = (): PlanCatalog => definePlans({ [FUZZ_PLAN]: { requestsPerMinute: 1_000_000_000 } });

/** Options of {@link runIsolationFuzz}. */
export interface IsolationFuzzOptions {
  /** Set up and migrated with the example application's migrations (`itemsMigrations`); fresh. */
  readonly tenantry: Tenantry<unknown>;
  /** Base URL of a reference server on the same Tenantry, created with `plans: fuzzPlans()`. */
  readonly baseUrl: string;
  /** Superuser URL of the main database, for the final sweep (default: `tenantry.config.databaseUrl`). */
  readonly adminUrl?: string;
  readonly ops: number;
  readonly seed: number;
  /** Operations in flight at once (default 16). */
  readonly concurrency?: number;
  /** Slugs of the run's tenants start with it (default `iso-fuzz`): two runs can share a database. */
  readonly slugPrefix?: string;
  /** Tenants per tier (default 6 pool, 4 schema, 2 database). */
  readonly tenants?: Readonly<Record<IsolationTier, number>>;
  /**
   * Share of drawn operations sent over HTTP (default 0.1). Library reads bring more reads
   * into their transaction, so requests end up a smaller share of the operations run (~4%).
   */
  readonly httpShare?: number;
  /** Kinds left out of the run (to separate a known finding from the rest; see the docs). */
  readonly exclude?: readonly string[];
  /** Live items a tenant may have before inserts turn into deletes (default 24; ≤ 90, one HTTP page). */
  readonly maxItemsPerTenant?: number;
  /** Called about every `progressEveryMs` (default 10 s) while operations run. */
  readonly onProgress?: (progress: IsolationFuzzProgress) => void;
  readonly progressEveryMs?: number;
  /** Called once for the first occurrence of each distinct finding, as it happens. */
  readonly onFinding?: (finding: IsolationFinding) => void;
}

export interface IsolationFuzzProgress {
  readonly done: number;
  readonly transactions: number;
  readonly total: number;
  readonly elapsedMs: number;
  readonly checks: number;
  readonly leaks: number;
  readonly anomalies: number;
}

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

// ---------------------------------------------------------------------------------------
// A small seeded PRNG: the same numbers on every machine and Node version

/** mulberry32: 32 bits of state, good enough to pick operations, fast enough for millions. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(values: readonly T[]): T {
    return values[this.int(values.length)] as T;
  }

  /** A version-4 UUID from this stream (explicit ids are part of the replayable run). */
  uuid(): string {
    const hex = Array.from({ length: 32 }, () => this.int(16).toString(16));
    hex[12] = '4';
    hex[16] = (8 + this.int(4)).toString(16);
    const h = hex.join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

/** The PRNG seed of operation `index`: independent of how many operations ran before or beside it. */
function opSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// ---------------------------------------------------------------------------------------
// Text

/** What an attacker types into a text field. None contains a marker (see {@link marker}). */
const INJECTIONS = [
  "'; DROP TABLE items; --",
  "' OR 1=1 --",
  "' OR '1'='1",
  '" OR ""="',
  "'); DELETE FROM items; --",
  `'; SET ${CONTEXT_SETTING} = ''; --`,
  `'); SELECT set_config('${CONTEXT_SETTING}', 'x', false); --`,
  '$$; DROP TABLE items; $$',
  "\\'; SELECT pg_sleep(10); --",
  '1; UPDATE items SET tenant_id = NULL --',
  "%' OR tenant_id IS NOT NULL --",
  "') UNION SELECT tenant_id::text, id::text, title FROM items --",
  "''''",
  '\\',
  '`backtick`',
  "E'\\\\x41'",
  '/* comment',
  '-- line comment',
  ':1 $1 ? %s',
  '<script>alert(1)</script>',
  '{"tenant_id":"00000000-0000-4000-8000-000000000000"}',
  'Robert\u2019); DROP TABLE items;--',
] as const;

const WORDS = ['alpha', 'ledger', 'invoice', 'quarterly', 'roadmap', 'secret', 'plan', 'draft', 'payroll', 'merger'];

/** Some text: words, injection strings and Unicode edge cases (NUL-free, no lone surrogates). */
function text(rng: Rng, pieces: number): string {
  const out: string[] = [];
  for (let i = 0; i < pieces; i++) {
    const r = rng.next();
    out.push(r < 0.4 ? rng.pick(INJECTIONS) : r < 0.7 ? rng.pick(UNICODE_EDGES) : rng.pick(WORDS));
  }
  return out.join(' ');
}

/**
 * The word that names a tenant and the operation that wrote a text: `fz<tenant>x<op>`.
 * Every title carries its writer's, so any text of another tenant is recognisable in any
 * answer (a full-text search for it must find nothing), even a row the model forgot.
 */
const marker = (tenant: number, op: number) => `fz${String(tenant).padStart(2, '0')}x${op.toString(36)}`;
const MARKER = /fz(\d\d)x[0-9a-z]+/g;
const markerOf = (s: string) => /fz\d\dx[0-9a-z]+$/.exec(s)?.[0];

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

// ---------------------------------------------------------------------------------------
// The model

interface Version {
  readonly title: string;
  readonly description: string | null;
}

interface ItemState extends Version {
  /** Clock of the acknowledgement that made this version. */
  readonly since: number;
  /** Earlier versions, each acceptable to a read that started before `until`. */
  readonly previous: readonly (Version & { readonly until: number })[];
  /** A write of this item is in flight: its version (or deletion) may already be visible. */
  busy?: Version | 'delete';
  /** A write of it failed in a way that leaves its state unknown: not held to any version. */
  uncertain?: boolean;
}

interface ApiKey {
  readonly key: string;
  readonly id: string;
}

interface TenantState {
  readonly i: number;
  readonly record: TenantRecord;
  readonly live: Map<string, ItemState>;
  /** Recently deleted ids (a ring), with the clock of the acknowledged delete. */
  readonly gone: Map<string, Version & { readonly until: number }>;
  /** Inserts in flight, by marker, and the explicit ids they will take. */
  readonly inflight: Map<string, Version>;
  readonly reserved: Set<string>;
  /** Markers of writes whose outcome is unknown (an error mid-way): they may or may not exist. */
  readonly uncertain: Set<string>;
  /** Ids of rows an adversarial write put outside the tenant's copy (already reported). */
  readonly planted: Set<string>;
  readonly primary: ApiKey;
  spare: ApiKey;
  /** Keys revoked, with when the revocation returned (ms since epoch). */
  readonly revoked: { readonly key: string; readonly at: number }[];
  rotating: boolean;
}

interface Op {
  readonly index: number;
  /** `sweep`: a finding of the final superuser sweep, not of one operation. */
  kind: OpKind | 'sweep';
  readonly tenant: TenantState;
  /** The model clock when the operation started: what it must see and what it may. */
  readonly start: number;
  /** What it did, for the report (set by each operation). */
  detail: string;
  /** For a read sharing a transaction: which one it was. */
  via?: string;
}

type Row = { tenant_id?: string; id: string; title: string; description?: string | null };

/** Runs a read's statements: in a tenant transaction of its own, or in one shared with other reads. */
type Within = <T>(fn: (tx: TenantTransaction<unknown>, db: Kysely<ItemsDB>) => Promise<T>) => Promise<T>;

/** Library reads that never fail (refusals of theirs are empty answers): several may share a transaction. */
const READS: readonly OpKind[] = ['lib.get', 'lib.list', 'lib.search', 'lib.foreign-id', 'lib.where-other-tenant'];
const MAX_READS_PER_TRANSACTION = 6;

/**
 * Adversarial statements that are refused (or, if Tenantry were wrong, succeed): they run
 * last in a transaction after up to three reads, as injected SQL would, and a refusal
 * aborts the transaction (`TRANSACTION_ABORTED` at commit), which is then expected.
 */
const REFUSALS: readonly OpKind[] = [
  'lib.insert-other-tenant',
  'lib.move-to-other-tenant',
  'lib.other-schema-read',
  'lib.other-schema-write',
];
const MAX_READS_BEFORE_REFUSAL = 3;

/** Share of library operations written with Kysely (the rest raw SQL): Kysely costs more CPU per statement. */
const KYSELY_SHARE = 0.35;
const GONE_RING = 64;
const PREVIOUS_VERSIONS = 3;
const REVOCATION_VISIBLE_MS = 1500;

class RunError extends Error {}

/** The engine; {@link runIsolationFuzz} is its entry point. */
class IsolationFuzzer {
  readonly #o: IsolationFuzzOptions;
  readonly #tenantry: Tenantry<unknown>;
  readonly #http: RawHttp;
  readonly #tenants: TenantState[] = [];
  readonly #byId = new Map<string, TenantState>();
  readonly #libKinds: [OpKind, number][];
  readonly #httpKinds: [OpKind, number][];
  readonly #readKinds: [OpKind, number][];
  readonly #cap: number;
  /** Values of the context setting read inside other tenants' transactions, to replay. */
  readonly #stolen: string[] = [];
  readonly #findings = new Map<string, IsolationFinding>();
  readonly #opsByKind = new Map<string, number>();
  /** Time spent in operations of each kind, summed (they overlap: this is latency, not wall time). */
  readonly #msByKind = new Map<string, number>();
  readonly #opsByTier: Record<IsolationTier, number> = { pool: 0, schema: 0, database: 0 };
  #clock = 0;
  #checks = 0;
  #leaks = 0;
  #anomalies = 0;
  #done = 0;
  /** Tenant transactions and HTTP requests the operations ran in. */
  #units = 0;

  constructor(options: IsolationFuzzOptions) {
    this.#o = options;
    this.#tenantry = options.tenantry;
    this.#http = new RawHttp(options.baseUrl);
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
    await this.#setup();
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
        const tenant = rng.pick(this.#tenants);
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
        checks: this.#checks,
        leaks: this.#leaks,
        anomalies: this.#anomalies,
      });
    }, this.#o.progressEveryMs ?? 10_000);
    try {
      await Promise.all(Array.from({ length: concurrency }, worker));
    } finally {
      clearInterval(progress);
      this.#http.close();
    }
    const sweepStarted = performance.now();
    const sweep = await this.#sweep();
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
      checks: this.#checks,
      leaks: this.#leaks,
      anomalies: this.#anomalies,
      findings: [...this.#findings.values()],
      sweep,
      durationMs: performance.now() - started,
      setupMs,
      sweepMs,
      excluded: [...(this.#o.exclude ?? [])],
    };
  }

  // -------------------------------------------------------------------------------------
  // Setup

  async #setup(): Promise<void> {
    const counts = this.#o.tenants ?? DEFAULT_TENANTS;
    const tiers = (['pool', 'schema', 'database'] as const).flatMap((tier) =>
      Array.from({ length: counts[tier] }, () => tier),
    );
    if (tiers.length < 2 || tiers.length > 99) throw new RunError('between 2 and 99 tenants');
    const scopes = ['items:read', 'items:write'];
    for (const [i, tier] of tiers.entries()) {
      const record = await this.#tenantry.tenants.create({
        slug: `${this.#o.slugPrefix ?? 'iso-fuzz'}-${String(i).padStart(2, '0')}-${tier}`,
        name: `Isolation fuzz ${i} (${tier})`,
        tier,
        plan: FUZZ_PLAN,
      });
      const key = async (name: string): Promise<ApiKey> => {
        const created = await this.#tenantry.apiKeys.create(record.id, { name, environment: 'test', scopes });
        return { key: created.key, id: created.record.id };
      };
      const primary = await key('primary');
      const spare = await key('spare 0');
      // One key revoked before the run, so revoked-key checks have a subject from the start.
      const doomed = await key('revoked before the run');
      await this.#tenantry.apiKeys.revoke(record.id, doomed.id);
      const t: TenantState = {
        i,
        record,
        live: new Map(),
        gone: new Map(),
        inflight: new Map(),
        reserved: new Set(),
        uncertain: new Set(),
        planted: new Set(),
        primary,
        spare,
        revoked: [{ key: doomed.key, at: Date.now() }],
        rotating: false,
      };
      this.#tenants.push(t);
      this.#byId.set(record.id, t);
    }
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
    const start = this.#clock;
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
        await this.#dispatch(ops[0] as Op, rng, (fn) => this.#withTenant(tenant, fn));
      } else {
        await this.#withTenant(tenant, async (tx, db) => {
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
      if (aborted && steps > 1 && ran.size === steps && REFUSALS.includes(failed.kind as OpKind)) this.#checks++;
      else this.#fail(failed, 'anomaly', 'unexpected error', describeError(error));
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
    const settled = this.#settled(t).length;
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
        return this.#libInsert(op, rng);
      case 'lib.get':
        return this.#libGet(op, rng, within);
      case 'lib.list':
        return this.#libList(op, rng, within);
      case 'lib.search':
        return this.#libSearch(op, rng, within);
      case 'lib.update':
        return this.#libUpdate(op, rng);
      case 'lib.delete':
        return this.#libDelete(op, rng);
      case 'lib.foreign-id':
        return this.#libForeignId(op, rng, within);
      case 'lib.where-other-tenant':
        return this.#libWhereOtherTenant(op, rng, within);
      case 'lib.insert-other-tenant':
        return this.#libInsertOtherTenant(op, rng, within);
      case 'lib.move-to-other-tenant':
        return this.#libMoveToOtherTenant(op, rng, within);
      case 'lib.clone-foreign-id':
        return this.#libCloneForeignId(op, rng);
      case 'lib.forge-context':
        return this.#libForgeContext(op, rng);
      case 'lib.other-schema-read':
        return this.#libOtherSchemaRead(op, rng, within);
      case 'lib.other-schema-write':
        return this.#libOtherSchemaWrite(op, rng, within);
      case 'lib.session-state':
        return this.#libSessionState(op, rng);
      case 'http.create':
        return this.#httpCreate(op, rng);
      case 'http.get':
        return this.#httpGet(op, rng);
      case 'http.list':
        return this.#httpList(op);
      case 'http.search':
        return this.#httpSearch(op, rng);
      case 'http.patch':
        return this.#httpPatch(op, rng);
      case 'http.delete':
        return this.#httpDelete(op, rng);
      case 'http.foreign-id':
        return this.#httpForeignId(op, rng);
      case 'http.tenant-header-mismatch':
        return this.#httpTenantHeaderMismatch(op, rng);
      case 'http.body-tenant-id':
        return this.#httpBodyTenantId(op, rng);
      case 'http.revoked-key':
        return this.#httpRevokedKey(op, rng);
      case 'ctl.rotate-key':
        return this.#rotateKey(op);
      case 'sweep':
        return Promise.resolve();
    }
  }

  // -------------------------------------------------------------------------------------
  // Findings and checks

  #fail(op: Op, severity: IsolationFinding['severity'], what: string, detail: string): void {
    if (severity === 'leak') this.#leaks++;
    else this.#anomalies++;
    const key = `${severity}\u0000${op.kind}\u0000${what}`;
    const found = this.#findings.get(key);
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
    this.#findings.set(key, finding);
    this.#o.onFinding?.(finding);
  }

  /** Other tenants that have (or recently had) an item with this id. */
  #owners(id: string, except: TenantState): TenantState[] {
    return this.#tenants.filter((u) => u !== except && (u.live.has(id) || u.gone.has(id) || u.planted.has(id)));
  }

  /** The index of another tenant whose marker is in `s`, if any. */
  #foreignMarker(t: TenantState, s: string | null | undefined): number | undefined {
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
  #checkRow(op: Op, row: Row): void {
    const t = op.tenant;
    this.#checks++;
    const show = () => JSON.stringify(row).slice(0, 300);
    if (row.tenant_id !== undefined && row.tenant_id !== t.record.id) {
      const owner = this.#byId.get(row.tenant_id);
      this.#fail(op, 'leak', `row of another tenant (${owner?.record.tier ?? 'unknown'} tier)`, show());
      return;
    }
    const foreign = this.#foreignMarker(t, row.title) ?? this.#foreignMarker(t, row.description);
    if (foreign !== undefined) {
      this.#fail(op, 'leak', `text of another tenant (${this.#tenants[foreign]?.record.tier} tier)`, show());
      return;
    }
    const same = (v: Version) =>
      v.title === row.title && (row.description === undefined || v.description === row.description);
    const item = t.live.get(row.id);
    if (item) {
      if (item.uncertain || same(item) || (item.busy && item.busy !== 'delete' && same(item.busy))) return;
      if (item.previous.some((p) => p.until > op.start && same(p))) return;
      this.#fail(op, 'anomaly', 'row is not the acknowledged version', show());
      return;
    }
    const gone = t.gone.get(row.id);
    if (gone && same(gone)) {
      if (gone.until <= op.start) this.#fail(op, 'anomaly', 'acknowledged delete not visible', show());
      return;
    }
    const m = markerOf(row.title);
    if (m && (t.inflight.has(m) || t.uncertain.has(m))) return;
    if (t.planted.has(row.id)) return;
    if (this.#owners(row.id, t).length > 0) {
      this.#fail(op, 'leak', 'id of another tenant’s item', show());
      return;
    }
    this.#fail(op, 'anomaly', 'row the model does not know', show());
  }

  /** After a read of every row of the tenant: each item acknowledged before it started is there. */
  #checkComplete(op: Op, rows: readonly Row[]): void {
    const seen = new Set(rows.map((r) => r.id));
    for (const [id, item] of op.tenant.live) {
      if (item.busy || item.uncertain || item.since > op.start) continue;
      this.#checks++;
      if (!seen.has(id)) this.#fail(op, 'anomaly', 'acknowledged item missing from a full read', id);
    }
  }

  /** An item read by id: exactly the model's version when no write of it is in flight, else one it allows. */
  #checkOne(op: Op, id: string, rows: readonly Row[]): void {
    const t = op.tenant;
    for (const row of rows) this.#checkRow(op, row);
    this.#checks++;
    if (rows.length > 1) this.#fail(op, 'anomaly', 'several rows for one id', String(rows.length));
    const item = t.live.get(id);
    const settled = item && !item.busy && !item.uncertain && item.since <= op.start;
    if (settled && rows.length === 0) this.#fail(op, 'anomaly', 'acknowledged item not found', id);
    const gone = t.gone.get(id);
    if (!item && gone && gone.until <= op.start && rows.length > 0) {
      this.#fail(op, 'anomaly', 'acknowledged delete not visible', id);
    }
  }

  /** A refusal was expected and came: counted. A success is handed to `judge`. */
  async #refused<T>(attempt: Promise<T>, judge: (result: T) => void): Promise<void> {
    let result: T;
    try {
      result = await attempt;
    } catch {
      this.#checks++;
      return;
    }
    judge(result);
  }

  // -------------------------------------------------------------------------------------
  // Model helpers

  #settled(t: TenantState): string[] {
    const out: string[] = [];
    for (const [id, item] of t.live) if (!item.busy && !item.uncertain) out.push(id);
    return out;
  }

  #ownItem(t: TenantState, rng: Rng): string | undefined {
    const ids = this.#settled(t);
    return ids.length ? rng.pick(ids) : undefined;
  }

  /** Any id the tenant has or had: live (busy too) or recently deleted. */
  #anyOwnId(t: TenantState, rng: Rng): string | undefined {
    const r = rng.next();
    if (r < 0.2 && t.gone.size) return rng.pick([...t.gone.keys()]);
    if (t.live.size) return rng.pick([...t.live.keys()]);
    return t.gone.size ? rng.pick([...t.gone.keys()]) : undefined;
  }

  #other(t: TenantState, rng: Rng, filter: (u: TenantState) => boolean = () => true): TenantState | undefined {
    const others = this.#tenants.filter((u) => u !== t && filter(u));
    return others.length ? rng.pick(others) : undefined;
  }

  /** An id of another tenant's item that `t` neither has nor is about to have. */
  #foreignId(t: TenantState, rng: Rng): { id: string; owner: TenantState } | undefined {
    for (let attempt = 0; attempt < 4; attempt++) {
      const u = this.#other(t, rng);
      if (!u) return undefined;
      const pool = rng.chance(0.85) ? [...u.live.keys()] : [...u.gone.keys()];
      if (!pool.length) continue;
      const id = rng.pick(pool);
      if (!t.live.has(id) && !t.gone.has(id) && !t.reserved.has(id) && !t.planted.has(id)) return { id, owner: u };
    }
    return undefined;
  }

  #newVersion(op: Op, rng: Rng): Version {
    const title = `${text(rng, 1 + rng.int(3))} ${marker(op.tenant.i, op.index)}`.trim();
    const description = rng.chance(0.3) ? null : text(rng, rng.int(4));
    return { title, description };
  }

  #acknowledgeInsert(t: TenantState, id: string, v: Version): void {
    t.live.set(id, { ...v, since: ++this.#clock, previous: [] });
  }

  #acknowledgeUpdate(t: TenantState, id: string, v: Version): void {
    const item = t.live.get(id);
    if (!item) return;
    const until = ++this.#clock;
    const previous = [{ title: item.title, description: item.description, until }, ...item.previous].slice(
      0,
      PREVIOUS_VERSIONS,
    );
    t.live.set(id, { ...v, since: until, previous });
  }

  #acknowledgeDelete(t: TenantState, id: string): void {
    const item = t.live.get(id);
    if (!item) return;
    t.live.delete(id);
    t.gone.set(id, { title: item.title, description: item.description, until: ++this.#clock });
    if (t.gone.size > GONE_RING) t.gone.delete(t.gone.keys().next().value as string);
  }

  #uncertainItem(t: TenantState, id: string): void {
    const item = t.live.get(id);
    if (item) item.uncertain = true;
  }

  #withTenant<T>(t: TenantState, fn: (tx: TenantTransaction<unknown>, db: Kysely<ItemsDB>) => Promise<T>): Promise<T> {
    return this.#tenantry.withTenant(t.record, (tx) => fn(tx, tx.db as unknown as Kysely<ItemsDB>));
  }

  // -------------------------------------------------------------------------------------
  // Library: the tenant's own items

  async #libInsert(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const v = this.#newVersion(op, rng);
    const m = markerOf(v.title) as string;
    const explicit = rng.chance(0.4) ? rng.uuid() : undefined;
    const variant = rng.pick(['kysely', 'raw', 'inline'] as const);
    op.detail = `${variant} insert ${JSON.stringify(v)}${explicit ? ` id ${explicit}` : ''}`;
    t.inflight.set(m, v);
    if (explicit) t.reserved.add(explicit);
    try {
      const rows = await this.#withTenant(t, async (tx, db) => {
        if (variant === 'kysely') {
          return db
            .insertInto('items')
            .values({ ...v, ...(explicit ? { id: explicit } : {}) })
            .returning(['tenant_id', 'id', 'title', 'description'])
            .execute();
        }
        if (variant === 'raw') {
          const r = explicit
            ? await tx.query<Row>(
                'INSERT INTO items (id, title, description) VALUES ($1, $2, $3) RETURNING tenant_id, id, title, description',
                [explicit, v.title, v.description],
              )
            : await tx.query<Row>(
                'INSERT INTO items (title, description) VALUES ($1, $2) RETURNING tenant_id, id, title, description',
                [v.title, v.description],
              );
          return r.rows;
        }
        // Literals spliced into the text, as careless code does: escaped, they must stay data.
        const lit = (s: string | null) => (s === null ? 'NULL' : pg.escapeLiteral(s));
        const r = await tx.query<Row>(
          `INSERT INTO items (${explicit ? 'id, ' : ''}title, description) VALUES (${explicit ? `${lit(explicit)}, ` : ''}${lit(v.title)}, ${lit(v.description)}) RETURNING tenant_id, id, title, description`,
        );
        return r.rows;
      });
      const row = rows[0];
      this.#checks++;
      if (!row || row.tenant_id !== t.record.id || row.title !== v.title || row.description !== v.description) {
        this.#fail(
          op,
          row && row.tenant_id !== t.record.id ? 'leak' : 'anomaly',
          'insert returned another row',
          JSON.stringify(row),
        );
        remember(t.uncertain, m);
      } else {
        this.#acknowledgeInsert(t, row.id, v);
      }
    } catch (error) {
      this.#fail(op, 'anomaly', 'insert failed', describeError(error));
      remember(t.uncertain, m);
    } finally {
      t.inflight.delete(m);
      if (explicit) t.reserved.delete(explicit);
    }
  }

  async #libGet(op: Op, rng: Rng, within: Within): Promise<void> {
    const id = this.#anyOwnId(op.tenant, rng);
    if (!id) return this.#libList(op, rng, within);
    const kysely = rng.chance(KYSELY_SHARE);
    op.detail = `${kysely ? 'kysely' : 'raw'} get ${id}`;
    const rows = await within(async (tx, db) =>
      kysely
        ? db.selectFrom('items').select(['tenant_id', 'id', 'title', 'description']).where('id', '=', id).execute()
        : (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items WHERE id = $1', [id])).rows,
    );
    this.#checkOne(op, id, rows);
  }

  async #libList(op: Op, rng: Rng, within: Within): Promise<void> {
    op.kind = 'lib.list';
    const kysely = rng.chance(KYSELY_SHARE);
    op.detail = `${kysely ? 'kysely' : 'raw'} select every item`;
    const rows = await within(async (tx, db) =>
      kysely
        ? db.selectFrom('items').select(['tenant_id', 'id', 'title', 'description']).execute()
        : (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items')).rows,
    );
    for (const row of rows) this.#checkRow(op, row);
    this.#checkComplete(op, rows);
  }

  /** A search word: a settled item's marker of the tenant's own (must be found), another tenant's (must not), or junk. */
  #searchTerm(op: Op, rng: Rng): { q: string; expect?: string } {
    const r = rng.next();
    if (r < 0.5) {
      const id = this.#ownItem(op.tenant, rng);
      const item = id ? op.tenant.live.get(id) : undefined;
      if (id && item) return { q: markerOf(item.title) as string, expect: id };
    }
    if (r < 0.85) {
      const foreign = this.#foreignId(op.tenant, rng);
      const title = foreign
        ? (foreign.owner.live.get(foreign.id) ?? foreign.owner.gone.get(foreign.id))?.title
        : undefined;
      if (title) return { q: markerOf(title) as string };
    }
    // At most 100 code points: within the API's 200 UTF-16 units, and no surrogate pair cut in two.
    return { q: [...text(rng, 1 + rng.int(2)).trim()].slice(0, 100).join('') || 'secret' };
  }

  #checkSearch(op: Op, term: { q: string; expect?: string }, rows: readonly Row[]): void {
    for (const row of rows) this.#checkRow(op, row);
    if (!term.expect) return;
    const item = op.tenant.live.get(term.expect);
    if (!item || item.busy || item.uncertain || item.since > op.start) return;
    this.#checks++;
    if (!rows.some((r) => r.id === term.expect))
      this.#fail(op, 'anomaly', 'search missed an acknowledged item', term.q);
  }

  async #libSearch(op: Op, rng: Rng, within: Within): Promise<void> {
    const term = this.#searchTerm(op, rng);
    const kysely = rng.chance(KYSELY_SHARE);
    op.detail = `${kysely ? 'kysely' : 'raw'} search ${JSON.stringify(term.q)}`;
    const rows = await within(async (tx, db) => {
      if (kysely) {
        return db
          .selectFrom('items')
          .select(['tenant_id', 'id', 'title', 'description'])
          .where(sql<boolean>`search @@ websearch_to_tsquery('english', ${term.q})`)
          .limit(100)
          .execute();
      }
      const r = await tx.query<Row>(
        "SELECT tenant_id, id, title, description FROM items WHERE search @@ websearch_to_tsquery('english', $1) LIMIT 100",
        [term.q],
      );
      return r.rows;
    });
    this.#checkSearch(op, term, rows);
  }

  async #libUpdate(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const id = this.#ownItem(t, rng) as string;
    const item = t.live.get(id) as ItemState;
    const v = this.#newVersion(op, rng);
    const kysely = rng.chance(KYSELY_SHARE);
    op.detail = `${kysely ? 'kysely' : 'raw'} update ${id} to ${JSON.stringify(v)}`;
    item.busy = v;
    try {
      const rows = await this.#withTenant(t, async (tx, db) =>
        kysely
          ? db
              .updateTable('items')
              .set({ title: v.title, description: v.description })
              .where('id', '=', id)
              .returning(['tenant_id', 'id'])
              .execute()
          : (
              await tx.query<Row>(
                'UPDATE items SET title = $2, description = $3, updated_at = clock_timestamp() WHERE id = $1 RETURNING tenant_id, id',
                [id, v.title, v.description],
              )
            ).rows,
      );
      item.busy = undefined;
      this.#checks++;
      if (rows.length !== 1 || rows[0]?.tenant_id !== t.record.id) {
        this.#fail(op, 'anomaly', `update of an acknowledged item touched ${rows.length} rows`, JSON.stringify(rows));
        this.#uncertainItem(t, id);
      } else {
        this.#acknowledgeUpdate(t, id, v);
      }
    } catch (error) {
      item.busy = undefined;
      this.#fail(op, 'anomaly', 'update failed', describeError(error));
      this.#uncertainItem(t, id);
    }
  }

  async #libDelete(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const id = this.#ownItem(t, rng) as string;
    const item = t.live.get(id) as ItemState;
    const kysely = rng.chance(KYSELY_SHARE);
    op.detail = `${kysely ? 'kysely' : 'raw'} delete ${id}`;
    item.busy = 'delete';
    try {
      const n = await this.#withTenant(t, async (tx, db) =>
        kysely
          ? Number((await db.deleteFrom('items').where('id', '=', id).executeTakeFirst()).numDeletedRows)
          : (await tx.query('DELETE FROM items WHERE id = $1', [id])).rowCount,
      );
      item.busy = undefined;
      this.#checks++;
      if (n !== 1) {
        this.#fail(op, 'anomaly', `delete of an acknowledged item removed ${n} rows`, id);
        this.#uncertainItem(t, id);
      } else {
        this.#acknowledgeDelete(t, id);
      }
    } catch (error) {
      item.busy = undefined;
      this.#fail(op, 'anomaly', 'delete failed', describeError(error));
      this.#uncertainItem(t, id);
    }
  }

  // -------------------------------------------------------------------------------------
  // Library: reaching for other tenants

  /** Reads, updates and deletes naming another tenant's item id: nothing found, nothing touched. */
  async #libForeignId(op: Op, rng: Rng, within: Within): Promise<void> {
    const t = op.tenant;
    const foreign = this.#foreignId(t, rng);
    const id = foreign?.id ?? rng.uuid();
    const variant = rng.pick(['select', 'kysely-select', 'or-true', 'update', 'kysely-update', 'delete'] as const);
    op.detail = `${variant} naming ${foreign ? `${foreign.owner.record.slug}'s` : 'a random'} id ${id}`;
    if (variant === 'select' || variant === 'kysely-select') {
      const rows = await within(async (tx, db) =>
        variant === 'select'
          ? (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items WHERE id = $1', [id])).rows
          : db.selectFrom('items').select(['tenant_id', 'id', 'title', 'description']).where('id', '=', id).execute(),
      );
      for (const row of rows) this.#checkRow(op, row);
      this.#checks++;
      if (rows.length) this.#fail(op, 'leak', 'another tenant’s id found', JSON.stringify(rows).slice(0, 300));
      return;
    }
    if (variant === 'or-true') {
      // The classic injection: the caller's own rows come back, and only those.
      const rows = await within(async (tx) => {
        const r = await tx.query<Row>(
          `SELECT tenant_id, id, title, description FROM items WHERE id = '${id}' OR '1'='1' --'`,
        );
        return r.rows;
      });
      for (const row of rows) this.#checkRow(op, row);
      return;
    }
    // Writes: the title written carries the caller's marker, so a hit shows in the other's reads too.
    const v = this.#newVersion(op, rng);
    const n = await within(async (tx, db) => {
      if (variant === 'update') {
        return (await tx.query('UPDATE items SET title = $2 WHERE id = $1', [id, v.title])).rowCount;
      }
      if (variant === 'kysely-update') {
        const r = await db.updateTable('items').set({ title: v.title }).where('id', '=', id).executeTakeFirst();
        return Number(r.numUpdatedRows);
      }
      return (await tx.query('DELETE FROM items WHERE id = $1', [id])).rowCount;
    });
    this.#checks++;
    if (n !== 0) this.#fail(op, 'leak', `${variant} reached another tenant’s item`, `${n} rows`);
  }

  /** `WHERE tenant_id = <other>`: no row read, updated or deleted. */
  async #libWhereOtherTenant(op: Op, rng: Rng, within: Within): Promise<void> {
    const t = op.tenant;
    const u = this.#other(t, rng) as TenantState;
    const variant = rng.pick(['select', 'select-inline', 'update', 'delete', 'count-all-tenants'] as const);
    op.detail = `${variant} where tenant_id = ${u.record.slug} (${u.record.tier})`;
    if (variant === 'select' || variant === 'select-inline') {
      const rows = await within(async (tx) => {
        const r =
          variant === 'select'
            ? await tx.query<Row>('SELECT tenant_id, id, title, description FROM items WHERE tenant_id = $1', [
                u.record.id,
              ])
            : await tx.query<Row>(
                `SELECT tenant_id, id, title, description FROM items WHERE tenant_id = '${u.record.id}' OR tenant_id IS NOT NULL`,
              );
        return r.rows;
      });
      for (const row of rows) this.#checkRow(op, row);
      if (variant === 'select') {
        this.#checks++;
        if (rows.length) this.#fail(op, 'leak', 'rows of another tenant_id read', String(rows.length));
      }
      return;
    }
    if (variant === 'count-all-tenants') {
      // What an aggregate over "everyone" sees: the caller's tenant only.
      const r = await within((tx) =>
        tx.query<{ tenant_id: string; n: string }>(
          'SELECT tenant_id, count(*)::text AS n FROM items GROUP BY tenant_id',
        ),
      );
      for (const row of r.rows) {
        this.#checks++;
        if (row.tenant_id !== t.record.id) this.#fail(op, 'leak', 'another tenant counted', JSON.stringify(row));
      }
      return;
    }
    const v = this.#newVersion(op, rng);
    const n = await within(async (tx) =>
      variant === 'update'
        ? (await tx.query('UPDATE items SET title = $2 WHERE tenant_id = $1', [u.record.id, v.title])).rowCount
        : (await tx.query('DELETE FROM items WHERE tenant_id = $1', [u.record.id])).rowCount,
    );
    this.#checks++;
    if (n !== 0) this.#fail(op, 'leak', `${variant} where tenant_id = other touched rows`, String(n));
  }

  /** `INSERT … (tenant_id) VALUES (<other>)`: refused, or (if ever accepted) in the caller's tenant only. */
  async #libInsertOtherTenant(op: Op, rng: Rng, within: Within): Promise<void> {
    const t = op.tenant;
    const u = this.#other(t, rng) as TenantState;
    const v = this.#newVersion(op, rng);
    const variant = rng.pick(['raw', 'inline', 'kysely', 'select-into'] as const);
    op.detail = `${variant} insert with tenant_id of ${u.record.slug} (${u.record.tier}) ${JSON.stringify(v.title)}`;
    const m = markerOf(v.title) as string;
    t.inflight.set(m, v);
    try {
      await this.#refused(
        within(async (tx, db) => {
          if (variant === 'kysely') {
            return db
              .insertInto('items')
              .values({ tenant_id: u.record.id, ...v })
              .returning(['tenant_id', 'id'])
              .execute();
          }
          if (variant === 'raw') {
            const r = await tx.query<Row>(
              'INSERT INTO items (tenant_id, title, description) VALUES ($1, $2, $3) RETURNING tenant_id, id',
              [u.record.id, v.title, v.description],
            );
            return r.rows;
          }
          if (variant === 'inline') {
            const r = await tx.query<Row>(
              `INSERT INTO items (tenant_id, title) VALUES ('${u.record.id}', ${pg.escapeLiteral(v.title)}) RETURNING tenant_id, id`,
            );
            return r.rows;
          }
          // Copy the caller's own row under the other's id: the row is the caller's, the tenant is not.
          const r = await tx.query<Row>(
            'INSERT INTO items (tenant_id, title, description) SELECT $1, $2, $3 FROM (SELECT 1) AS one RETURNING tenant_id, id',
            [u.record.id, v.title, v.description],
          );
          return r.rows;
        }),
        (rows) => {
          this.#checks++;
          for (const row of rows) {
            if (row.tenant_id === t.record.id) this.#acknowledgeInsert(t, row.id, v);
            else {
              this.#fail(op, 'leak', 'row written with another tenant’s id', JSON.stringify(row));
              remember(t.planted, row.id);
            }
          }
        },
      );
    } finally {
      t.inflight.delete(m);
    }
  }

  /** `UPDATE … SET tenant_id = <other>`: refused; the item stays the caller's. */
  async #libMoveToOtherTenant(op: Op, rng: Rng, within: Within): Promise<void> {
    const t = op.tenant;
    const u = this.#other(t, rng) as TenantState;
    const id = this.#ownItem(t, rng) as string;
    const item = t.live.get(id) as ItemState;
    const variant = rng.pick(['raw', 'kysely', 'all-rows'] as const);
    op.detail = `${variant} set tenant_id of ${variant === 'all-rows' ? 'every item' : id} to ${u.record.slug} (${u.record.tier})`;
    item.busy = { title: item.title, description: item.description };
    try {
      await this.#refused(
        within(async (tx, db) => {
          if (variant === 'kysely') {
            return db
              .updateTable('items')
              .set({ tenant_id: u.record.id })
              .where('id', '=', id)
              .returning(['tenant_id', 'id'])
              .execute();
          }
          const r =
            variant === 'raw'
              ? await tx.query<Row>('UPDATE items SET tenant_id = $1 WHERE id = $2 RETURNING tenant_id, id', [
                  u.record.id,
                  id,
                ])
              : await tx.query<Row>('UPDATE items SET tenant_id = $1 RETURNING tenant_id, id', [u.record.id]);
          return r.rows;
        }),
        (rows) => {
          this.#checks++;
          if (rows.some((r) => r.tenant_id !== t.record.id)) {
            this.#fail(op, 'leak', 'row moved to another tenant', JSON.stringify(rows).slice(0, 300));
            for (const r of rows) {
              this.#uncertainItem(t, r.id);
              remember(t.planted, r.id);
            }
          }
        },
      );
    } finally {
      item.busy = undefined;
    }
  }

  /** An insert of the caller's own row with another tenant's item id: it lands in the caller's tenant. */
  async #libCloneForeignId(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const foreign = this.#foreignId(t, rng);
    if (!foreign) return this.#libInsert(Object.assign(op, { kind: 'lib.insert' as const }), rng);
    const v = this.#newVersion(op, rng);
    const m = markerOf(v.title) as string;
    op.detail = `insert own row with ${foreign.owner.record.slug}'s id ${foreign.id}`;
    t.inflight.set(m, v);
    t.reserved.add(foreign.id);
    try {
      const r = await this.#withTenant(t, (tx) =>
        tx.query<Row>('INSERT INTO items (id, title, description) VALUES ($1, $2, $3) RETURNING tenant_id, id', [
          foreign.id,
          v.title,
          v.description,
        ]),
      );
      const row = r.rows[0];
      this.#checks++;
      if (row?.tenant_id !== t.record.id) {
        this.#fail(op, 'leak', 'insert with a foreign id landed elsewhere', JSON.stringify(row));
        remember(t.uncertain, m);
      } else {
        this.#acknowledgeInsert(t, row.id, v);
      }
    } catch (error) {
      this.#fail(op, 'anomaly', 'insert with another tenant’s id refused', describeError(error));
      remember(t.uncertain, m);
    } finally {
      t.inflight.delete(m);
      t.reserved.delete(foreign.id);
    }
  }

  /** A context value read inside another tenant's transaction (then replayed elsewhere). */
  async #steal(t: TenantState, rng: Rng): Promise<string> {
    if (this.#stolen.length >= 8 && rng.chance(0.8)) return rng.pick(this.#stolen);
    const u = this.#other(t, rng) as TenantState;
    const r = await this.#withTenant(u, (tx) =>
      tx.query<{ v: string }>(`SELECT current_setting('${CONTEXT_SETTING}') AS v`),
    );
    const value = r.rows[0]?.v ?? '';
    this.#stolen.push(value);
    if (this.#stolen.length > 16) this.#stolen.shift();
    return value;
  }

  /** Forged and replayed context inside the transaction: refused, or only the caller's rows. */
  async #libForgeContext(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const u = this.#other(t, rng) as TenantState;
    const variant = rng.pick([
      'set_config-forged',
      'set_config-stolen',
      'set-local-stolen',
      'enter-forged',
      'reset',
      'row-security-off',
      'set-role-owner',
      'search-path-other',
    ] as const);
    const forged = `${u.record.id}.0.0.${'0'.repeat(64)}`;
    const value = variant.endsWith('stolen') ? await this.#steal(t, rng) : forged;
    const schema = this.#other(t, rng, (s) => s.record.schemaName !== null)?.record.schemaName ?? 'public';
    const owner = this.#tenantry.config.roles.owner;
    const prelude: Record<typeof variant, string> = {
      'set_config-forged': `SELECT set_config('${CONTEXT_SETTING}', ${pg.escapeLiteral(value)}, true)`,
      'set_config-stolen': `SELECT set_config('${CONTEXT_SETTING}', ${pg.escapeLiteral(value)}, true)`,
      'set-local-stolen': `SET LOCAL ${CONTEXT_SETTING} = ${pg.escapeLiteral(value)}`,
      'enter-forged': `SELECT tenantry_context.enter(${pg.escapeLiteral(`v1.work.${u.record.id}.1.${Date.now() + 5000}.${'ab'.repeat(32)}`)})`,
      reset: `RESET ${CONTEXT_SETTING}`,
      'row-security-off': 'SET LOCAL row_security = off',
      'set-role-owner': `SET LOCAL ROLE ${pg.escapeIdentifier(owner)}`,
      'search-path-other': `SET LOCAL search_path = ${pg.escapeIdentifier(schema)}, public`,
    };
    op.detail = `${variant} (other: ${u.record.slug}) then select every item: ${prelude[variant].slice(0, 200)}`;
    await this.#refused(
      this.#withTenant(t, async (tx) => {
        await tx.query(prelude[variant]);
        return (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items')).rows;
      }),
      (rows) => {
        for (const row of rows) this.#checkRow(op, row);
      },
    );
  }

  /** Schema-qualified reads of another tenant's copy, the shared table, the control plane. */
  async #libOtherSchemaRead(op: Op, rng: Rng, within: Within): Promise<void> {
    const t = op.tenant;
    const s = this.#other(t, rng, (u) => u.record.schemaName !== null);
    const shared = this.#tenantry.config.tenantSchema;
    const target = rng.pick(['other-schema', 'other-schema', 'shared', 'control-plane'] as const);
    if (target === 'control-plane') {
      const table = rng.pick(['tenantry.tenants', 'tenantry.api_keys', 'tenantry.context_key', 'tenantry.audit_log']);
      op.detail = `select from ${table}`;
      await this.#refused(
        within((tx) => tx.query(`SELECT * FROM ${table} LIMIT 5`)),
        (r) => {
          this.#checks++;
          this.#fail(op, 'leak', `control plane readable (${table})`, `${r.rowCount} rows`);
        },
      );
      return;
    }
    const schema = target === 'shared' || !s ? shared : (s.record.schemaName as string);
    op.detail = `select from ${schema}.items (${target === 'shared' || !s ? 'shared table' : `${s.record.slug}'s schema`})`;
    await this.#refused(
      within((tx) =>
        tx.query<Row>(`SELECT tenant_id, id, title, description FROM ${pg.escapeIdentifier(schema)}.items`),
      ),
      (r) => {
        for (const row of r.rows) this.#checkRow(op, row);
      },
    );
  }

  /** Schema-qualified writes into another tenant's copy (or, off the pool tier, the shared table): refused. */
  async #libOtherSchemaWrite(op: Op, rng: Rng, within: Within): Promise<void> {
    const t = op.tenant;
    const s = this.#other(t, rng, (u) => u.record.schemaName !== null);
    const shared = this.#tenantry.config.tenantSchema;
    // A database-tier tenant's own database has its own copy under the shared schema's name.
    const toShared = t.record.tier === 'schema' && (!s || rng.chance(0.3));
    if (!toShared && !s) {
      return this.#libOtherSchemaRead(Object.assign(op, { kind: 'lib.other-schema-read' as const }), rng, within);
    }
    const schema = toShared ? shared : (s?.record.schemaName as string);
    const v = this.#newVersion(op, rng);
    const where = toShared ? 'the shared table' : `${s?.record.slug}'s schema`;
    op.detail = `insert into ${schema}.items (${where}) ${JSON.stringify(v.title)}`;
    // In flight like any insert: if accepted, the row is visible from its commit on, before
    // this operation has recorded it (a concurrent read of that copy must not call it unknown).
    const m = markerOf(v.title) as string;
    t.inflight.set(m, v);
    try {
      await this.#refused(
        within((tx) =>
          tx.query<Row>(
            `INSERT INTO ${pg.escapeIdentifier(schema)}.items (title, description) VALUES ($1, $2) RETURNING tenant_id, id`,
            [v.title, v.description],
          ),
        ),
        (r) => {
          this.#checks++;
          for (const row of r.rows) {
            remember(t.planted, row.id);
            this.#fail(
              op,
              'leak',
              `write landed in ${toShared ? 'the shared table' : 'another tenant’s schema'}`,
              JSON.stringify(row),
            );
          }
        },
      );
    } finally {
      t.inflight.delete(m);
    }
  }

  /**
   * State left on the pooled connection after the transaction: a session-level context
   * value, `search_path`, or a temporary table that shadows `items`. Invariant 3 says a
   * connection returned to the pool carries nothing; whatever does shows up in the reads
   * and writes of whichever tenant gets the connection next.
   */
  async #libSessionState(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const s = this.#other(t, rng, (u) => u.record.schemaName !== null && t.record.tier !== 'database');
    const variant = rng.pick(['context', 'search-path', 'temp-table'] as const);
    let statement: string;
    if (variant === 'context') {
      const value = await this.#steal(t, rng);
      statement = `SELECT set_config('${CONTEXT_SETTING}', ${pg.escapeLiteral(value)}, false)`;
    } else if (variant === 'search-path' && s) {
      statement = `SELECT set_config('search_path', ${pg.escapeLiteral(pg.escapeIdentifier(s.record.schemaName as string))}, false)`;
    } else {
      statement = `CREATE TEMP TABLE IF NOT EXISTS items (
        tenant_id uuid NOT NULL DEFAULT tenantry_context.current_tenant_id(),
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        title text NOT NULL, description text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        search tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || coalesce(description, ''))) STORED)`;
    }
    op.detail = `session-level ${variant}: ${statement.replace(/\s+/g, ' ').slice(0, 200)}`;
    await this.#refused(
      this.#withTenant(t, (tx) => tx.query(statement)),
      () => {
        // Accepted: judged by what the next tenant on this connection reads and writes.
        this.#checks++;
      },
    );
  }

  // -------------------------------------------------------------------------------------
  // HTTP

  /** One request; a 5xx, another tenant's text or id in the answer are findings whatever the route. */
  async #request(
    op: Op,
    method: string,
    path: string,
    options: { key?: string; body?: unknown; headers?: Record<string, string> } = {},
    // biome-ignore lint/suspicious/noExplicitAny: the JSON the server sent, checked field by field
  ): Promise<{ status: number; body: any }> {
    const t = op.tenant;
    const headers: Record<string, string> = { authorization: `Bearer ${options.key ?? t.primary.key}` };
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    if (body !== undefined) headers['content-type'] = 'application/json';
    Object.assign(headers, options.headers);
    const res = await this.#http.send({ method, path, headers, ...(body !== undefined ? { body } : {}) }, op.kind);
    this.#checks++;
    if (res.status >= 500) this.#fail(op, 'anomaly', `${res.status} from the server`, res.text.slice(0, 300));
    const foreign = this.#foreignMarker(t, res.text);
    if (foreign !== undefined) {
      this.#fail(
        op,
        'leak',
        `text of another tenant in an answer (${this.#tenants[foreign]?.record.tier} tier)`,
        res.text.slice(0, 300),
      );
    }
    // Echoing what the caller sent reveals nothing; any other id of another tenant does.
    const sent = `${path} ${body ?? ''} ${JSON.stringify(options.headers ?? {})}`.toLowerCase();
    for (const [match] of res.text.matchAll(UUID)) {
      const uuid = match.toLowerCase();
      if (sent.includes(uuid) || uuid === t.record.id || t.live.has(uuid) || t.gone.has(uuid)) continue;
      const other = this.#byId.get(uuid) ?? this.#owners(uuid, t)[0];
      if (other && other !== t) this.#fail(op, 'leak', 'id of another tenant in an answer', res.text.slice(0, 300));
    }
    let parsed: unknown;
    try {
      parsed = res.text ? JSON.parse(res.text) : undefined;
    } catch {
      parsed = res.text;
    }
    return { status: res.status, body: parsed };
  }

  #expectStatus(op: Op, status: number, expected: readonly number[], what: string): boolean {
    this.#checks++;
    if (expected.includes(status)) return true;
    if (status < 500) this.#fail(op, 'anomaly', `${what}: ${status}, expected ${expected.join(' or ')}`, op.detail);
    return false;
  }

  /** The tenant's key for this request: mostly the primary; sometimes the spare (which a rotation may revoke meanwhile). */
  #key(t: TenantState, rng: Rng): string {
    return rng.chance(0.1) && !t.rotating ? t.spare.key : t.primary.key;
  }

  /** A 401 for a key revoked while the request ran is a refusal, not a finding. */
  #revokedMeanwhile(t: TenantState, key: string, status: number): boolean {
    return status === 401 && key !== t.primary.key && (t.rotating || t.revoked.some((r) => r.key === key));
  }

  async #httpCreate(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const v = this.#newVersion(op, rng);
    const m = markerOf(v.title) as string;
    const key = this.#key(t, rng);
    op.detail = `POST /v1/items ${JSON.stringify(v)}`;
    t.inflight.set(m, v);
    try {
      const res = await this.#request(op, 'POST', '/v1/items', { key, body: v });
      if (this.#revokedMeanwhile(t, key, res.status)) return;
      if (!this.#expectStatus(op, res.status, [201], 'create')) {
        remember(t.uncertain, m);
        return;
      }
      const row: Row = res.body;
      this.#checks++;
      if (row?.title !== v.title || row.description !== v.description || typeof row.id !== 'string') {
        this.#fail(op, 'anomaly', 'created item differs from the request', JSON.stringify(row).slice(0, 300));
        remember(t.uncertain, m);
      } else {
        this.#acknowledgeInsert(t, row.id, v);
      }
    } catch (error) {
      remember(t.uncertain, m);
      throw error;
    } finally {
      t.inflight.delete(m);
    }
  }

  async #httpGet(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const id = this.#anyOwnId(t, rng);
    if (!id) return this.#httpList(op);
    const key = this.#key(t, rng);
    op.detail = `GET /v1/items/${id}`;
    const res = await this.#request(op, 'GET', `/v1/items/${id}`, { key });
    if (this.#revokedMeanwhile(t, key, res.status)) return;
    if (!this.#expectStatus(op, res.status, [200, 404], 'get')) return;
    this.#checkOne(op, id, res.status === 200 ? [res.body] : []);
  }

  async #httpList(op: Op): Promise<void> {
    op.kind = 'http.list';
    const t = op.tenant;
    const key = t.primary.key;
    op.detail = 'GET /v1/items?limit=100';
    const res = await this.#request(op, 'GET', '/v1/items?limit=100', { key });
    if (this.#revokedMeanwhile(t, key, res.status)) return;
    if (!this.#expectStatus(op, res.status, [200], 'list')) return;
    const rows: Row[] = res.body?.items ?? [];
    for (const row of rows) this.#checkRow(op, row);
    if (!res.body?.nextCursor) this.#checkComplete(op, rows);
  }

  async #httpSearch(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const term = this.#searchTerm(op, rng);
    const key = this.#key(t, rng);
    op.detail = `GET /v1/items?q=${JSON.stringify(term.q)}`;
    const res = await this.#request(op, 'GET', `/v1/items?limit=100&q=${encodeURIComponent(term.q)}`, { key });
    if (this.#revokedMeanwhile(t, key, res.status)) return;
    // A query of nothing but white space or punctuation may be refused as bad input.
    if (!this.#expectStatus(op, res.status, [200, 400], 'search') || res.status === 400) return;
    this.#checkSearch(op, term, res.body?.items ?? []);
  }

  async #httpPatch(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const id = this.#ownItem(t, rng) as string;
    const item = t.live.get(id) as ItemState;
    const v = this.#newVersion(op, rng);
    const key = this.#key(t, rng);
    op.detail = `PATCH /v1/items/${id} ${JSON.stringify(v)}`;
    item.busy = v;
    try {
      const res = await this.#request(op, 'PATCH', `/v1/items/${id}`, { key, body: v });
      item.busy = undefined;
      if (this.#revokedMeanwhile(t, key, res.status)) return;
      if (!this.#expectStatus(op, res.status, [200], 'patch')) {
        this.#uncertainItem(t, id);
        return;
      }
      this.#checks++;
      if (res.body?.title !== v.title || res.body?.description !== v.description) {
        this.#fail(op, 'anomaly', 'patched item differs from the request', JSON.stringify(res.body).slice(0, 300));
        this.#uncertainItem(t, id);
        return;
      }
      this.#acknowledgeUpdate(t, id, v);
    } catch (error) {
      item.busy = undefined;
      this.#uncertainItem(t, id);
      throw error;
    }
  }

  async #httpDelete(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const id = this.#ownItem(t, rng) as string;
    const item = t.live.get(id) as ItemState;
    const key = this.#key(t, rng);
    op.detail = `DELETE /v1/items/${id}`;
    item.busy = 'delete';
    try {
      const res = await this.#request(op, 'DELETE', `/v1/items/${id}`, { key });
      item.busy = undefined;
      if (this.#revokedMeanwhile(t, key, res.status)) return;
      if (!this.#expectStatus(op, res.status, [204], 'delete')) {
        this.#uncertainItem(t, id);
        return;
      }
      this.#acknowledgeDelete(t, id);
    } catch (error) {
      item.busy = undefined;
      this.#uncertainItem(t, id);
      throw error;
    }
  }

  /** Another tenant's item id in the path: 404, exactly like a missing one, whatever the method. */
  async #httpForeignId(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const foreign = this.#foreignId(t, rng);
    const id = foreign?.id ?? rng.uuid();
    const method = rng.pick(['GET', 'GET', 'PATCH', 'DELETE'] as const);
    const body = method === 'PATCH' ? this.#newVersion(op, rng) : undefined;
    op.detail = `${method} /v1/items/${id} (${foreign ? `${foreign.owner.record.slug}'s` : 'random'})`;
    const res = await this.#request(op, method, `/v1/items/${id}`, body ? { body } : {});
    this.#checks++;
    if (res.status < 300)
      this.#fail(op, 'leak', `${method} of another tenant’s item answered ${res.status}`, op.detail);
    else this.#expectStatus(op, res.status, [404], 'foreign id');
  }

  /** `X-Tenant-ID` naming another tenant than the key's: 403, never data. */
  async #httpTenantHeaderMismatch(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const u = this.#other(t, rng) as TenantState;
    const claim = rng.pick([u.record.id, u.record.slug, u.record.slug.toUpperCase(), u.record.id.toUpperCase()]);
    const own = this.#ownItem(t, rng);
    const path = rng.chance(0.5) || !own ? '/v1/items?limit=100' : `/v1/items/${own}`;
    op.detail = `GET ${path} with X-Tenant-ID ${claim} (${u.record.tier})`;
    const res = await this.#request(op, 'GET', path, { headers: { 'x-tenant-id': claim } });
    this.#checks++;
    if (res.status < 300) this.#fail(op, 'leak', 'mismatched X-Tenant-ID answered with data', op.detail);
    else this.#expectStatus(op, res.status, [403], 'mismatched X-Tenant-ID');
  }

  /** A body naming another tenant: refused as bad input (the schemas are strict). */
  async #httpBodyTenantId(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const u = this.#other(t, rng) as TenantState;
    const field = rng.pick(['tenant_id', 'tenantId', 'tenant']);
    const v = this.#newVersion(op, rng);
    const own = this.#ownItem(t, rng);
    const patch = own !== undefined && rng.chance(0.5);
    const body = { ...(patch ? { title: v.title } : v), [field]: u.record.id };
    const path = patch ? `/v1/items/${own}` : '/v1/items';
    op.detail = `${patch ? 'PATCH' : 'POST'} ${path} ${JSON.stringify(body).slice(0, 200)}`;
    const item = patch ? t.live.get(own as string) : undefined;
    const m = markerOf(v.title) as string;
    if (item) item.busy = { title: v.title, description: item.description };
    else t.inflight.set(m, v);
    try {
      const res = await this.#request(op, patch ? 'PATCH' : 'POST', path, { body });
      if (res.status < 300) {
        // Accepted: where it went is for the sweep to say; the model cannot know.
        this.#fail(op, 'anomaly', `body with ${field} accepted`, op.detail);
        if (item) item.uncertain = true;
        else remember(t.uncertain, m);
      } else {
        this.#expectStatus(op, res.status, [400], `body with ${field}`);
      }
    } finally {
      if (item) item.busy = undefined;
      else t.inflight.delete(m);
    }
  }

  /** A key revoked more than the documented propagation ago: 401. */
  async #httpRevokedKey(op: Op, rng: Rng): Promise<void> {
    const t = op.tenant;
    const now = Date.now();
    const old = t.revoked.filter((r) => now - r.at > REVOCATION_VISIBLE_MS);
    const pick = old.length ? rng.pick(old) : rng.pick(t.revoked);
    const visible = now - pick.at > REVOCATION_VISIBLE_MS;
    op.detail = `GET /v1/items with a key revoked ${now - pick.at} ms ago`;
    const res = await this.#request(op, 'GET', '/v1/items?limit=100', { key: pick.key });
    this.#checks++;
    if (res.status === 401) return;
    if (visible) {
      this.#fail(op, res.status < 300 ? 'leak' : 'anomaly', `revoked key answered ${res.status}`, op.detail);
      return;
    }
    // Within the propagation window the key may still work, and then only for its own tenant.
    if (res.status === 200) for (const row of res.body?.items ?? []) this.#checkRow(op, row);
  }

  /** Creates a new spare key and revokes the old one (the revocation runs while requests use it). */
  async #rotateKey(op: Op): Promise<void> {
    const t = op.tenant;
    if (t.rotating) return;
    t.rotating = true;
    const old = t.spare;
    op.detail = `rotate the spare key ${old.id}`;
    try {
      const created = await this.#tenantry.apiKeys.create(t.record.id, {
        name: `spare ${op.index}`,
        environment: 'test',
        scopes: ['items:read', 'items:write'],
      });
      t.spare = { key: created.key, id: created.record.id };
      await this.#tenantry.apiKeys.revoke(t.record.id, old.id);
      t.revoked.push({ key: old.key, at: Date.now() });
      if (t.revoked.length > 4) t.revoked.shift();
    } finally {
      t.rotating = false;
    }
  }

  // -------------------------------------------------------------------------------------
  // The final sweep, as a superuser

  async #sweep(): Promise<{ copies: number; rows: number }> {
    const adminUrl = this.#o.adminUrl ?? this.#tenantry.config.databaseUrl;
    const shared = this.#tenantry.config.tenantSchema;
    const sweepOp = (t: TenantState, detail = 'sweep'): Op => ({
      index: -1,
      kind: 'sweep',
      tenant: t,
      start: this.#clock,
      detail,
    });
    const seen = new Map<TenantState, Set<string>>(this.#tenants.map((t) => [t, new Set<string>()]));
    let copies = 0;
    let total = 0;
    const read = async (url: string, schema: string, owner: TenantState | undefined, label: string) => {
      const client = new pg.Client({ connectionString: url });
      let connected = false;
      try {
        await client.connect();
        connected = true;
        const { rows } = await client.query<Row & { tenant_id: string }>(
          `SELECT tenant_id::text, id::text, title, description FROM ${pg.escapeIdentifier(schema)}.items`,
        );
        copies++;
        total += rows.length;
        for (const row of rows) {
          const t = this.#byId.get(row.tenant_id);
          const reporter = owner ?? t ?? (this.#tenants[0] as TenantState);
          const op = sweepOp(reporter, `sweep of ${label}`);
          this.#checks++;
          if (!t) {
            this.#fail(op, 'anomaly', 'row of no tenant of the run', JSON.stringify(row).slice(0, 300));
            continue;
          }
          const home = owner ? t === owner : t.record.tier === 'pool';
          if (!home) {
            // Already reported when the write was accepted, unless the model never saw it.
            if (!t.planted.has(row.id)) {
              this.#fail(
                op,
                'leak',
                `row of ${t.record.tier}-tier tenant in ${label}`,
                JSON.stringify(row).slice(0, 300),
              );
            }
            continue;
          }
          (seen.get(t) as Set<string>).add(row.id);
          this.#checkRow(sweepOp(t, `sweep of ${label}`), row);
        }
      } catch (error) {
        // A copy nobody can read is not a clean copy.
        this.#fail(
          sweepOp(owner ?? (this.#tenants[0] as TenantState)),
          'anomaly',
          `sweep could not read ${label}`,
          describeError(error),
        );
      } finally {
        if (connected) await client.end();
      }
    };
    await read(adminUrl, shared, undefined, 'the shared table');
    for (const t of this.#tenants) {
      const { schemaName, databaseName, placementId } = t.record;
      if (schemaName) await read(adminUrl, schemaName, t, `${t.record.slug}'s schema`);
      if (databaseName) {
        const placement = await this.#tenantry.placements.resolve(placementId);
        const url = new URL(placement.url ?? adminUrl);
        url.pathname = `/${databaseName}`;
        await read(url.toString(), shared, t, `${t.record.slug}'s database`);
      }
    }
    for (const t of this.#tenants) {
      const found = seen.get(t) as Set<string>;
      for (const [id, item] of t.live) {
        if (item.uncertain) continue;
        this.#checks++;
        if (!found.has(id)) {
          this.#fail(sweepOp(t), 'anomaly', 'acknowledged item missing from its copy of items', id);
        }
      }
    }
    return { copies, rows: total };
  }
}

/** Most entries a per-tenant set of exceptions keeps: memory stays bounded on a run that goes badly. */
const SET_LIMIT = 10_000;

/** Adds `value` to `set`, dropping the oldest entry past {@link SET_LIMIT}. */
function remember(set: Set<string>, value: string): void {
  set.add(value);
  if (set.size > SET_LIMIT) set.delete(set.values().next().value as string);
}

const DEFAULT_TENANTS: Readonly<Record<IsolationTier, number>> = { pool: 6, schema: 4, database: 2 };

function weighted(rng: Rng, kinds: readonly [OpKind, number][]): OpKind {
  const total = kinds.reduce((sum, [, w]) => sum + w, 0);
  let r = rng.next() * total;
  for (const [kind, w] of kinds) {
    r -= w;
    if (r < 0) return kind;
  }
  return (kinds.at(-1) as [OpKind, number])[0];
}

function describeError(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown; stack?: unknown };
  const code = typeof e?.code === 'string' ? `${e.code}: ` : '';
  const message = typeof e?.message === 'string' ? e.message : String(error);
  // A fuzzer bug (no code) is easier to find with its stack.
  return code || typeof e?.stack !== 'string' ? `${code}${message}` : String(e.stack).slice(0, 1000);
}

/**
 * Runs the isolation fuzzer (see the top of this file) and returns its report; it never
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
