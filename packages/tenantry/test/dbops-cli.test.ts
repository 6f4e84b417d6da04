import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';

// `tenantry db …` as an operator runs it: reports, maintenance audited as cli:<USER>, bad
// input exit 2, and Ctrl-C (SIGINT) cancelling the running statement.

const exec = promisify(execFile);
const main = new URL('../src/cli/main.ts', import.meta.url).pathname;
let db: TestDatabase;
let env: NodeJS.ProcessEnv;
let admin: pg.Client;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [main, ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  db = await createTestDatabase('dbops_cli');
  env = {
    ...process.env,
    DATABASE_URL: db.url,
    TENANTRY_SECRET: db.secret,
    TENANTRY_OWNER_ROLE: db.roles.owner,
    TENANTRY_RUNTIME_ROLE: db.roles.runtime,
    USER: 'dbops-operator',
  };
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
      const child = spawn(process.execPath, [main, 'db', 'analyze', '--table', 'items'], { env, stdio: 'pipe' });
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
