import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { type TenantRecord, Tenantry } from '../src/index.ts';

/**
 * SIGKILL in the middle of writes: of the reference server (`tenantry serve`, a real child
 * process under an HTTP write load), and of a process running multi-statement tenant
 * transactions through the library. Nothing half-done may remain, and nothing
 * acknowledged may be lost. (There is no outbox yet: side effects beyond the database are
 * not covered.)
 */

const ADMIN = 'fault-server-kill-admin-token';
const main = new URL('../src/cli/main.ts', import.meta.url).pathname;
const REQUEST_TIMEOUT_MS = 10_000;

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let superuser: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('fault_kill');
  tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
  });
  await tenantry.setup();
  await tenantry.migrate();
  superuser = new pg.Client({ connectionString: db.url });
  await superuser.connect();
});

afterAll(async () => {
  await superuser?.end();
  await tenantry?.close();
  await db?.drop();
});

/** The environment `tenantry serve` reads, pointed at this file's database and roles. */
function serveEnv(): NodeJS.ProcessEnv {
  const { REDIS_URL: _redis, OTEL_EXPORTER_OTLP_ENDPOINT: _otlp, OTEL_TRACES_EXPORTER: _otel, ...env } = process.env;
  return {
    ...env,
    DATABASE_URL: db.url,
    TENANTRY_SECRET: db.secret,
    TENANTRY_ADMIN_TOKEN: ADMIN,
    TENANTRY_OWNER_ROLE: db.roles.owner,
    TENANTRY_RUNTIME_ROLE: db.roles.runtime,
    PORT: '0',
  };
}

/** Starts `tenantry serve` on a free port; resolves with its URL once it listens. */
async function startServe(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [main, 'serve', '--port', '0'], {
    env: serveEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start within 30 s:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /serving on (http:\/\/\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code ?? signal}):\n${output}`));
    });
  });
  return { child, url };
}

async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

/** Bytes the `tenant_usage` trigger counted, against what the tenant's rows really take. */
async function usage(tenantId: string): Promise<{ counted: number; actual: number }> {
  // The same expression as the trigger (octet_length of the row as text), as superuser.
  const { rows } = await superuser.query<{ counted: string | null; actual: string | null }>(
    `SELECT (SELECT bytes FROM tenant_usage WHERE tenant_id = $1 AND scope = 'items') AS counted,
            (SELECT sum(octet_length(i::text)) FROM items i WHERE tenant_id = $1) AS actual`,
    [tenantId],
  );
  return { counted: Number(rows[0]?.counted ?? 0), actual: Number(rows[0]?.actual ?? 0) };
}

/**
 * Waits until the killed process's runtime-role sessions are gone. A COMMIT already in a
 * dead client's socket is still carried out, so the database is read only once PostgreSQL
 * has noticed the closed sockets and finished (or rolled back) what it had.
 */
async function waitForRuntimeSessionsToEnd(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await superuser.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND usename = $1',
      [db.roles.runtime],
    );
    if (rows[0]?.n === 0) return;
    await sleep(50);
  }
  throw new Error('the killed process’s sessions did not end within 10 s');
}

/** What a client knows of one of its items: the last acknowledged state and the change in flight. */
interface Tracked {
  readonly tenantId: string;
  title: string;
  deleted: boolean;
  pending: { title: string } | { deleted: true } | undefined;
}

describe('SIGKILL of the reference server under a write load', () => {
  it('leaves no partial tenant state, keeps every acknowledged write, and serves again after a restart', async () => {
    // A storage limit makes every create and update a multi-statement transaction: the usage
    // row is locked (SELECT … FOR UPDATE), then the item written, and its trigger updates
    // the usage row. A half-committed one would leave the counter off.
    const tenants: { record: TenantRecord; key: string }[] = [];
    for (const slug of ['kill-a', 'kill-b']) {
      const record = await tenantry.tenants.create({
        slug,
        name: slug,
        plan: 'enterprise',
        limits: { maxStorageMb: 100 },
      });
      const { key } = await tenantry.apiKeys.create(record.id, {
        name: 'load',
        environment: 'test',
        scopes: ['items:read', 'items:write'],
      });
      tenants.push({ record, key });
    }

    let server = await startServe();
    const items = new Map<string, Tracked>();
    /** Creates that were in flight when the server died: they may have committed. */
    const unanswered = new Set<string>();
    const unexpected: string[] = [];
    let acknowledged = 0;
    let killed = false;

    const request = async (key: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(`${server.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as { id?: string }) : undefined };
    };

    const client = async (n: number) => {
      const { record, key } = tenants[n % tenants.length] as (typeof tenants)[number];
      const own: string[] = [];
      for (let seq = 0; !killed; seq++) {
        const roll = Math.random();
        const target = own[Math.floor(Math.random() * own.length)];
        const tracked = target ? items.get(target) : undefined;
        const title = `c${n}-${seq}`;
        try {
          if (!tracked || !target || roll < 0.6) {
            unanswered.add(title);
            const r = await request(key, 'POST', '/v1/items', { title });
            if (r.status !== 201 || !r.body?.id) throw new Error(`POST answered ${r.status}`);
            unanswered.delete(title);
            items.set(r.body.id, { tenantId: record.id, title, deleted: false, pending: undefined });
            own.push(r.body.id);
          } else if (roll < 0.85) {
            tracked.pending = { title };
            const r = await request(key, 'PATCH', `/v1/items/${target}`, { title });
            if (r.status !== 200) throw new Error(`PATCH answered ${r.status}`);
            tracked.title = title;
            tracked.pending = undefined;
          } else {
            tracked.pending = { deleted: true };
            const r = await request(key, 'DELETE', `/v1/items/${target}`);
            if (r.status !== 204) throw new Error(`DELETE answered ${r.status}`);
            tracked.deleted = true;
            tracked.pending = undefined;
            own.splice(own.indexOf(target), 1);
          }
          acknowledged++;
        } catch (error) {
          // Once the server is killed, requests fail on the socket: their outcome is unknown.
          if (!killed) unexpected.push((error as Error).message);
          return;
        }
      }
    };

    const load = Array.from({ length: 6 }, (_, n) => client(n));
    try {
      const deadline = Date.now() + 20_000;
      while (acknowledged < 300 && unexpected.length === 0 && Date.now() < deadline) await sleep(20);
      expect(unexpected).toEqual([]);
      expect(acknowledged).toBeGreaterThanOrEqual(300);
      killed = true;
      await stopChild(server.child, 'SIGKILL');
      await Promise.all(load);
      expect(unexpected).toEqual([]);
      await waitForRuntimeSessionsToEnd();

      const { rows } = await superuser.query<{ id: string; tenant_id: string; title: string }>(
        'SELECT id, tenant_id, title FROM items WHERE tenant_id = ANY($1)',
        [tenants.map((t) => t.record.id)],
      );
      const stored = new Map(rows.map((r) => [r.id, r]));
      const lost: string[] = [];
      for (const [id, t] of items) {
        const row = stored.get(id);
        const pending = t.pending;
        if (pending === undefined) {
          if (t.deleted ? row !== undefined : row?.title !== t.title || row.tenant_id !== t.tenantId) lost.push(id);
        } else if ('deleted' in pending) {
          if (row && row.title !== t.title) lost.push(id); // gone, or untouched
        } else if (!row || (row.title !== t.title && row.title !== pending.title)) {
          lost.push(id); // the update in flight committed entirely or not at all
        }
      }
      expect(lost).toEqual([]);
      // Rows nobody was told about can only be the creates the kill interrupted.
      const strangers = rows.filter((r) => !items.has(r.id) && !unanswered.has(r.title));
      expect(strangers).toEqual([]);
      for (const t of tenants) {
        const { counted, actual } = await usage(t.record.id);
        expect(counted).toBe(actual);
      }

      server = await startServe();
      const [first] = tenants as [(typeof tenants)[number]];
      const survivor = [...items].find(([, t]) => t.tenantId === first.record.id && !t.deleted && !t.pending);
      expect(survivor).toBeDefined();
      const [id, t] = survivor as [string, Tracked];
      const read = await request(first.key, 'GET', `/v1/items/${id}`);
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({ id, title: t.title });
      expect((await request(first.key, 'POST', '/v1/items', { title: 'after restart' })).status).toBe(201);
      expect((await fetch(`${server.url}/health/ready`)).status).toBe(200);
      console.log(
        `fault-server-kill: server killed after ${acknowledged} acknowledged writes; ` +
          `${unanswered.size} creates were in flight, ${rows.filter((r) => unanswered.has(r.title)).length} of them committed`,
      );
    } finally {
      killed = true;
      await stopChild(server.child, 'SIGKILL');
      await Promise.all(load);
    }
  });
});

/**
 * Plain JavaScript run by `node --input-type=module`: tenant transactions of three inserts
 * each, with pauses between them so that a kill is likely to land inside one; prints
 * `ack <batch>` after each commit.
 */
const WORKER = `
import { Tenantry } from ${JSON.stringify(new URL('../src/index.ts', import.meta.url).href)};
import { itemsMigrations } from ${JSON.stringify(new URL('../src/example/items.ts', import.meta.url).href)};
const env = JSON.parse(process.env.FAULT_WORKER);
const tenantry = await Tenantry.connect({
  databaseUrl: env.url, secret: env.secret, roles: env.roles, migrations: itemsMigrations,
});
const tenant = await tenantry.tenants.get(env.tenant);
await Promise.all([0, 1, 2, 3].map(async (w) => {
  for (let n = 0; ; n++) {
    const batch = 'b' + w + '-' + n;
    await tenantry.transaction(tenant, async (tx) => {
      for (let part = 0; part < 3; part++) {
        await tx.query('INSERT INTO items (title) VALUES ($1)', [batch + '/' + part]);
        await tx.query('SELECT pg_sleep(0.005)');
      }
    });
    process.stdout.write('ack ' + batch + '\\n');
  }
}));
`;

describe('SIGKILL of a process inside multi-statement tenant transactions', () => {
  it('commits each transaction entirely or not at all', async () => {
    const tenant = await tenantry.tenants.create({ slug: 'kill-lib', name: 'kill-lib' });
    const child = spawn(process.execPath, ['--input-type=module', '-e', WORKER], {
      env: {
        ...process.env,
        FAULT_WORKER: JSON.stringify({ url: db.url, secret: db.secret, roles: db.roles, tenant: tenant.id }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Set<string>();
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      for (const m of output.matchAll(/^ack (\S+)$/gm)) acked.add(m[1] as string);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    try {
      const deadline = Date.now() + 20_000;
      while (acked.size < 40 && child.exitCode === null && Date.now() < deadline) await sleep(20);
      expect(acked.size, output).toBeGreaterThanOrEqual(40);
      // The worker spends nearly all its time inside transactions: catch it with some open.
      const open = await superuser.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND usename = $1 AND xact_start IS NOT NULL`,
        [db.roles.runtime],
      );
      await stopChild(child, 'SIGKILL');
      expect(open.rows[0]?.n).toBeGreaterThan(0);
      await waitForRuntimeSessionsToEnd();

      const { rows } = await superuser.query<{ batch: string; n: number }>(
        `SELECT split_part(title, '/', 1) AS batch, count(*)::int AS n FROM items WHERE tenant_id = $1 GROUP BY 1`,
        [tenant.id],
      );
      const counts = new Map(rows.map((r) => [r.batch, r.n]));
      expect(rows.filter((r) => r.n !== 3)).toEqual([]); // no half-written batch
      expect([...acked].filter((b) => counts.get(b) !== 3)).toEqual([]); // no acknowledged batch lost
      const { counted, actual } = await usage(tenant.id);
      expect(counted).toBe(actual);
      console.log(
        `fault-server-kill: worker killed with ${open.rows[0]?.n} transactions open; ` +
          `${acked.size} batches acknowledged, ${rows.length} committed`,
      );
    } finally {
      await stopChild(child, 'SIGKILL');
    }
  });
});
