import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, type CliResult, cliEnvironment, runCli } from '../../../test-support/cli.ts';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';

// `tenantry db …` as an operator runs it: reports, maintenance audited as cli:<USER>, bad
// input exit 2, and Ctrl-C (SIGINT) cancelling the running statement.

let db: TestDatabase;
let env: NodeJS.ProcessEnv;
let admin: pg.Client;

function cli(...args: string[]): Promise<CliResult> {
  return runCli(env, ...args);
}

beforeAll(async () => {
  db = await createTestDatabase('dbops_cli');
  env = cliEnvironment(db, { USER: 'dbops-operator' });
  expect((await cli('migrate')).code).toBe(0);
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await db?.drop();
});

describe('tenantry db', () => {
  it('health, stats, slow and advise print reports; bad flags exit 2', async () => {
    const health = await cli('db', 'health', '--json');
    expect(health.code).toBe(0);
    expect(JSON.parse(health.stdout)).toMatchObject({ connected: true });
    const stats = await cli('db', 'stats');
    expect(stats.code).toBe(0);
    expect(stats.stdout).toMatch(/public\.items/);
    expect(stats.stdout).toMatch(/cache hit ratio/);
    const slow = await cli('db', 'slow');
    expect(slow.code).toBe(0);
    expect(slow.stdout).toMatch(/not available: pg_stat_statements|ms ×/);
    expect((await cli('db', 'advise', '--limit', 'many')).code).toBe(2);
    const foreign = await cli('db', 'vacuum', '--table', 'items; DROP TABLE x');
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toContain('INVALID_INPUT');
  });

  it('vacuum is audited as the operator; Ctrl-C cancels a waiting ANALYZE and exits 1', async () => {
    const vacuum = await cli('db', 'vacuum', '--table', 'items');
    expect(vacuum.code).toBe(0);
    expect(vacuum.stdout).toContain('VACUUM (ANALYZE) "public"."items"');
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN; LOCK TABLE public.items IN ACCESS EXCLUSIVE MODE');
      const child = spawn(process.execPath, [CLI_MAIN, 'db', 'analyze', '--table', 'items'], { env, stdio: 'pipe' });
      let stderr = '';
      child.stderr.on('data', (d) => {
        stderr += String(d);
      });
      // Wait until the ANALYZE is waiting for the lock, then Ctrl-C.
      for (let i = 0; i < 100; i++) {
        const { rowCount } = await admin.query(
          "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'ANALYZE %items%' AND wait_event_type = 'Lock'",
        );
        if (rowCount) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      child.kill('SIGINT');
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(code).toBe(1);
      expect(stderr).toContain('MAINTENANCE_CANCELLED');
      await holder.query('ROLLBACK');
    } finally {
      await holder.end();
    }
    const { rows } = await admin.query(
      "SELECT action, actor, details->>'outcome' AS outcome FROM tenantry.audit_log WHERE action LIKE 'db.%' ORDER BY id",
    );
    expect(rows).toEqual([
      { action: 'db.vacuum', actor: 'cli:dbops-operator', outcome: 'completed' },
      { action: 'db.analyze', actor: 'cli:dbops-operator', outcome: 'cancelled' },
    ]);
  });
});
