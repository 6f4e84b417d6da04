import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TENANTRY_SQLSTATE as S } from '../errors/sqlstate.ts';
import type { TenantMigration } from '../schema/migration.ts';
import { quoteIdent } from '../sql.ts';

/** The channel an enqueue notifies (empty payload: one wake-up per transaction). */
export const JOBS_CHANNEL = 'tenantry_jobs';

/**
 * Control-plane migration 0013: background jobs (see `jobs/` and docs/jobs.md).
 *
 * Tenantry's own tables, not pg-boss or graphile-worker: both pick the next job of a
 * queue by arrival (FIFO), and the fair pick across tenants, the per-tenant concurrency
 * cap and the suspended-tenant rule all have to be part of the claiming statement itself
 * (`jobs/job-claim.ts`) — a pick made beside the library's own claim would race with it.
 *
 * - `jobs`: one row per job, `tenant_id` first, `ON DELETE CASCADE` from the tenant, so a
 *   hard-deleted tenant's jobs go with its row and a moved tenant's jobs stay where they
 *   are (the queue is in the control plane, whatever the tier).
 * - `job_queues`: one row per tenant that ever had a job: its weight and concurrency cap
 *   (from its plan, kept in step by the workers), how many of its jobs run now, and its
 *   virtual time (`vtime`), the fair scheduler's clock: the tenant with the smallest
 *   `vtime` goes next, and each claim adds `1 / weight` to it.
 * - `job_schedules`: cron schedules per tenant.
 *
 * The runtime role gets no privilege on the tables: a tenant transaction enqueues through
 * `job_enqueue(…)` and a job's own transaction completes it through `job_complete(…)`,
 * both `SECURITY DEFINER` and both taking the tenant from the verified context. As in the
 * outbox's functions, every name in the data-plane functions is schema-qualified.
 */
export function jobsMigration(runtimeRole: string): TenantMigration {
  const runtime = quoteIdent(runtimeRole);
  const ctx = CONTEXT_SCHEMA;
  return {
    id: '0013_jobs',
    up: (m) =>
      m.query(`
CREATE TABLE tenantry.job_queues (
  tenant_id uuid PRIMARY KEY REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  weight integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
  concurrency integer NOT NULL DEFAULT 4 CHECK (concurrency BETWEEN 1 AND 100000),
  running integer NOT NULL DEFAULT 0,
  vtime double precision NOT NULL DEFAULT 0
);

CREATE TABLE tenantry.jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  type text NOT NULL CHECK (length(type) BETWEEN 1 AND 200),
  payload jsonb NOT NULL DEFAULT '{}',
  state text NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  priority integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
  run_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 1000),
  timeout_ms integer NOT NULL DEFAULT 300000 CHECK (timeout_ms BETWEEN 1 AND 86400000),
  unique_key text CHECK (length(unique_key) BETWEEN 1 AND 200),
  lease_id uuid,
  lease_until timestamptz,
  worker text,
  cancel_requested boolean NOT NULL DEFAULT false,
  progress jsonb,
  last_error text,
  actor text,
  request_id text,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  started_at timestamptz,
  finished_at timestamptz
);
-- A tenant's next job: priority first, then when it became due.
CREATE INDEX jobs_pending_idx ON tenantry.jobs (tenant_id, priority DESC, run_at, id) WHERE state = 'pending';
-- The FIFO order, and the oldest waiting job.
CREATE INDEX jobs_pending_fifo_idx ON tenantry.jobs (id) WHERE state = 'pending';
CREATE INDEX jobs_running_idx ON tenantry.jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_tenant_idx ON tenantry.jobs (tenant_id, id);
CREATE INDEX jobs_finished_idx ON tenantry.jobs (finished_at) WHERE state IN ('completed', 'cancelled');
-- Singleton / idempotency key: one live job per key and type.
CREATE UNIQUE INDEX jobs_unique_idx ON tenantry.jobs (tenant_id, type, unique_key)
  WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');

CREATE TABLE tenantry.job_schedules (
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.:-]{0,99}$'),
  type text NOT NULL CHECK (length(type) BETWEEN 1 AND 200),
  cron text NOT NULL CHECK (length(cron) BETWEEN 1 AND 200),
  timezone text NOT NULL DEFAULT 'UTC',
  payload jsonb NOT NULL DEFAULT '{}',
  next_run_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, name)
);
CREATE INDEX job_schedules_due_idx ON tenantry.job_schedules (next_run_at);

-- Writes a job of tenant tid (any tier); returns its id, or the id of the live job with
-- the same unique key. Owner only: the data plane goes through job_enqueue below.
CREATE FUNCTION tenantry.job_insert(tid uuid, job_type text, p_payload jsonb, p_priority integer,
  p_run_at timestamptz, p_max_attempts integer, p_timeout_ms integer, p_key text, p_actor text, p_request_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  new_id bigint;
BEGIN
  INSERT INTO tenantry.job_queues (tenant_id) VALUES (tid) ON CONFLICT (tenant_id) DO NOTHING;
  INSERT INTO tenantry.jobs AS j (tenant_id, type, payload, priority, run_at, max_attempts, timeout_ms, unique_key, actor, request_id)
  VALUES (tid, job_type, coalesce(p_payload, '{}'), coalesce(p_priority, 0), coalesce(p_run_at, pg_catalog.clock_timestamp()),
          coalesce(p_max_attempts, 5), coalesce(p_timeout_ms, 300000), p_key, p_actor, p_request_id)
  ON CONFLICT (tenant_id, type, unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running') DO NOTHING
  RETURNING j.id INTO new_id;
  IF new_id IS NULL THEN
    SELECT j.id INTO new_id FROM tenantry.jobs j
     WHERE j.tenant_id OPERATOR(pg_catalog.=) tid AND j.type OPERATOR(pg_catalog.=) job_type
       AND j.unique_key OPERATOR(pg_catalog.=) p_key AND j.state IN ('pending', 'running');
  ELSE
    PERFORM pg_catalog.pg_notify('${JOBS_CHANNEL}', '');
  END IF;
  RETURN new_id;
END
$fn$;
REVOKE ALL ON FUNCTION tenantry.job_insert(uuid, text, jsonb, integer, timestamptz, integer, integer, text, text, text) FROM PUBLIC;

-- The data plane's enqueue: the tenant is the verified context's, never a parameter.
CREATE FUNCTION ${ctx}.job_enqueue(job_type text, p_payload jsonb, p_priority integer, p_run_at timestamptz,
  p_max_attempts integer, p_timeout_ms integer, p_key text, p_actor text, p_request_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $fn$
DECLARE
  tid uuid := ${ctx}.current_tenant_id();
BEGIN
  IF tid IS NULL THEN
    RAISE EXCEPTION 'tenantry: a job needs a verified tenant context' USING ERRCODE = '${S.invalidContext}';
  END IF;
  RETURN tenantry.job_insert(tid, job_type, p_payload, p_priority, p_run_at, p_max_attempts, p_timeout_ms, p_key, p_actor, p_request_id);
END
$fn$;
REVOKE ALL ON FUNCTION ${ctx}.job_enqueue(text, jsonb, integer, timestamptz, integer, integer, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${ctx}.job_enqueue(text, jsonb, integer, timestamptz, integer, integer, text, text, text) TO ${runtime};

-- Marks a running job completed from inside the job's own tenant transaction, so the
-- mark commits with the job's writes or not at all. Needs the claim's lease id, and the
-- job must be the verified context's tenant's. When the lease was lost (the job was taken
-- back and may run elsewhere), it raises, so the job's writes roll back: a job whose
-- tenant's rows are in the main database takes effect exactly once.
CREATE FUNCTION ${ctx}.job_complete(p_job_id bigint, p_lease uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $fn$
DECLARE
  tid uuid := ${ctx}.current_tenant_id();
BEGIN
  IF tid IS NULL THEN
    RAISE EXCEPTION 'tenantry: a job needs a verified tenant context' USING ERRCODE = '${S.invalidContext}';
  END IF;
  UPDATE tenantry.jobs j SET state = 'completed', finished_at = pg_catalog.clock_timestamp(),
         lease_id = NULL, lease_until = NULL, last_error = NULL
   WHERE j.id OPERATOR(pg_catalog.=) p_job_id AND j.tenant_id OPERATOR(pg_catalog.=) tid
     AND j.lease_id OPERATOR(pg_catalog.=) p_lease AND j.state = 'running';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tenantry: the job''s lease was lost; its work is rolled back' USING ERRCODE = '${S.jobLeaseLost}';
  END IF;
  UPDATE tenantry.job_queues q SET running = q.running OPERATOR(pg_catalog.-) 1
   WHERE q.tenant_id OPERATOR(pg_catalog.=) tid;
  RETURN true;
END
$fn$;
REVOKE ALL ON FUNCTION ${ctx}.job_complete(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${ctx}.job_complete(bigint, uuid) TO ${runtime};
`),
  };
}
