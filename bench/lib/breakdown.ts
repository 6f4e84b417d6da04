import type pg from 'pg';
import { mintContextToken } from '../../packages/tenantry/src/context/context-token.ts';
import { postgresDialect, type TenantContext } from '../../packages/tenantry/src/index.ts';
import { pipelinedBegin } from '../../packages/tenantry/src/transaction/pipelined-begin.ts';
import { Submittable } from '../../packages/tenantry/src/wire/submittable.ts';
import {
  inBaselineTransaction,
  pick,
  SIDE_LABELS,
  type Side,
  type SideCheck,
  type SideEnv,
  type Workload,
  type WorkloadData,
} from './workloads.ts';

const POINT_SQL = 'SELECT id, title, description, created_at FROM items WHERE tenant_id = $1 AND id = $2';
const RAW_SQL = 'SELECT id, title, description, created_at FROM items WHERE id = $1';

interface Params {
  readonly tenant: TenantContext;
  readonly id: string;
}

/** How a hand-made transaction opens: plain `BEGIN`, or pipelined with a statement as Tenantry does. */
type Opening = 'begin' | 'pipelined-select' | 'pipelined-enter';

/** The slice of pg's connection a submittable writes to. */
interface WireConnection {
  parse(config: { text: string }): void;
  bind(config: { values?: unknown[] }): void;
  describe(config: { type: 'P' }): void;
  execute(config: Record<string, never>): void;
  sync(): void;
  stream: { cork?: () => void; uncork?: () => void };
}

/**
 * `BEGIN`, `enter($1)` and the first statement in one pipelined exchange (one Sync): what
 * a tenant transaction that opens lazily, with its first statement, would send. Resolves
 * with the statement's rows as `{ id }` (no type parsing), or rejects with the first error.
 */
class PipelinedFirstStatement extends Submittable<unknown[], WireConnection> {
  #rows: unknown[] = [];
  #described = false;
  readonly #enterValues: unknown[];
  readonly #text: string;
  readonly #values: unknown[];

  constructor(enterValues: unknown[], text: string, values: unknown[]) {
    super();
    this.#enterValues = enterValues;
    this.#text = text;
    this.#values = values;
  }

  protected send(connection: WireConnection): void {
    connection.stream.cork?.();
    connection.parse({ text: 'BEGIN' });
    connection.bind({ values: [] });
    connection.execute({});
    connection.parse({ text: postgresDialect.enterSql });
    connection.bind({ values: this.#enterValues });
    connection.execute({});
    connection.parse({ text: this.#text });
    connection.bind({ values: this.#values });
    connection.describe({ type: 'P' });
    connection.execute({});
    connection.sync();
    connection.stream.uncork?.();
  }

  override handleRowDescription(): void {
    this.#described = true;
  }
  override handleDataRow(message: { fields: unknown[] }): void {
    if (this.#described) this.#rows.push({ id: message.fields[0] });
  }
  protected outcome(): unknown[] {
    return this.#rows;
  }
}

/** A point lookup opened lazily: 2 round trips (BEGIN + enter + statement, then COMMIT). */
async function lazyOpening(pool: pg.Pool, key: Buffer, p: Params): Promise<unknown[]> {
  const client = await pool.connect();
  try {
    const pid = (client as unknown as { processID: number }).processID;
    const token = mintContextToken(key, 'work', p.tenant.id, pid, Date.now() + 10_000);
    const first = new PipelinedFirstStatement([token, null, 'public', p.tenant.id, null, null, null, null], POINT_SQL, [
      p.tenant.id,
      p.id,
    ]);
    (client as unknown as { query(s: PipelinedFirstStatement): unknown }).query(first);
    const rows = await first.promise;
    await client.query('COMMIT');
    return rows;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * One point lookup in a transaction made by hand on `pool` (no Tenantry code but
 * `pipelinedBegin`), so each step from the baseline to Tenantry can be measured alone.
 */
async function handMade(pool: pg.Pool, key: Buffer, opening: Opening, p: Params): Promise<unknown[]> {
  const client = await pool.connect();
  try {
    if (opening === 'begin') {
      await client.query('BEGIN');
    } else {
      const pid = (client as unknown as { processID: number }).processID;
      const token = mintContextToken(key, 'work', p.tenant.id, pid, Date.now() + 10_000);
      const enter =
        opening === 'pipelined-enter'
          ? { text: postgresDialect.enterSql, values: [token, null, 'public', p.tenant.id, null, null, null, null] }
          : { text: 'SELECT $1::text AS token', values: [token] };
      await pipelinedBegin(client, { begin: 'BEGIN', enter, parseEnter: true });
    }
    const { rows } = await client.query(POINT_SQL, [p.tenant.id, p.id]);
    await client.query('COMMIT');
    return rows;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * The point lookup, taken from the baseline to Tenantry one step at a time; the
 * differences between neighbouring rows are what each step costs:
 *
 * - `a` → `a+pipe`: Tenantry's wire shape (BEGIN and a statement in one extended-protocol exchange);
 * - `a+pipe` → `a+enter`: the statement is `tenantry_context.enter($1)` (verifies the token, sets the context);
 * - `a+enter` → `r+enter`: the runtime role, so RLS applies (the policy's `current_tenant_id()` InitPlan);
 * - `r+enter` → `r+lazy`: not Tenantry today — BEGIN, enter and the statement in one round trip (2 instead of 3);
 * - `r+enter` → `b-sql`: Tenantry's own JavaScript (`withTenant`, token minting, AsyncLocalStorage, wrappers);
 * - `b-sql` → `b-raw`: no explicit `tenant_id` predicate (RLS alone);
 * - `b-sql` → `b`: Kysely (query building, the tenant-filter plugin, compiling).
 */
export function breakdownWorkload(data: WorkloadData): Workload {
  const { tenants, sample } = data;
  const next = (): Params => {
    const row = pick(sample);
    return { tenant: tenants[row.tenant] as TenantContext, id: row.id };
  };
  const steps = (env: SideEnv): { key: string; label: string; exec(p: Params): Promise<unknown[]> }[] => {
    const { baseline, tenantry, contextKey } = env;
    return [
      {
        key: 'a',
        label: SIDE_LABELS.a,
        exec: async (p) => (await inBaselineTransaction(baseline, (c) => c.query(POINT_SQL, [p.tenant.id, p.id]))).rows,
      },
      {
        key: 'a+pipe',
        label: 'superuser; BEGIN pipelined with SELECT $1::text',
        exec: (p) => handMade(baseline, contextKey, 'pipelined-select', p),
      },
      {
        key: 'a+enter',
        label: 'superuser; BEGIN pipelined with enter($1)',
        exec: (p) => handMade(baseline, contextKey, 'pipelined-enter', p),
      },
      {
        key: 'r+enter',
        label: 'runtime role (RLS); same by hand, no Tenantry JS',
        exec: (p) => handMade(tenantry.runtimePool, contextKey, 'pipelined-enter', p),
      },
      {
        key: 'r+lazy',
        label: 'as r+enter, BEGIN+enter+statement pipelined (2 RTs)',
        exec: (p) => lazyOpening(tenantry.runtimePool, contextKey, p),
      },
      {
        key: 'b-sql',
        label: 'tenantry.withTenant + tx.query, explicit tenant_id',
        exec: (p) =>
          tenantry.transaction(p.tenant, async (tx) => (await tx.query(POINT_SQL, [p.tenant.id, p.id])).rows),
      },
      {
        key: 'b-raw',
        label: SIDE_LABELS['b-raw'],
        exec: (p) => tenantry.transaction(p.tenant, async (tx) => (await tx.query(RAW_SQL, [p.id])).rows),
      },
      {
        key: 'b',
        label: SIDE_LABELS.b,
        exec: (p) =>
          tenantry.transaction(p.tenant, (tx) =>
            tx.db
              .selectFrom('items')
              .select(['id', 'title', 'description', 'created_at'])
              .where('id', '=', p.id)
              .execute(),
          ),
      },
    ];
  };
  return {
    key: 'breakdown',
    title: '1B. point lookup, step by step from a to b',
    writes: false,
    singleClient: true,
    sides: (env): Side[] => steps(env).map((s) => ({ key: s.key, label: s.label, run: () => s.exec(next()) })),
    async check(env): Promise<SideCheck[]> {
      const p = next();
      const out: SideCheck[] = [];
      for (const step of steps(env)) {
        const rows = await step.exec(p);
        out.push({
          key: step.key,
          rows: rows.length,
          ids: rows.map((r) => (r as { id: string }).id).join(','),
          plan: undefined,
        });
      }
      return out;
    },
  };
}
