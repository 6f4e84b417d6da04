import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WireCounter } from '../../../bench/lib/wire-counter.ts';
import { CLI_MAIN, type CliResult, cliEnvironment, runCli } from '../../../test-support/cli.ts';
import { serverUrl, type TestDatabase } from '../../../test-support/database.ts';
import { type AppDB, createFixture, type Fixture } from '../../../test-support/fixture.ts';
import { migrations } from '../../../test-support/fleet-migrations.ts';
import { type TenantRecord, Tenantry } from '../src/index.ts';

const fleetModule = new URL('../../../test-support/fleet-migrations.ts', import.meta.url).pathname;
const NEW = '003_items_note';

function cli(db: TestDatabase, ...args: string[]): Promise<CliResult> {
  return runCli(cliEnvironment(db), ...args);
}

async function superuserQuery<R extends pg.QueryResultRow>(database: string, text: string): Promise<R[]> {
  const url = new URL(serverUrl());
  url.pathname = `/${database}`;
  const c = new pg.Client({ connectionString: url.toString() });
  await c.connect();
  try {
    return (await c.query<R>(text)).rows;
  } finally {
    await c.end(); // a template must have no connections when a tenant database is copied from it
  }
}

interface SchemaState {
  id: string;
  slug: string | null;
  applied_count: number;
  column: boolean;
  index: boolean;
  ledger: boolean;
}

/** What each schema target of the main database really holds, next to what the control plane says. */
async function schemaStates(f: Fixture): Promise<SchemaState[]> {
  const { rows } = await f.tenantry.adminPool.query<SchemaState>(
    `SELECT t.id, n.slug, t.applied_count,
            EXISTS (SELECT 1 FROM pg_attribute a
                     WHERE a.attrelid = to_regclass(format('%I.items', t.schema_name)) AND a.attname = 'note'
                       AND NOT a.attisdropped) AS column,
            EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                     WHERE i.indrelid = to_regclass(format('%I.items', t.schema_name)) AND a.attname = 'note') AS index,
            EXISTS (SELECT 1 FROM tenantry.migrations m
                     WHERE m.chain = 'tenant' AND m.target = t.id AND m.id = $1) AS ledger
       FROM tenantry.targets t LEFT JOIN tenantry.tenants n ON n.id = t.tenant_id
      WHERE t.kind = 'schema' ORDER BY t.id`,
    [NEW],
  );
  return rows;
}

const atHead = (s: SchemaState) => s.applied_count === 3 && s.column && s.index && s.ledger;
const untouched = (s: SchemaState) => s.applied_count === 2 && !s.column && !s.index && !s.ledger;

/** Creates `n` schema-tier tenants, four at a time. */
async function schemaTenants(f: Fixture, prefix: string, n: number): Promise<TenantRecord[]> {
  const out: TenantRecord[] = [];
  for (let i = 0; i < n; i += 4) {
    const batch = Array.from({ length: Math.min(4, n - i) }, (_, j) =>
      f.tenantry.tenants.create({ slug: `${prefix}-${i + j}`, name: `${prefix} ${i + j}`, tier: 'schema' }),
    );
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

describe('fleet migrations', () => {
  let f: Fixture;
  /** The same database, one migration ahead: what a new release of the application sees. */
  let next: Tenantry<AppDB>;
  let schemas: TenantRecord[];
  let databases: TenantRecord[];

  beforeAll(async () => {
    f = await createFixture('fleet');
    schemas = await schemaTenants(f, 's', 20);
    databases = [];
    for (let i = 0; i < 3; i++) {
      databases.push(await f.tenantry.tenants.create({ slug: `d-${i}`, name: `D ${i}`, tier: 'database' }));
    }
    await f.tenantry.tenants.create({ slug: 'pooled', name: 'Pooled' }); // shared tables: no target of its own
    await f.tenantry.provisioner.fillWarmSchemas('schemas', 3);
    next = await Tenantry.connect<AppDB>({
      databaseUrl: f.database.url,
      secret: f.database.secret,
      roles: f.database.roles,
      migrations,
    });
  }, 120_000);

  afterAll(async () => {
    await next?.close();
    await f?.close();
  });

  it('plans from the control plane: every target behind, its tenant, and what would run', async () => {
    expect((await f.tenantry.planFleet()).targets).toEqual([]); // at head for the current release
    const plan = await next.planFleet();
    expect(plan).toMatchObject({ head: 3, version: NEW });
    // shared + 20 tenant schemas + 3 tenant databases + their template + 3 warm schemas
    expect(plan.targets).toHaveLength(28);
    expect(plan.targets[0]).toMatchObject({ target: 'shared', kind: 'shared', tenantSlug: null });
    for (const t of plan.targets) expect(t).toMatchObject({ appliedCount: 2, pending: [NEW], lastError: null });
    const count = (kind: string) => plan.targets.filter((t) => t.kind === kind).length;
    expect([count('schema'), count('database'), count('template')]).toEqual([23, 3, 1]);
    expect(plan.targets.filter((t) => t.state === 'warm')).toHaveLength(3);
    const slugs = plan.targets.map((t) => t.tenantSlug).filter((s) => s !== null);
    expect(slugs.sort()).toEqual([...schemas, ...databases].map((t) => t.slug).sort());
  });

  it('`migrate --plan` prints the plan and changes nothing; bad flags exit 2 before anything runs', async () => {
    const plan = await cli(f.database, 'migrate', '--plan', '--migrations', fleetModule);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain('28 targets behind head (3 tenant migrations, head 003_items_note)');
    expect(plan.stdout).toMatch(/schema\/schemas\/t_[0-9a-f]+\s+schema\s+s-0\s+2\/3\s+003_items_note/);
    expect(plan.stdout).toMatch(/template\/databases\/\S+\s+template\s+-\s+2\/3/);
    // Flags are checked before anything runs (an unknown canary slug too): exit 2, nothing changed.
    for (const args of [
      ['--concurrency', '0'],
      ['--canary', 'no-such-tenant'],
    ]) {
      const bad = await cli(f.database, 'migrate', '--migrations', fleetModule, ...args);
      expect(bad.code, args.join(' ')).toBe(2);
      expect(bad.stderr).toContain('INVALID_INPUT');
    }
    expect((await next.planFleet()).targets).toHaveLength(28); // not even the shared tables moved
    await expect(next.migrateFleet({ canary: 0 })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(next.migrateFleet({ concurrency: 1.5 })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  }, 60_000);

  it('a failing canary cohort stops the run: the rest of the fleet is left untouched', async () => {
    const broken = schemas[0] as TenantRecord;
    // The migration's column already exists in one tenant: its ALTER TABLE fails there.
    await f.tenantry.adminPool.query(`ALTER TABLE "${broken.schemaName}".items ADD COLUMN note text`);
    const run = await cli(f.database, 'migrate', '--migrations', fleetModule, '--canary', 's-0,s-1');
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('canary of 2 failed: the other 25 targets were left untouched');
    expect(run.stdout).toMatch(/failed schema\/schemas\/t_[0-9a-f]+ \(s-0\): .*already exists/);
    expect(run.stderr).toMatch(/fleet 27\/27 \(100%\).*, 1 failed/);

    const states = await schemaStates(f);
    expect(states.filter(atHead).map((s) => s.slug)).toEqual(['s-1']);
    expect(states.filter((s) => s.slug !== 's-0').filter((s) => !atHead(s) && !untouched(s))).toEqual([]);
    const plan = await next.planFleet();
    expect(plan.targets.map((t) => t.tenantSlug)).not.toContain('s-1');
    expect(plan.targets.find((t) => t.tenantSlug === 's-0')?.lastError).toMatch(/already exists/);
    // shared (migrated before the fleet) and s-1 are done; the 25 others were not touched.
    expect(plan.targets).toHaveLength(26);
  }, 60_000);

  it('migrates every target to head; a failing one is rolled back, reported and recorded; a rerun completes it', async () => {
    const progress: [number, number, number][] = [];
    const report = await next.migrateFleet({ concurrency: 4, onProgress: (...p) => progress.push(p) });
    const broken = schemas[0] as TenantRecord;
    expect(report).toMatchObject({ total: 26, migrated: 25, skipped: 0, canary: null });
    expect(report.failed).toEqual([
      { target: `schema/schemas/${broken.schemaName}`, tenant: 's-0', error: expect.stringMatching(/already exists/) },
    ]);
    expect(report.failed[0]?.error).toContain(`tenant migration ${NEW}`);
    expect(progress[0]).toEqual([0, 26, 0]);
    expect(progress.at(-1)).toEqual([26, 26, 1]);

    const states = await schemaStates(f);
    expect(states.filter((s) => !atHead(s))).toEqual([
      {
        id: `schema/schemas/${broken.schemaName}`,
        slug: 's-0',
        applied_count: 2,
        column: true,
        index: false,
        ledger: false,
      },
    ]);
    const failedRow = await f.tenantry.adminPool.query(
      'SELECT last_error, failed_at FROM tenantry.targets WHERE id = $1',
      [`schema/schemas/${broken.schemaName}`],
    );
    expect(failedRow.rows[0].last_error).toMatch(/already exists/);
    expect(failedRow.rows[0].failed_at).toBeInstanceOf(Date);

    // Tenant databases and the template: the column, and the ledger row in their own database.
    const { rows: others } = await f.tenantry.adminPool.query<{ database_name: string; applied_count: number }>(
      "SELECT database_name, applied_count FROM tenantry.targets WHERE kind IN ('database', 'template')",
    );
    expect(others).toHaveLength(4);
    for (const { database_name, applied_count } of others) {
      expect(applied_count).toBe(3);
      const [row] = await superuserQuery<{ column: boolean; ledger: boolean }>(
        database_name,
        `SELECT EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_schema = 'public' AND table_name = 'items' AND column_name = 'note') AS column,
                EXISTS (SELECT 1 FROM tenantry.migrations WHERE chain = 'tenant' AND id = '${NEW}') AS ledger`,
      );
      expect(row, database_name).toEqual({ column: true, ledger: true });
    }
    // A database created now is copied from the migrated template: at head from the start.
    const fresh = await next.tenants.create({ slug: 'd-new', name: 'D new', tier: 'database' });
    const [copy] = await superuserQuery<{ n: number }>(
      fresh.databaseName as string,
      "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'",
    );
    expect(copy?.n).toBe(1);
    await next.transaction(fresh, (tx) => tx.query("INSERT INTO items (title, note) VALUES ('x', 'y')"));

    // Fix the cause, run again: only the failed target is left, and it completes.
    await f.tenantry.adminPool.query(`ALTER TABLE "${broken.schemaName}".items DROP COLUMN note`);
    expect((await next.planFleet()).targets.map((t) => t.tenantSlug)).toEqual(['s-0']);
    const rerun = await next.migrateFleet();
    expect(rerun).toMatchObject({ total: 1, migrated: 1, failed: [] });
    expect((await schemaStates(f)).filter((s) => !atHead(s))).toEqual([]);
    expect((await next.planFleet()).targets).toEqual([]);
    const cleared = await f.tenantry.adminPool.query(
      'SELECT count(*)::int AS n FROM tenantry.targets WHERE last_error IS NOT NULL',
    );
    expect(cleared.rows[0].n).toBe(0);
    // At head, a run is a no-op from the control plane alone.
    expect(await next.migrateFleet()).toMatchObject({ total: 0, migrated: 0, failed: [] });
  }, 60_000);
});

describe('fleet round trips (counted on the wire)', () => {
  let f: Fixture;
  let counter: WireCounter;
  let next: Tenantry<AppDB>;

  beforeAll(async () => {
    f = await createFixture('fleetrt');
    await schemaTenants(f, 'r', 8);
    const url = new URL(f.database.url);
    counter = new WireCounter(url.hostname, Number(url.port || 5432));
    url.port = String(await counter.listen());
    next = await Tenantry.connect<AppDB>({
      databaseUrl: url.toString(),
      secret: f.database.secret,
      roles: f.database.roles,
      migrations,
    });
    await next.migrate(); // the shared tables: not what is counted
  }, 120_000);

  afterAll(async () => {
    await next?.close();
    await counter?.close();
    await f?.close();
  });

  it('a target costs its migration’s statements plus two round trips (preamble, epilogue); the plan costs one', async () => {
    const plan = await next.planFleet();
    expect(plan.targets).toHaveLength(8);
    const before = counter.snapshot();
    const report = await next.migrateFleet({ concurrency: 2 });
    const run = WireCounter.diff(counter.snapshot(), before);
    expect(report).toMatchObject({ total: 8, migrated: 8, failed: [] });
    // Per target, three simple-query batches: the preamble, the migration's one query and
    // the epilogue (the bound is 3 besides the migration; this is 2). Per run, four
    // parameterised queries whatever the fleet's size: the plan, the placement (cached),
    // and the tenant-table catalog refreshed after the run (two).
    expect(run.frontend.Q).toBe(8 * 3);
    expect(run.frontend.S).toBe(4);
    expect(run.roundTrips).toBe(8 * 3 + 4);
    // Every batch was answered (and each new connection's startup once).
    expect(run.readyForQuery).toBe(run.roundTrips + (run.frontend.startup ?? 0));
    expect((await schemaStates(f)).filter((s) => !atHead(s))).toEqual([]);

    // At head, a run is its plan: one query, however many tenants.
    const idle = counter.snapshot();
    expect(await next.migrateFleet()).toMatchObject({ total: 0 });
    expect(WireCounter.diff(counter.snapshot(), idle).roundTrips).toBe(1);
  }, 60_000);
});

describe('fleet migration killed mid-run (SIGKILL)', () => {
  let f: Fixture;

  beforeAll(async () => {
    f = await createFixture('fleetkill');
    await schemaTenants(f, 'k', 150);
  }, 120_000);

  afterAll(async () => {
    await f?.close();
  });

  it('leaves each target untouched or at head, never half-migrated; a rerun finishes the job', async () => {
    const child = spawn(process.execPath, [CLI_MAIN, 'migrate', '--migrations', fleetModule, '--concurrency', '4'], {
      env: cliEnvironment(f.database),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const done = async () =>
      (
        await f.tenantry.adminPool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM tenantry.targets WHERE kind = 'schema' AND applied_count = 3",
        )
      ).rows[0]?.n ?? 0;
    const deadline = Date.now() + 60_000;
    while ((await done()) < 10) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the run did not start: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill('SIGKILL');
    expect(await exited).toBeNull(); // killed, not finished
    // A killed client's transactions end when its backend notices: wait for them to roll back.
    for (let i = 0; ; i++) {
      const { rows } = await f.tenantry.adminPool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenantry fleet'",
        [f.database.name],
      );
      if (rows[0]?.n === 0) break;
      if (i > 500) throw new Error('the killed run’s connections did not go away');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    const states = await schemaStates(f);
    expect(states).toHaveLength(150);
    expect(states.filter((s) => !atHead(s) && !untouched(s))).toEqual([]);
    const finished = states.filter(atHead).length;
    expect(finished).toBeGreaterThanOrEqual(10);
    expect(finished).toBeLessThan(150);

    expect(stderr).toContain('fleet 0/150 (0%)'); // plain progress lines off a terminal

    const next = await Tenantry.connect<AppDB>({
      databaseUrl: f.database.url,
      secret: f.database.secret,
      roles: f.database.roles,
      migrations,
    });
    try {
      expect(await next.migrateFleet({ concurrency: 4 })).toMatchObject({
        total: 150 - finished,
        migrated: 150 - finished,
        failed: [],
      });
    } finally {
      await next.close();
    }
    expect((await schemaStates(f)).filter((s) => !atHead(s))).toEqual([]);
  }, 90_000);
});
