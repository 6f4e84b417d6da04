import type { TenantMigration } from '../schema/migration.ts';

/**
 * The windows (in minutes) whose per-tenant totals migration 0026 keeps running, ascending:
 * `usage.top` over 15 minutes, an hour and a day reads them; other windows read the
 * per-minute rows. A later set needs a migration of its own (rows of
 * `tenantry.tenant_usage_windows` and their backfill).
 */
export const USAGE_TOTALS_WINDOWS: readonly number[] = Object.freeze([15, 60, 1440]);

// Written out rather than imported: a migration that ran must not change with later code.
const COUNTED = [
  'transactions',
  'statements',
  'db_time_ms',
  'rows_read',
  'rows_written',
  'errors',
  'requests',
  'status_2xx',
  'status_3xx',
  'status_4xx',
  'status_5xx',
  'bytes_in',
  'bytes_out',
  'api_key_requests',
];

/** `sign * count(*) AS minutes, sign * sum(c) AS c, …` of per-minute rows aliased `r`. */
const sums = (sign: string) =>
  [`${sign} * count(*) AS minutes`, ...COUNTED.map((c) => `${sign} * sum(r.${c}) AS ${c}`)].join(', ');
/** `minutes = t.minutes + g.minutes, c = t.c + g.c, …`. */
const added = (from: string) => ['minutes', ...COUNTED].map((c) => `${c} = t.${c} + ${from}.${c}`).join(', ');

/**
 * The figures of per-minute rows `source` (a transition table) counted in each window, per
 * window and tenant, with `sign`: the rows whose minute is not older than the window's
 * `since` (read after the windows' lock, so an advance is either wholly before or wholly
 * after).
 */
const perWindow = (source: string, sign: string) => `
  SELECT w.window_minutes, r.tenant_id, ${sums(sign)}
    FROM ${source} r JOIN tenantry.tenant_usage_windows w ON r.minute >= w.since
   GROUP BY w.window_minutes, r.tenant_id`;

const UPSERT = (changes: string) => `
  INSERT INTO tenantry.tenant_usage_window_totals AS t (window_minutes, tenant_id, minutes, ${COUNTED.join(', ')})
  SELECT window_minutes, tenant_id, sum(minutes), ${COUNTED.map((c) => `sum(${c})`).join(', ')}
    FROM (${changes}) c
   GROUP BY window_minutes, tenant_id ORDER BY tenant_id, window_minutes
  ON CONFLICT (tenant_id, window_minutes) DO UPDATE SET ${added('excluded')}`;

/**
 * Control-plane migration 0026: running per-tenant totals of the per-minute usage rows over
 * the windows of {@link USAGE_TOTALS_WINDOWS}, so that `usage.top` over them reads `limit`
 * rows of an index instead of every row of the window.
 *
 * `tenant_usage_windows` holds, per window, `since`: the oldest minute the totals count.
 * `tenant_usage_window_totals` holds, per window and tenant, the sums of its per-minute rows
 * from `since` on and how many there are (`minutes`; a total reaching 0 rows is deleted, as
 * the tenant has left the window). Statement triggers on `tenant_usage_minutes` add every
 * insert and update (a flush's upsert, by any instance and any version of it) and subtract
 * every delete (upkeep, erasure; a `TRUNCATE` empties them); the function
 * `tenantry.usage_windows_advance()` moves each `since` to
 * `date_trunc('minute', now()) - window`, subtracting the minutes that left. Both lock the
 * windows' rows (in window order, until commit), so the writers of the totals take turns: a
 * minute is subtracted either with everything written to it or before a late write, which
 * then skips the window (its minute is older than `since`). So the totals always equal the
 * sums of the per-minute rows from `since` on, and a reader that sees `since` equal to its
 * window's start reads exactly what summing the minutes would give.
 *
 * The milliseconds are summed as `numeric`: adding and subtracting floats for a week would
 * drift; numeric sums of the stored values do not.
 */
export const usageWindowsMigration: TenantMigration = {
  id: '0026_usage_window_totals',
  up: (m) =>
    m.query(`
CREATE TABLE tenantry.tenant_usage_windows (
  window_minutes integer PRIMARY KEY CHECK (window_minutes > 0),
  since timestamptz NOT NULL
);

CREATE TABLE tenantry.tenant_usage_window_totals (
  window_minutes integer NOT NULL,
  tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
  minutes bigint NOT NULL,
  ${COUNTED.map((c) => `${c} ${c === 'db_time_ms' ? 'numeric' : 'bigint'} NOT NULL`).join(',\n  ')},
  -- Tenant first: erasure's cascade finds a tenant's rows by it.
  PRIMARY KEY (tenant_id, window_minutes)
);
-- One index per ranking of usage.top: its top-N is the first rows of the window's range.
CREATE INDEX tenant_usage_window_totals_time_idx ON tenantry.tenant_usage_window_totals (window_minutes, db_time_ms DESC, tenant_id);
CREATE INDEX tenant_usage_window_totals_transactions_idx ON tenantry.tenant_usage_window_totals (window_minutes, transactions DESC, tenant_id);
CREATE INDEX tenant_usage_window_totals_statements_idx ON tenantry.tenant_usage_window_totals (window_minutes, statements DESC, tenant_id);
CREATE INDEX tenant_usage_window_totals_errors_idx ON tenantry.tenant_usage_window_totals (window_minutes, errors DESC, tenant_id);
CREATE INDEX tenant_usage_window_totals_requests_idx ON tenantry.tenant_usage_window_totals (window_minutes, requests DESC, tenant_id);
CREATE INDEX tenant_usage_window_totals_rows_idx ON tenantry.tenant_usage_window_totals (window_minutes, (rows_read + rows_written) DESC, tenant_id);

CREATE FUNCTION tenantry.usage_windows_count() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The planner cannot count a transition table's rows: its guesses made JIT compile for
-- longer than the statement ran (about 1 s of a flush of 10,000 tenants).
SET jit = off
AS $fn$
BEGIN
  -- Exclusive, in window order, until commit: the writers of the totals take turns. The
  -- insert and update triggers of one upsert statement touch totals rows in two passes, and
  -- two statements' passes in different orders would deadlock on them.
  PERFORM 1 FROM tenantry.tenant_usage_windows ORDER BY window_minutes FOR UPDATE;
  IF TG_OP = 'INSERT' THEN
    ${UPSERT(perWindow('new_rows', '1'))};
  ELSIF TG_OP = 'UPDATE' THEN
    ${UPSERT(`${perWindow('new_rows', '1')} UNION ALL ${perWindow('old_rows', '-1')}`)};
  ELSE
    -- An update only: the tenant may be going (erasure cascades here and to the totals).
    UPDATE tenantry.tenant_usage_window_totals t
       SET ${['minutes', ...COUNTED].map((c) => `${c} = t.${c} - g.${c}`).join(', ')}
      FROM (${perWindow('old_rows', '1')}) g
     WHERE t.window_minutes = g.window_minutes AND t.tenant_id = g.tenant_id;
    DELETE FROM tenantry.tenant_usage_window_totals t
     USING (SELECT DISTINCT w.window_minutes, r.tenant_id FROM old_rows r
              JOIN tenantry.tenant_usage_windows w ON r.minute >= w.since) g
     WHERE t.window_minutes = g.window_minutes AND t.tenant_id = g.tenant_id AND t.minutes = 0;
  END IF;
  RETURN NULL;
END
$fn$;

-- Transition tables cannot serve two events in one trigger: one trigger per event.
CREATE TRIGGER tenant_usage_minutes_windows_insert AFTER INSERT ON tenantry.tenant_usage_minutes
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.usage_windows_count();
CREATE TRIGGER tenant_usage_minutes_windows_update AFTER UPDATE ON tenantry.tenant_usage_minutes
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.usage_windows_count();
CREATE TRIGGER tenant_usage_minutes_windows_delete AFTER DELETE ON tenantry.tenant_usage_minutes
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tenantry.usage_windows_count();

-- No minute rows, no totals.
CREATE FUNCTION tenantry.usage_windows_clear() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  PERFORM 1 FROM tenantry.tenant_usage_windows ORDER BY window_minutes FOR UPDATE;
  DELETE FROM tenantry.tenant_usage_window_totals;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER tenant_usage_minutes_windows_truncate AFTER TRUNCATE ON tenantry.tenant_usage_minutes
  FOR EACH STATEMENT EXECUTE FUNCTION tenantry.usage_windows_clear();

-- Moves every window's start to the current minute's, subtracting the minutes that left;
-- returns how many windows moved. Costs the rows of the minutes that left since the last
-- advance (whoever ran it), not the rows in the window.
CREATE FUNCTION tenantry.usage_windows_advance() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The planner cannot count a transition table's rows: its guesses made JIT compile for
-- longer than the statement ran (about 1 s of a flush of 10,000 tenants).
SET jit = off
AS $fn$
DECLARE
  w integer;
  s timestamptz;
  target timestamptz;
  emptied uuid[];
  moved integer := 0;
BEGIN
  FOR w, s IN SELECT window_minutes, since FROM tenantry.tenant_usage_windows ORDER BY window_minutes LOOP
    target := date_trunc('minute', now()) - make_interval(mins => w);
    CONTINUE WHEN s >= target;
    SELECT since INTO s FROM tenantry.tenant_usage_windows WHERE window_minutes = w FOR UPDATE;
    CONTINUE WHEN s >= target;
    WITH gone AS (
      SELECT r.tenant_id, ${sums('1')} FROM tenantry.tenant_usage_minutes r
       WHERE r.minute >= s AND r.minute < target GROUP BY r.tenant_id
    ), kept AS (
      UPDATE tenantry.tenant_usage_window_totals t
         SET ${['minutes', ...COUNTED].map((c) => `${c} = t.${c} - g.${c}`).join(', ')}
        FROM gone g WHERE t.window_minutes = w AND t.tenant_id = g.tenant_id
      RETURNING t.tenant_id, t.minutes
    )
    SELECT array_agg(tenant_id) INTO emptied FROM kept WHERE minutes = 0;
    DELETE FROM tenantry.tenant_usage_window_totals
     WHERE window_minutes = w AND tenant_id = ANY (emptied) AND minutes = 0;
    UPDATE tenantry.tenant_usage_windows SET since = target WHERE window_minutes = w;
    moved := moved + 1;
  END LOOP;
  RETURN moved;
END
$fn$;
REVOKE ALL ON FUNCTION tenantry.usage_windows_advance() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.usage_windows_count() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry.usage_windows_clear() FROM PUBLIC;

-- What is there already: the triggers above hold writers off until this commits.
INSERT INTO tenantry.tenant_usage_windows (window_minutes, since)
SELECT w, date_trunc('minute', now()) - make_interval(mins => w)
  FROM unnest(ARRAY[${USAGE_TOTALS_WINDOWS.join(', ')}]) w;
INSERT INTO tenantry.tenant_usage_window_totals (window_minutes, tenant_id, minutes, ${COUNTED.join(', ')})
${perWindow('tenantry.tenant_usage_minutes', '1')};
-- Three rows, which the planner would otherwise take for a couple of thousand.
ANALYZE tenantry.tenant_usage_windows;
`),
};
