import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientBase } from 'pg';
import { TenantryError } from '../errors/catalog.ts';
import { recordStep } from './ledger.ts';
import type { RetrofitStep } from './plan-step.ts';

/**
 * Errors worth another try: a lock not granted within `lock_timeout` (55P03), a deadlock
 * (40P01) or a serialization failure (40001). The step rolled back; nothing was changed.
 */
const RETRYABLE = new Set(['55P03', '40P01', '40001']);

/** How a step is run. */
export interface StepRunSettings {
  readonly planId: string;
  /** `lock_timeout` of every statement that waits for a lock the old application may hold. */
  readonly lockTimeoutMs: number;
  /** Tries after the first, with exponential backoff, when a lock is not granted. */
  readonly lockRetries: number;
  /** Rows per backfill batch (turned into a range of pages). */
  readonly batchRows: number;
  /** The admin connection may set `session_replication_role` (superuser): triggers stay quiet during the backfill. */
  readonly quietTriggers: boolean;
  readonly signal?: AbortSignal;
  /** Called on a retry (`attempt` from 1) and after each backfill batch (`fraction` done). */
  onEvent?(event: { kind: 'retry'; attempt: number; error: string } | { kind: 'batch'; fraction: number }): void;
}

function code(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

/** Runs `attempt` until it succeeds, retrying lock timeouts and deadlocks with backoff. */
async function withRetries(step: RetrofitStep, s: StepRunSettings, attempt: () => Promise<void>): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      const retry = RETRYABLE.has(code(error) ?? '') && tries < s.lockRetries && !s.signal?.aborted;
      if (!retry) {
        const why = RETRYABLE.has(code(error) ?? '') ? ` (no lock after ${tries + 1} tries)` : '';
        throw new TenantryError(
          'RETROFIT_STEP_FAILED',
          `step ${step.n} ${step.action} ${step.target}${why}: ${(error as Error).message}`,
          { cause: error, details: { step: step.n } },
        );
      }
      s.onEvent?.({ kind: 'retry', attempt: tries + 1, error: (error as Error).message });
      await sleep(Math.min(100 * 2 ** tries, 5_000) * (0.5 + Math.random()));
    }
  }
}

/** One transaction: the statements and the ledger row commit together, or neither does. */
async function inTransaction(client: ClientBase, s: StepRunSettings, body: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(s.lockTimeoutMs))}`);
    await body();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/**
 * Runs one step (not `registry`) on a dedicated admin connection, with the default
 * tenant's id in place of its placeholder, and records it in the ledger.
 */
export async function runStep(client: ClientBase, step: RetrofitStep, sql: string, s: StepRunSettings): Promise<void> {
  if (step.mode === 'transaction') {
    return withRetries(step, s, () =>
      inTransaction(client, s, async () => {
        await client.query(sql);
        await recordStep(client, s.planId, step);
      }),
    );
  }
  if (step.mode === 'concurrent') {
    // A build killed midway leaves an INVALID index that IF NOT EXISTS would keep: drop it first.
    if (step.relation) {
      const { rows } = await client.query<{ valid: boolean }>(
        'SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)',
        [step.relation],
      );
      if (rows[0] && !rows[0].valid) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${step.relation}`);
    }
    // A concurrent build blocks no writer, so it may wait for old transactions as long as it takes.
    return withRetries(step, s, async () => {
      await client.query('SET lock_timeout = 0');
      try {
        await client.query(sql);
      } catch (error) {
        if (step.relation) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${step.relation}`).catch(() => {});
        throw error;
      } finally {
        await client.query('RESET lock_timeout');
      }
      await recordStep(client, s.planId, step);
    });
  }
  if (step.mode === 'batched') return runBatched(client, step, sql, s);
  throw new TenantryError('USAGE_ERROR', `step ${step.n}: runStep does not run ${step.mode} steps`);
}

/**
 * A backfill: the batch statement over successive ranges of pages (a TID range scan reads
 * only those pages), each range its own short transaction, then the sweep, which catches
 * rows the old application moved behind the range meanwhile, in the transaction that
 * records the step.
 */
async function runBatched(client: ClientBase, step: RetrofitStep, sql: string, s: StepRunSettings): Promise<void> {
  const [batch, sweep] = sql.split(/;\s*\n/).map((x) => x.trim().replace(/;$/, ''));
  if (!batch || !sweep || !step.relation) {
    throw new TenantryError(
      'RETROFIT_PLAN_INVALID',
      `step ${step.n}: a batched step needs a batch, a sweep and a table`,
    );
  }
  const { rows } = await client.query<{ pages: string; rows_per_page: number }>(
    `SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int)::text AS pages,
            CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages ELSE 100 END AS rows_per_page
       FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [step.relation],
  );
  const pages = Number(rows[0]?.pages ?? 0);
  const span = Math.max(1, Math.floor(s.batchRows / Math.max(1, rows[0]?.rows_per_page ?? 100)));
  const quiet = async () => {
    if (s.quietTriggers) await client.query('SET LOCAL session_replication_role = replica');
  };
  for (let start = 0; start < pages; start += span) {
    if (s.signal?.aborted) throw new TenantryError('RETROFIT_INTERRUPTED', `during step ${step.n} ${step.action}`);
    const text = batch
      .replaceAll(":'batch_start'", `'(${start},0)'`)
      .replaceAll(":'batch_end'", `'(${start + span},0)'`);
    await withRetries(step, s, () =>
      inTransaction(client, s, async () => {
        await quiet();
        await client.query(text);
      }),
    );
    s.onEvent?.({ kind: 'batch', fraction: Math.min(1, (start + span) / pages) });
  }
  await withRetries(step, s, () =>
    inTransaction(client, s, async () => {
      await quiet();
      await client.query(sweep);
      await recordStep(client, s.planId, step);
    }),
  );
}
