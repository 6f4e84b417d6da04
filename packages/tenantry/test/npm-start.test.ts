import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';

// `npm start` once ran `sh -c "node … serve"`: npm passed SIGTERM to the shell, which died
// and left the server running, orphaned. The script now execs node in the shell's place.

const root = fileURLToPath(new URL('../../../', import.meta.url));
let db: TestDatabase;
let serverPid: number | undefined;

beforeAll(async () => {
  db = await createTestDatabase('npm_start');
});

afterAll(async () => {
  // Whatever the test found, no server outlives it.
  if (serverPid) {
    try {
      process.kill(serverPid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await db?.drop();
});

async function reachable(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return true;
  } catch {
    return false;
  }
}

describe('npm start', () => {
  it('stops the server when npm gets SIGTERM', async () => {
    const env: NodeJS.ProcessEnv = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')),
    );
    Object.assign(env, {
      DATABASE_URL: db.url,
      TENANTRY_SECRET: db.secret,
      TENANTRY_OWNER_ROLE: db.roles.owner,
      TENANTRY_RUNTIME_ROLE: db.roles.runtime,
      PORT: '0',
    });
    const npm = spawn('npm', ['start'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(npm, 'exit');
    let output = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`npm start did not serve within 90 s:\n${output}`)), 90_000);
      const read = (chunk: Buffer) => {
        output += chunk.toString();
        serverPid ??= Number(/"pid":(\d+)/.exec(output)?.[1]) || undefined;
        const serving = /serving on (http:\/\/\S+)/.exec(output);
        if (serving?.[1]) {
          clearTimeout(timer);
          resolve(serving[1]);
        }
      };
      npm.stdout.on('data', read);
      npm.stderr.on('data', read);
      npm.once('exit', () => reject(new Error(`npm start exited:\n${output}`)));
    });
    expect(await reachable(`${url}/health`)).toBe(true);

    npm.kill('SIGTERM');
    await exited;
    const deadline = Date.now() + 15_000;
    while ((await reachable(`${url}/health`)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await reachable(`${url}/health`), 'the server outlived npm start').toBe(false);
    expect(output).toContain('SIGTERM: shutting down');
  }, 150_000);
});
