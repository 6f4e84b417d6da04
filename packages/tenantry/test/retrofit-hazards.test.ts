import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { isTenantryError, Tenantry } from '../src/index.ts';
import { applyRetrofit } from '../src/retrofit/apply.ts';
import { HAZARDS, type HazardCode } from '../src/retrofit/hazards.ts';
import { planRetrofit } from '../src/retrofit/plan.ts';
import { parsePlan, renderPlan } from '../src/retrofit/plan-file.ts';
import type { RetrofitPlan } from '../src/retrofit/plan-step.ts';

/**
 * Each hazard planted once in a small schema of its own, next to a look-alike that is
 * safe, so a missing or a stray report fails the test.
 */
const PLANTED = `
CREATE EXTENSION btree_gin;
CREATE TABLE account (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE tag (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account_id int REFERENCES account (id), label text);
CREATE TABLE note (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), account_id int, body text, attachment oid);
CREATE UNIQUE INDEX note_body_key ON note (lower(body)) WHERE body IS NOT NULL;
CREATE TABLE history (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), what text);
CREATE VIEW account_names AS SELECT id, name FROM account;
CREATE VIEW account_ids WITH (security_invoker = true) AS SELECT id FROM account;
CREATE MATERIALIZED VIEW account_counts AS SELECT count(*) AS n FROM account;
CREATE FUNCTION account_count() RETURNS bigint SECURITY DEFINER LANGUAGE sql AS 'SELECT count(*) FROM account';
CREATE FUNCTION history_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM history';
CREATE FUNCTION log_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO history (what) VALUES ('note'); RETURN NEW; END $$;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.label = trim(NEW.label); RETURN NEW; END $$;
CREATE TRIGGER note_log AFTER INSERT ON note FOR EACH ROW EXECUTE FUNCTION log_note();
CREATE TRIGGER tag_touch BEFORE INSERT ON tag FOR EACH ROW EXECUTE FUNCTION touch();
CREATE RULE account_archive AS ON DELETE TO account DO ALSO INSERT INTO history (what) VALUES ('deleted ' || OLD.name);
CREATE TABLE event (id int NOT NULL, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE event_2024 PARTITION OF event FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE ext_codes (code text PRIMARY KEY);
ALTER EXTENSION btree_gin ADD TABLE ext_codes;
SELECT lo_create(0);
`;

let db: TestDatabase;
let tenantry: Tenantry;
let plan: RetrofitPlan;
/** The plan file the CLI wrote and applied (the lock test cuts it over). */
let planText = '';

beforeAll(async () => {
  db = await createTestDatabase('retrofit_hazards');
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query('CREATE SCHEMA hz');
  await c.query(`SET search_path = hz; ${PLANTED}`);
  await c.end();
  tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    tenantSchema: 'hz',
    migrations: [],
  });
  await tenantry.setup();
  plan = await planRetrofit(tenantry.adminPool, {
    schema: 'hz',
    defaultTenant: 'acme',
    ownerRole: db.roles.owner,
    runtimeRole: db.roles.runtime,
  });
}, 60_000);

afterAll(async () => {
  await tenantry?.close();
  await db?.drop();
});

const reported = (code: HazardCode) =>
  plan.hazards
    .filter((h) => h.code === code)
    .map((h) => h.object)
    .sort();

describe('retrofit hazards', () => {
  it.each<[HazardCode, string[]]>([
    ['VIEW_BYPASSES_RLS', ['hz.account_names']],
    ['MATERIALIZED_VIEW', ['hz.account_counts']],
    ['SECURITY_DEFINER_FUNCTION', ['hz.account_count()']],
    ['TRIGGER_WRITES_ACROSS_TABLES', ['hz.note.note_log']],
    ['RULE_WRITES_ACROSS_TABLES', ['hz.account.account_archive']],
    ['PARTITIONED_TABLE', ['hz.event']],
    ['SHARED_SEQUENCE', ['"hz"."account_id_seq"', '"hz"."tag_id_seq"']],
    ['UNIQUE_BECOMES_PER_TENANT', ['hz.account.account_email_key', 'hz.note.note_body_key']],
    ['EXTENSION_TABLE', ['hz.ext_codes']],
    ['LARGE_OBJECTS', ['database']],
    ['UNDECLARED_REFERENCE', ['hz.note.account_id']],
  ])('%s names exactly %j, with a fix', (code, objects) => {
    expect(reported(code)).toEqual(objects);
    for (const h of plan.hazards.filter((x) => x.code === code)) {
      expect(h.message.length).toBeGreaterThan(30);
      expect(h.fix.length).toBeGreaterThan(10);
    }
  });

  it('reports only catalogued hazards, and keeps extension tables out of the tenant tables', () => {
    expect(plan.hazards.every((h) => h.code in HAZARDS)).toBe(true);
    expect(plan.globalTables).toEqual([{ table: 'hz.ext_codes', reason: 'belongs to extension btree_gin' }]);
    expect(plan.tenantTables).toEqual(['hz.account', 'hz.event', 'hz.history', 'hz.note', 'hz.tag']);
  });

  it('refuses a global table that points at a tenant table', async () => {
    const refused = planRetrofit(tenantry.adminPool, {
      schema: 'hz',
      global: ['tag'],
      defaultTenant: 'acme',
      ownerRole: db.roles.owner,
      runtimeRole: db.roles.runtime,
    });
    await expect(refused).rejects.toSatisfy((e) => isTenantryError(e, 'RETROFIT_GLOBAL_REFERENCES_TENANT'));
  });

  it('refuses a file that is not a plan, has steps out of order, or was made for other roles', async () => {
    const invalid = (e: unknown) => isTenantryError(e, 'RETROFIT_PLAN_INVALID');
    expect(() => parsePlan('SELECT 1;')).toThrow(/not a Tenantry retrofit plan/);
    const text = renderPlan(plan);
    expect(() => parsePlan(text.replace('==== step 2/', '==== step 3/'))).toThrow(/out of order/);
    const other = text.replace(`-- owner role: ${db.roles.owner}`, '-- owner role: someone_else');
    await expect(applyRetrofit(tenantry, other)).rejects.toSatisfy(invalid);
  });

  it('plans, dry-runs and applies through the CLI, ending with doctor at zero errors', async () => {
    const exec = promisify(execFile);
    const main = new URL('../src/cli/main.ts', import.meta.url).pathname;
    const env = {
      ...process.env,
      DATABASE_URL: db.url,
      TENANTRY_SECRET: db.secret,
      TENANTRY_OWNER_ROLE: db.roles.owner,
      TENANTRY_RUNTIME_ROLE: db.roles.runtime,
    };
    const file = join(mkdtempSync(join(tmpdir(), 'retrofit-')), 'plan.sql');
    const planned = await exec(
      process.execPath,
      [main, 'retrofit', 'plan', '--schema', 'hz', '--default-tenant', 'acme', '--out', file],
      { env },
    );
    expect(planned.stderr).toContain('hazards');
    const text = readFileSync(file, 'utf8');
    planText = text;
    expect(text).toContain('[VIEW_BYPASSES_RLS] hz.account_names');
    expect(text).toMatch(/CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "account_pkey_tenant"/);

    const dry = await exec(process.execPath, [main, 'retrofit', 'apply', file, '--dry-run'], { env });
    expect(dry.stdout).toMatch(/would run \d+ steps \(0 already applied\)/);
    const { rows } = await tenantry.adminPool.query(
      `SELECT 1 FROM information_schema.columns WHERE table_schema = 'hz' AND column_name = 'tenant_id'`,
    );
    expect(rows).toEqual([]);

    const applied = await exec(process.execPath, [main, 'retrofit', 'apply', file], { env });
    expect(applied.stdout).toContain('doctor: 0 errors');
    expect(applied.stderr).toMatch(/\[\s*\d+\/\d+\] backfill hz\.account/);
    const again = await exec(process.execPath, [main, 'retrofit', 'apply', file], { env });
    expect(again.stdout).toMatch(/ran 0 steps \(\d+ already applied\)/);
  }, 120_000);

  it('waits for a lock at most lock_timeout, retries, and names the step when it never gets it', async () => {
    const blocker = await tenantry.adminPool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE hz.account IN ROW EXCLUSIVE MODE'); // an application transaction in flight
      const refused = applyRetrofit(tenantry, planText, { phase: 'cutover', lockTimeoutMs: 50, lockRetries: 1 });
      await expect(refused).rejects.toThrow(/step \d+ cutover hz\.account \(no lock after 2 tries\)/);
      await expect(refused).rejects.toSatisfy((e) => isTenantryError(e, 'RETROFIT_STEP_FAILED'));

      const retries: number[] = [];
      const patient = applyRetrofit(tenantry, planText, {
        phase: 'cutover',
        lockTimeoutMs: 50,
        onProgress: (p) => p.state === 'retry' && retries.push(p.attempt ?? 0),
      });
      await new Promise((r) => setTimeout(r, 400));
      await blocker.query('COMMIT');
      const report = await patient;
      expect(retries.length).toBeGreaterThan(0);
      expect(report.doctor?.ok).toBe(true);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      blocker.release();
    }
  }, 60_000);
});
