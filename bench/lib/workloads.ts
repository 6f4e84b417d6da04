import { type CompiledQuery, type Kysely, sql } from 'kysely';
import type pg from 'pg';
import { inTransaction } from '../../packages/tenantry/src/control/admin-transaction.ts';
import type { TenantContext, Tenantry } from '../../packages/tenantry/src/index.ts';
import type { BenchDB } from './dataset.ts';
import { type ScanNode, scanNodes } from './plan.ts';

/**
 * The sides of a workload:
 * - `a`: baseline — the statement with an explicit `tenant_id = $1`, inside plain `BEGIN … COMMIT`,
 *   on a pool of the `DATABASE_URL` role (a superuser), which bypasses row-level security;
 * - `b`: `tenantry.transaction(context, tx => tx.db…)` — Kysely, the tenant predicate added by Tenantry;
 * - `b-raw`: `tenantry.transaction(context, tx => tx.query(…))` — raw SQL with no tenant predicate, RLS alone;
 * - `c`: the baseline statement alone, autocommit, on the superuser pool (one round trip);
 * - `q`: the baseline statement as a whole tenant transaction, `tenantry.query()` (one round trip),
 *   where `c` is measured: what a one-statement route costs against the bare autocommit query;
 * - `q-prep`: the same marked `prepare: true` (what `prepareTenantQuery()` returns): prepared once
 *   per connection, then only bound. `c`, like pg's `query(text, values)`, is parsed every time.
 * The breakdown workload adds steps between `a` and `b` (see `breakdown.ts`).
 */
export type SideKey = string;

export const SIDE_LABELS = {
  a: 'baseline: superuser, BEGIN…COMMIT, explicit tenant_id',
  b: 'tenantry.withTenant + Kysely tx.db',
  'b-raw': 'tenantry.withTenant + raw tx.query, RLS only',
  c: 'bare autocommit statement, superuser pool',
  q: 'tenantry.query: BEGIN+context+statement+COMMIT, 1 RT',
  'q-prep': 'the same, the statement prepared (prepare: true)',
} as const;

/** One way of running a workload's transaction; `run` picks fresh random parameters. */
export interface Side {
  readonly key: SideKey;
  readonly label: string;
  run(): Promise<unknown>;
}

/** What every side saw for the same parameters, and how each one planned it. */
export interface SideCheck {
  readonly key: SideKey;
  readonly rows: number;
  readonly ids: string;
  readonly plan: { readonly text: string; readonly scans: ScanNode[] } | undefined;
}

/** Where the sides run: the superuser pool and a Tenantry, both sized for the client count. */
export interface SideEnv {
  readonly baseline: pg.Pool;
  readonly tenantry: Tenantry<BenchDB>;
  /** The context HMAC key (derived from the secret as Tenantry does), for the breakdown's hand-made tokens. */
  readonly contextKey: Buffer;
  /** For the usage workload: the same Tenantry with usage accounting off, and with counters only. */
  readonly usage?: { readonly off: Tenantry<BenchDB>; readonly named: Tenantry<BenchDB> } | undefined;
}

export interface Workload {
  readonly key: string;
  readonly title: string;
  readonly writes: boolean;
  /** Measured at the smallest client count only. */
  readonly singleClient?: boolean;
  sides(env: SideEnv): Side[];
  /** Runs every side once with the same parameters and explains each (ANALYZE for reads). */
  check(env: SideEnv): Promise<SideCheck[]>;
  /** Called (on the admin pool) before and after the workload's measurements. */
  before?(admin: pg.Pool): Promise<void>;
  after?(admin: pg.Pool): Promise<void>;
}

interface Executable {
  compile(): CompiledQuery;
  execute(): Promise<unknown[]>;
}

/** One workload: the same statement three (or four) ways. */
interface Spec<P> {
  readonly key: string;
  readonly title: string;
  readonly writes: boolean;
  readonly autocommit: boolean;
  next(): P;
  tenant(p: P): TenantContext;
  /** Baseline SQL: `$1` is the tenant id. */
  readonly baseline: { readonly sql: string; values(p: P): unknown[] };
  /** Raw SQL without tenant predicate (row-level security alone). */
  readonly raw: { readonly sql: string; values(p: P): unknown[] };
  kysely(db: Kysely<BenchDB>, p: P): Executable;
  before?(admin: pg.Pool): Promise<void>;
  after?(admin: pg.Pool): Promise<void>;
}

/** Plain `BEGIN … COMMIT` on the baseline's pool. */
export const inBaselineTransaction = inTransaction;

function idsOf(rows: readonly unknown[]): string {
  return rows
    .map((r) => (r as { id?: string }).id ?? '')
    .sort()
    .join(',');
}

function define<P>(spec: Spec<P>): Workload {
  const explainSql = (format: 'TEXT' | 'JSON') =>
    spec.writes ? `EXPLAIN (COSTS OFF, FORMAT ${format}) ` : `EXPLAIN (ANALYZE, COSTS OFF, FORMAT ${format}) `;
  return {
    key: spec.key,
    title: spec.title,
    writes: spec.writes,
    before: spec.before,
    after: spec.after,
    sides(env) {
      const { baseline, tenantry } = env;
      const sides: Side[] = [
        {
          key: 'a',
          label: SIDE_LABELS.a,
          run: () => {
            const p = spec.next();
            return inBaselineTransaction(baseline, (c) => c.query(spec.baseline.sql, spec.baseline.values(p)));
          },
        },
        {
          key: 'b',
          label: SIDE_LABELS.b,
          run: () => {
            const p = spec.next();
            return tenantry.transaction(spec.tenant(p), (tx) => spec.kysely(tx.db, p).execute());
          },
        },
        {
          key: 'b-raw',
          label: SIDE_LABELS['b-raw'],
          run: () => {
            const p = spec.next();
            return tenantry.transaction(spec.tenant(p), (tx) => tx.query(spec.raw.sql, spec.raw.values(p)));
          },
        },
      ];
      if (spec.autocommit) {
        sides.push({
          key: 'c',
          label: SIDE_LABELS.c,
          run: () => {
            const p = spec.next();
            return baseline.query(spec.baseline.sql, spec.baseline.values(p));
          },
        });
        sides.push({
          key: 'q',
          label: SIDE_LABELS.q,
          run: () => {
            const p = spec.next();
            return tenantry.query(spec.tenant(p), spec.baseline.sql, spec.baseline.values(p));
          },
        });
        sides.push({
          key: 'q-prep',
          label: SIDE_LABELS['q-prep'],
          run: () => {
            const p = spec.next();
            return tenantry.query(spec.tenant(p), {
              sql: spec.baseline.sql,
              parameters: spec.baseline.values(p),
              prepare: true,
            });
          },
        });
      }
      return sides;
    },
    async check(env) {
      const p = spec.next();
      const out: SideCheck[] = [];
      // Read the rows once first, so no plan's timings include fetching pages the next one finds cached.
      if (!spec.writes) await env.baseline.query(spec.baseline.sql, spec.baseline.values(p));
      const explained = async (
        query: (text: string, values: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>,
        text: string,
        values: unknown[],
      ) => {
        const textPlan = await query(explainSql('TEXT') + text, values);
        const jsonPlan = await query(explainSql('JSON') + text, values);
        return {
          text: textPlan.rows.map((r) => r['QUERY PLAN']).join('\n'),
          scans: scanNodes(jsonPlan.rows[0]?.['QUERY PLAN']),
        };
      };
      // a: the baseline statement as the superuser.
      const a = spec.writes ? [] : (await env.baseline.query(spec.baseline.sql, spec.baseline.values(p))).rows;
      const aPlan = await inBaselineTransaction(env.baseline, (c) =>
        explained((t, v) => c.query(t, v), spec.baseline.sql, spec.baseline.values(p)),
      );
      out.push({ key: 'a', rows: a.length, ids: idsOf(a), plan: aPlan });
      // b and b-raw: as the runtime role, inside a tenant transaction.
      const { b, bPlan } = await env.tenantry.transaction(spec.tenant(p), async (tx) => {
        const query = spec.kysely(tx.db, p);
        const compiled = query.compile();
        const plan = await explained((t, v) => tx.query(t, v), compiled.sql, [...compiled.parameters]);
        return { b: spec.writes ? [] : await query.execute(), bPlan: plan };
      });
      out.push({ key: 'b', rows: b.length, ids: idsOf(b), plan: bPlan });
      const { raw, rawPlan } = await env.tenantry.transaction(spec.tenant(p), async (tx) => {
        const plan = await explained((t, v) => tx.query(t, v), spec.raw.sql, spec.raw.values(p));
        return { raw: spec.writes ? [] : (await tx.query(spec.raw.sql, spec.raw.values(p))).rows, rawPlan: plan };
      });
      out.push({ key: 'b-raw', rows: raw.length, ids: idsOf(raw), plan: rawPlan });
      return out;
    },
  };
}

/** What the workloads draw from: the tenants, a sample of existing rows, the vocabulary. */
export interface WorkloadData {
  readonly tenants: readonly TenantContext[];
  readonly sample: readonly { tenant: number; id: string }[];
  readonly words: readonly string[];
}

export const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)] as T;

const FTS_SQL = `search @@ websearch_to_tsquery('english', $2)`;

/** Every workload, keyed as `--workloads` names them. */
export function workloads(data: WorkloadData): Record<string, Workload> {
  const { tenants, sample, words } = data;
  const randomTenant = () => ({ tenant: pick(tenants) });
  const phrase = (n: number) => Array.from({ length: n }, () => pick(words)).join(' ');

  const point = define({
    key: 'point',
    title: '1. point lookup by id',
    writes: false,
    autocommit: true,
    next: () => {
      const row = pick(sample);
      return { tenant: tenants[row.tenant] as TenantContext, id: row.id };
    },
    tenant: (p) => p.tenant,
    baseline: {
      sql: 'SELECT id, title, description, created_at FROM items WHERE tenant_id = $1 AND id = $2',
      values: (p) => [p.tenant.id, p.id],
    },
    raw: { sql: 'SELECT id, title, description, created_at FROM items WHERE id = $1', values: (p) => [p.id] },
    kysely: (db, p) =>
      db.selectFrom('items').select(['id', 'title', 'description', 'created_at']).where('id', '=', p.id),
  });

  const range = define({
    key: 'range',
    title: '2. 50 newest rows of a tenant',
    writes: false,
    autocommit: false,
    next: randomTenant,
    tenant: (p) => p.tenant,
    baseline: {
      sql: 'SELECT id, title, created_at FROM items WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 50',
      values: (p) => [p.tenant.id],
    },
    raw: { sql: 'SELECT id, title, created_at FROM items ORDER BY created_at DESC LIMIT 50', values: () => [] },
    kysely: (db) =>
      db.selectFrom('items').select(['id', 'title', 'created_at']).orderBy('created_at', 'desc').limit(50),
  });

  const insert = define({
    key: 'insert',
    title: '3. insert one row',
    writes: true,
    autocommit: false,
    next: () => ({ tenant: pick(tenants), title: phrase(4), description: phrase(12) }),
    tenant: (p) => p.tenant,
    baseline: {
      sql: 'INSERT INTO items (tenant_id, title, description) VALUES ($1, $2, $3)',
      values: (p) => [p.tenant.id, p.title, p.description],
    },
    raw: {
      sql: 'INSERT INTO items (title, description) VALUES ($1, $2)',
      values: (p) => [p.title, p.description],
    },
    kysely: (db, p) => db.insertInto('items').values({ title: p.title, description: p.description }),
    // New rows sit in the GIN index's pending list (fastupdate) until a vacuum merges them,
    // and every search scans that list: without this, searches measured after the inserts
    // of an earlier client count would pay for it.
    after: async (admin) => {
      await admin.query('VACUUM (ANALYZE) items');
    },
  });

  const ftsSpec = (key: string, title: string, leakproof: boolean): Spec<{ tenant: TenantContext; word: string }> => ({
    key,
    title,
    writes: false,
    autocommit: false,
    next: () => ({ tenant: pick(tenants), word: pick(words) }),
    tenant: (p) => p.tenant,
    baseline: {
      sql: `SELECT id, title FROM items WHERE tenant_id = $1 AND ${FTS_SQL} LIMIT 20`,
      values: (p) => [p.tenant.id, p.word],
    },
    raw: {
      sql: `SELECT id, title FROM items WHERE ${FTS_SQL.replace('$2', '$1')} LIMIT 20`,
      values: (p) => [p.word],
    },
    kysely: (db, p) =>
      db
        .selectFrom('items')
        .select(['id', 'title'])
        .where(sql<boolean>`search @@ websearch_to_tsquery('english', ${p.word})`)
        .limit(20),
    // `@@` (ts_match_vq) is not LEAKPROOF, so under RLS PostgreSQL will not use it as an
    // index condition. Marking it LEAKPROOF (superuser, this database's catalog only) is
    // the experiment; it is undone afterwards.
    ...(leakproof
      ? {
          before: async (admin: pg.Pool) => {
            await admin.query('ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF');
          },
          after: async (admin: pg.Pool) => {
            await admin.query('ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) NOT LEAKPROOF');
          },
        }
      : {}),
  });

  return {
    point,
    range,
    fts: define(ftsSpec('fts', '4. full-text search, LIMIT 20', false)),
    'fts-leakproof': define(ftsSpec('fts-leakproof', '4L. full-text search, ts_match_vq LEAKPROOF', true)),
    insert,
  };
}
