import type { TenantMigration } from '../schema/migration.ts';

/** Every function below: fully qualified names, and no JIT for statements over transition tables. */
const FUNCTION = `LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off`;

/** Writers of the storage totals take turns: one transaction-scoped lock, taken first. */
const LOCK = `PERFORM pg_advisory_xact_lock(hashtext('tenantry.tier_storage'));`;

/** `tier_storage` gains `new_rows` and loses `old_rows` (of `tenant_storage_latest`) that are counted. */
const adjust = (parts: string[]) => `
  INSERT INTO tenantry.tier_storage AS s (tier, bytes, tenants)
  SELECT tier, sum(bytes), sum(tenants) FROM (${parts.join(' UNION ALL ')}) x
   GROUP BY tier ORDER BY tier
  ON CONFLICT (tier) DO UPDATE SET bytes = s.bytes + excluded.bytes, tenants = s.tenants + excluded.tenants`;
const ADDED = 'SELECT tier, storage_bytes AS bytes, 1 AS tenants FROM new_rows WHERE counted';
const REMOVED = 'SELECT tier, -storage_bytes AS bytes, -1 AS tenants FROM old_rows WHERE counted';

/**
 * Control-plane migration 0025: storage per tier from each tenant's latest
 * snapshot, kept as snapshots are written, instead of a probe of every tenant's snapshots at
 * each reading (`usage.storageByTier()`, the per-tier storage gauges of `/metrics`).
 *
 * `tenant_storage_latest` holds each tenant's latest snapshot (tier, bytes) and whether it
 * is counted (its tenant is not `deleted`); `tier_storage` holds, per tier, the sum of the
 * counted rows and how many there are. Triggers keep them: a snapshot newer than a tenant's
 * latest replaces it; deleting a tenant's latest (upkeep, erasure) falls back to its next
 * newest, or to none; a tenant's status moving to or from `deleted` counts it or not; and
 * every change of `tenant_storage_latest` (whoever makes it, erasure included) is added to
 * `tier_storage`. They take one transaction-scoped advisory lock first, so they take turns.
 */
export const tierStorageMigration: TenantMigration = {
  id: '0025_tier_storage_totals',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.tenant_storage_latest (
  -- No foreign key: erasure removes the tenant's snapshots (and so this row) on its own.
  tenant_id uuid PRIMARY KEY,
  taken_at timestamptz NOT NULL,
  tier text NOT NULL,
  storage_bytes bigint NOT NULL,
  counted boolean NOT NULL
);

CREATE TABLE tenantry.tier_storage (
  tier text PRIMARY KEY,
  bytes numeric NOT NULL,
  tenants bigint NOT NULL
);

CREATE FUNCTION tenantry.tier_storage_count() RETURNS trigger
${FUNCTION}
AS $fn$
BEGIN
  ${LOCK}
  IF TG_OP = 'INSERT' THEN
    ${adjust([ADDED])};
  ELSIF TG_OP = 'UPDATE' THEN
    ${adjust([ADDED, REMOVED])};
  ELSE
    ${adjust([REMOVED])};
  END IF;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER tenant_storage_latest_insert AFTER INSERT ON tenantry.tenant_storage_latest
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.tier_storage_count();
CREATE TRIGGER tenant_storage_latest_update AFTER UPDATE ON tenantry.tenant_storage_latest
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.tier_storage_count();
CREATE TRIGGER tenant_storage_latest_delete AFTER DELETE ON tenantry.tenant_storage_latest
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.tier_storage_count();

CREATE FUNCTION tenantry.tenant_storage_snapshot() RETURNS trigger
${FUNCTION}
AS $fn$
BEGIN
  ${LOCK}
  IF TG_OP = 'INSERT' THEN
    INSERT INTO tenantry.tenant_storage_latest AS l (tenant_id, taken_at, tier, storage_bytes, counted)
    SELECT DISTINCT ON (n.tenant_id) n.tenant_id, n.taken_at, n.tier, n.storage_bytes,
           coalesce((SELECT t.status <> 'deleted' FROM tenantry.tenants t WHERE t.id = n.tenant_id), false)
      FROM new_rows n ORDER BY n.tenant_id, n.taken_at DESC
    ON CONFLICT (tenant_id) DO UPDATE
      SET taken_at = excluded.taken_at, tier = excluded.tier, storage_bytes = excluded.storage_bytes,
          counted = excluded.counted
      WHERE excluded.taken_at > l.taken_at;
  ELSE
    -- The tenants whose latest went: their next newest snapshot, if any, takes its place.
    UPDATE tenantry.tenant_storage_latest l
       SET taken_at = n.taken_at, tier = n.tier, storage_bytes = n.storage_bytes
      FROM old_rows o CROSS JOIN LATERAL (
        SELECT m.taken_at, m.tier, m.storage_bytes FROM tenantry.tenant_metrics m
         WHERE m.tenant_id = o.tenant_id ORDER BY m.taken_at DESC LIMIT 1) n
     WHERE o.tenant_id = l.tenant_id AND o.taken_at = l.taken_at;
    DELETE FROM tenantry.tenant_storage_latest l USING old_rows o
     WHERE o.tenant_id = l.tenant_id AND o.taken_at = l.taken_at;
  END IF;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER tenant_metrics_storage_insert AFTER INSERT ON tenantry.tenant_metrics
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.tenant_storage_snapshot();
CREATE TRIGGER tenant_metrics_storage_delete AFTER DELETE ON tenantry.tenant_metrics
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.tenant_storage_snapshot();

CREATE FUNCTION tenantry.tenant_storage_status() RETURNS trigger
${FUNCTION}
AS $fn$
BEGIN
  ${LOCK}
  UPDATE tenantry.tenant_storage_latest SET counted = NEW.status <> 'deleted'
   WHERE tenant_id = NEW.id AND counted IS DISTINCT FROM (NEW.status <> 'deleted');
  RETURN NULL;
END
$fn$;
-- A row trigger: status changes are few, and other updates of tenants must not pay for it.
CREATE TRIGGER tenants_storage_status AFTER UPDATE OF status ON tenantry.tenants
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION tenantry.tenant_storage_status();

CREATE FUNCTION tenantry.tenant_storage_clear() RETURNS trigger
${FUNCTION}
AS $fn$
BEGIN
  ${LOCK}
  DELETE FROM tenantry.tenant_storage_latest;
  RETURN NULL;
END
$fn$;
-- No snapshots, no latest ones.
CREATE TRIGGER tenant_metrics_storage_truncate AFTER TRUNCATE ON tenantry.tenant_metrics
  FOR EACH STATEMENT EXECUTE FUNCTION tenantry.tenant_storage_clear();

REVOKE ALL ON FUNCTION tenantry.tier_storage_count() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.tenant_storage_clear() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.tenant_storage_snapshot() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.tenant_storage_status() FROM PUBLIC;

-- What is there already (the triggers above hold writers off until this commits).
INSERT INTO tenantry.tenant_storage_latest (tenant_id, taken_at, tier, storage_bytes, counted)
SELECT t.id, l.taken_at, l.tier, l.storage_bytes, t.status <> 'deleted'
  FROM tenantry.tenants t CROSS JOIN LATERAL (
    SELECT m.taken_at, m.tier, m.storage_bytes FROM tenantry.tenant_metrics m
     WHERE m.tenant_id = t.id ORDER BY m.taken_at DESC LIMIT 1) l;
`),
};
