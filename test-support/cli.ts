import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestDatabase } from './database.ts';

const exec = promisify(execFile);

/** The `tenantry` command's entry point, run with this process's Node (24, type stripping). */
export const CLI_MAIN = new URL('../packages/tenantry/src/cli/main.ts', import.meta.url).pathname;

/** What one run of the command printed, and its exit code. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The environment an operator's shell would give the command for `db`: its URL, secret and
 * this test database's own role names (roles are per server), plus `extra`.
 */
export function cliEnvironment(db: TestDatabase, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: db.url,
    TENANTRY_SECRET: db.secret,
    TENANTRY_OWNER_ROLE: db.roles.owner,
    TENANTRY_RUNTIME_ROLE: db.roles.runtime,
    ...extra,
  };
}

/**
 * Runs `tenantry <args…>` in a process of its own and resolves with its output and exit
 * code, whatever the code (a failing command is a result to assert on, not an exception).
 *
 * @example
 * ```ts
 * const { code, stdout } = await runCli(cliEnvironment(db), 'tenants', 'list', '--json');
 * ```
 */
export async function runCli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI_MAIN, ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
