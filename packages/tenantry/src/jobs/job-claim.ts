/**
 * The statements of the queue's state machine, as text prepared once. Every transition out
 * of `running` decrements the tenant's `job_queues.running` in the same statement, so the
 * count the concurrency cap reads is exact whatever the outcome (done, failed, released,
 * or taken back from a dead worker).
 */

/** What a claim returns. */
export interface ClaimedRow {
  id: string;
  tenant_id: string;
  type: string;
  payload: Record<string, unknown>;
  attempts: number;
  max_attempts: number;
  timeout_ms: number;
  lease_id: string;
}

const RETURNING = `claimed.id::text AS id, claimed.tenant_id, claimed.type, claimed.payload, claimed.attempts,
  claimed.max_attempts, claimed.timeout_ms, claimed.lease_id::text AS lease_id`;

/** Marks the chosen job running under a fresh lease. `$1` worker name, `$3` lease in ms. */
const CLAIM = `claimed AS (
  UPDATE tenantry.jobs j SET state = 'running', attempts = j.attempts + 1, lease_id = gen_random_uuid(),
         lease_until = now() + make_interval(secs => $3::double precision / 1000), worker = $1,
         started_at = clock_timestamp(), cancel_requested = false
    FROM job WHERE j.id = job.id
  RETURNING j.*
)`;

/**
 * The fair claim (weighted fair queueing across tenants, in one statement):
 *
 * 1. `cand`: tenants that are active, under their concurrency cap, and have a job due of a
 *    type this worker runs;
 * 2. `pick`: of those, the one with the smallest virtual time, its queue row locked
 *    (`SKIP LOCKED`: concurrent workers spread over tenants; the cap is rechecked on the
 *    locked row, so it holds exactly);
 * 3. `job`: that tenant's next job by priority, then due time;
 * 4. the tenant's virtual time advances by `1 / weight`. A tenant coming back from idle
 *    starts no further than one unit behind the others (the `- 1` floor), so it cannot
 *    spend credit saved while it had nothing to do; a tenant that stays backlogged keeps
 *    its exact share.
 *
 * `$2` the types this worker runs. With `SKIP LOCKED` replaced by a wait, the same
 * statement is the fallback when every candidate was locked by another worker's claim.
 */
function fairClaim(lock: 'SKIP LOCKED' | ''): string {
  return `WITH cand AS MATERIALIZED (
  SELECT q.tenant_id, q.vtime FROM tenantry.job_queues q
    JOIN tenantry.tenants t ON t.id = q.tenant_id
   WHERE t.status = 'active' AND q.running < q.concurrency
     AND EXISTS (SELECT 1 FROM tenantry.jobs p
                  WHERE p.tenant_id = q.tenant_id AND p.state = 'pending' AND p.run_at <= now()
                    AND p.type = ANY ($2::text[]))
), pick AS (
  SELECT q.tenant_id FROM tenantry.job_queues q
   WHERE q.tenant_id IN (SELECT c.tenant_id FROM cand c) AND q.running < q.concurrency
   ORDER BY q.vtime, q.tenant_id LIMIT 1 FOR UPDATE ${lock}
), job AS (
  SELECT j.id FROM tenantry.jobs j
   WHERE j.tenant_id = (SELECT pick.tenant_id FROM pick) AND j.state = 'pending' AND j.run_at <= now()
     AND j.type = ANY ($2::text[])
   ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1 FOR UPDATE SKIP LOCKED
), ${CLAIM}, bump AS (
  UPDATE tenantry.job_queues q SET running = q.running + 1,
         vtime = GREATEST(q.vtime, (SELECT min(c.vtime) - 1 FROM cand c WHERE c.tenant_id <> q.tenant_id))
                 + 1.0 / q.weight
    FROM claimed WHERE q.tenant_id = claimed.tenant_id
)
SELECT ${RETURNING} FROM claimed`;
}

/** The fair claim; see {@link fairClaim}. */
export const FAIR_CLAIM_SQL = fairClaim('SKIP LOCKED');
/** The fair claim that waits for a locked candidate instead of skipping it. */
export const FAIR_CLAIM_WAIT_SQL = fairClaim('');

/**
 * The same queue in arrival order, caps and weights ignored (what a FIFO queue does): the
 * benchmark's baseline, and `order: 'fifo'` for whoever wants it. Same bookkeeping.
 */
export const FIFO_CLAIM_SQL = `WITH job AS (
  SELECT j.id FROM tenantry.jobs j
   WHERE j.state = 'pending' AND j.run_at <= now() AND j.type = ANY ($2::text[])
     AND EXISTS (SELECT 1 FROM tenantry.tenants t WHERE t.id = j.tenant_id AND t.status = 'active')
   ORDER BY j.id LIMIT 1 FOR UPDATE SKIP LOCKED
), ${CLAIM}, bump AS (
  UPDATE tenantry.job_queues q SET running = q.running + 1 FROM claimed WHERE q.tenant_id = claimed.tenant_id
)
SELECT ${RETURNING} FROM claimed`;

/** Decrements the running count of the tenants of the rows `done` returned. */
const DECREMENT = `UPDATE tenantry.job_queues q SET running = GREATEST(q.running - done.n, 0)
  FROM (SELECT tenant_id, count(*)::int AS n FROM done GROUP BY tenant_id) done WHERE q.tenant_id = done.tenant_id`;

/** Completed outside the job's transaction (database tier). `$1` id, `$2` lease. */
export const COMPLETE_SQL = `WITH done AS (
  UPDATE tenantry.jobs SET state = 'completed', finished_at = clock_timestamp(), lease_id = NULL,
         lease_until = NULL, last_error = NULL
   WHERE id = $1 AND lease_id = $2 AND state = 'running' RETURNING tenant_id
) ${DECREMENT}`;

/**
 * A run that did not complete: `$3` the next state (`pending` to retry after `$4` ms,
 * `failed`, `cancelled`), `$5` the error, `$6` true to give the attempt back (the run was
 * not the job's fault: its tenant was suspended, the worker shut down).
 */
export const SETTLE_SQL = `WITH done AS (
  UPDATE tenantry.jobs SET state = $3, last_error = $5, lease_id = NULL, lease_until = NULL,
         run_at = CASE WHEN $3 = 'pending' THEN clock_timestamp() + make_interval(secs => $4::double precision / 1000)
                       ELSE run_at END,
         attempts = attempts - CASE WHEN $6::boolean THEN 1 ELSE 0 END,
         finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE clock_timestamp() END
   WHERE id = $1 AND lease_id = $2 AND state = 'running' RETURNING tenant_id
) ${DECREMENT}`;

/**
 * Takes back jobs whose lease expired (their worker died or hung): pending again, or
 * dead-lettered when that was their last attempt, or cancelled when that was asked.
 */
export const REAP_SQL = `WITH done AS (
  UPDATE tenantry.jobs SET lease_id = NULL, lease_until = NULL, last_error = 'lease expired: the worker stopped',
         state = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
         finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN clock_timestamp() END
   WHERE id IN (SELECT id FROM tenantry.jobs WHERE state = 'running' AND lease_until < now()
                 ORDER BY lease_until LIMIT 1000 FOR UPDATE SKIP LOCKED)
  RETURNING tenant_id
), counted AS (${DECREMENT} RETURNING 1)
SELECT count(*)::int AS n FROM done`;

/** Extends a lease; returns `cancel_requested`, or no row when the lease was lost. */
export const HEARTBEAT_SQL = `UPDATE tenantry.jobs SET lease_until = now() + make_interval(secs => $3::double precision / 1000)
  WHERE id = $1 AND lease_id = $2 AND state = 'running' RETURNING cancel_requested`;

/** Records progress of a running job. */
export const PROGRESS_SQL = `UPDATE tenantry.jobs SET progress = $3::jsonb WHERE id = $1 AND lease_id = $2 AND state = 'running'`;

/**
 * Brings each queue's weight and cap in line with its tenant's plan. `$1` a JSON array of
 * `{ plan, weight, concurrency }`, `$2` and `$3` the defaults.
 */
export const SYNC_PLANS_SQL = `UPDATE tenantry.job_queues q SET weight = s.weight, concurrency = s.concurrency
  FROM (SELECT t.id, coalesce(p.weight, $2) AS weight, coalesce(p.concurrency, $3) AS concurrency
          FROM tenantry.tenants t
          LEFT JOIN jsonb_to_recordset($1::jsonb) AS p (plan text, weight integer, concurrency integer) ON p.plan = t.plan) s
 WHERE q.tenant_id = s.id AND (q.weight, q.concurrency) IS DISTINCT FROM (s.weight, s.concurrency)`;
