import type { ClientBase } from 'pg';
import { quoteIdent } from '../sql.ts';

/**
 * The retrofit ledger: one row per applied step of a plan, in the control-plane schema
 * (owned by the owner role, unreachable from the runtime role). A transactional step
 * inserts its row in its own transaction, so it is recorded exactly when it took effect;
 * a concurrent index build is recorded after it, and is written so that running it again
 * is harmless.
 */
export const LEDGER_TABLE = 'tenantry.retrofit_steps';

/** Creates the ledger if needed. */
export async function ensureLedger(client: ClientBase, ownerRole: string): Promise<void> {
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${LEDGER_TABLE} (
       plan_id text NOT NULL,
       step int NOT NULL,
       action text NOT NULL,
       target text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (plan_id, step)
     )`,
  );
  await client.query(`ALTER TABLE ${LEDGER_TABLE} OWNER TO ${quoteIdent(ownerRole)}`);
}

/** Numbers of the steps of `planId` already applied. */
export async function appliedSteps(client: ClientBase, planId: string): Promise<Set<number>> {
  const { rows } = await client.query<{ step: number }>(`SELECT step FROM ${LEDGER_TABLE} WHERE plan_id = $1`, [
    planId,
  ]);
  return new Set(rows.map((r) => r.step));
}

/** Records a step; a second record of the same step is a no-op (a concurrent step rerun after a kill). */
export async function recordStep(
  client: ClientBase,
  planId: string,
  step: { n: number; action: string; target: string },
): Promise<void> {
  await client.query(
    `INSERT INTO ${LEDGER_TABLE} (plan_id, step, action, target) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
    [planId, step.n, step.action, step.target],
  );
}
