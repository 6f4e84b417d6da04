/**
 * WebSocket fan-out of `GET /v1/events`: `--sockets` sockets (default 5,000) over
 * `--tenants` tenants (default 500), each authenticated with its tenant's API key; one
 * event committed for one tenant at a time (`emit()` in a tenant transaction, publisher
 * timestamp taken before the transaction starts); delivery latency to each of that
 * tenant's sockets, p50 / p99, and every frame's tenant checked against its socket's
 * (cross-tenant deliveries must be 0). Run with one server instance, then two (two
 * `createServer()` on one database, sockets split between them; `--instances 1,2`).
 *
 * Baseline, in the same run, alternating rounds: a bare `ws` server that keeps sockets
 * in a `Map` by tenant and sends the frame the moment it is published — no database, no
 * commit, no authentication — over the same number of sockets. The clients run in a child
 * process (`bench/events-clients.ts`) and measure both sides the same way.
 *
 *   node bench/events.ts [--sockets 5000] [--tenants 500] [--events 200] [--rounds 4] [--instances 1,2] [--quick]
 *
 * Needs about 2 × sockets file descriptors in each process: `ulimit -n 20000` (or more)
 * before running. `DATABASE_URL` must be a superuser; the benchmark works in a database of
 * its own and removes it.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer } from 'ws';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { createServer } from '../packages/tenantry/src/http/server.ts';
import { emit, Tenantry } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { quantile } from './lib/stats.ts';

const wall = () => performance.timeOrigin + performance.now();

interface Options {
  sockets: number;
  tenants: number;
  events: number;
  rounds: number;
  instances: number[];
}

function parse(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      sockets: { type: 'string' },
      tenants: { type: 'string' },
      events: { type: 'string' },
      rounds: { type: 'string' },
      instances: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick === true;
  return {
    sockets: positive(values.sockets, quick ? 1000 : 5000, '--sockets', true),
    tenants: positive(values.tenants, quick ? 100 : 500, '--tenants', true),
    events: positive(values.events, quick ? 40 : 200, '--events', true),
    rounds: positive(values.rounds, quick ? 2 : 4, '--rounds', true),
    instances: (values.instances ?? '1,2').split(',').map((n) => positive(n, 1, '--instances', true)),
  };
}

/** The child process of the clients, with a way to wait for its answers. */
class Clients {
  readonly #child: ChildProcess;
  readonly #waiters: { match: (m: Record<string, unknown>) => boolean; resolve: (m: never) => void }[] = [];
  readonly counts = new Map<string, number>();

  constructor() {
    this.#child = fork(fileURLToPath(new URL('./events-clients.ts', import.meta.url)), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (m: Record<string, unknown>) => {
      if (m.op === 'got') this.counts.set(m.key as string, m.count as number);
      for (const w of [...this.#waiters]) {
        if (w.match(m)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          w.resolve(m as never);
        }
      }
    });
  }

  ask<T>(command: Record<string, unknown>, answer: string): Promise<T> {
    const p = new Promise<T>((resolve) => this.#waiters.push({ match: (m) => m.op === answer, resolve }));
    this.#child.send(command);
    return p;
  }

  started(): Promise<void> {
    return new Promise((resolve) =>
      this.#waiters.push({ match: (m) => m.op === 'started', resolve: resolve as never }),
    );
  }

  /** Resolves once `count` frames of `key` arrived (or after `timeoutMs`). */
  async until(key: string, count: number, timeoutMs = 5000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while ((this.counts.get(key) ?? 0) < count) {
      if (Date.now() > end) return false;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return true;
  }

  exit(): void {
    this.#child.send({ op: 'exit' });
  }
}

function describe(label: string, values: readonly number[]): string {
  const sorted = Float64Array.from(values).sort();
  const f = (q: number) => quantile(sorted, q).toFixed(2).padStart(8);
  return `| ${label.padEnd(44)} | ${String(values.length).padStart(7)} | ${f(0.5)} | ${f(0.99)} | ${f(1)} |`;
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parse(argv);
  const db = await createBenchDatabase(benchDatabaseUrl());
  const instances: Tenantry<unknown>[] = [];
  const servers: FastifyInstance[] = [];
  const clients = new Clients();
  await clients.started();
  let failures = 0;
  try {
    const first = await Tenantry.connect({
      databaseUrl: db.url,
      secret: db.secret,
      roles: db.roles,
      migrations: itemsMigrations,
    });
    instances.push(first);
    await first.setup();
    await first.migrate();
    const pgVersion =
      (await first.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ??
      'unknown';
    log(`machine: ${JSON.stringify(await describeMachine(pgVersion))}`);
    log(`options: ${JSON.stringify(options)}`);

    const tenants: { id: string; key: string }[] = [];
    for (let i = 0; i < options.tenants; i++) {
      const t = await first.tenants.create({ slug: `ev-${i}`, name: `Events ${i}` });
      const k = await first.apiKeys.create(t.id, { name: 'bench', environment: 'test', scopes: ['events:read'] });
      tenants.push({ id: t.id, key: k.key });
    }
    const perTenant = Math.ceil(options.sockets / options.tenants);
    const socketsOf = (tenantId: string) => {
      const index = tenants.findIndex((t) => t.id === tenantId);
      return Math.floor(options.sockets / options.tenants) + (index < options.sockets % options.tenants ? 1 : 0);
    };

    // The baseline: a bare ws server, sockets in a Map by tenant, no database.
    const bare = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    const byTenant = new Map<string, Set<import('ws').WebSocket>>();
    bare.on('connection', (ws, req) => {
      const tenantId = new URL(req.url ?? '/', 'http://x').searchParams.get('tenant') ?? '';
      const set = byTenant.get(tenantId) ?? new Set();
      byTenant.set(tenantId, set);
      set.add(ws);
      ws.on('close', () => set.delete(ws));
      ws.send('{"type":"ready"}');
    });
    await new Promise((resolve) => bare.on('listening', resolve));
    const barePort = (bare.address() as { port: number }).port;
    const targetsFor = (urls: string[], withKey: boolean) =>
      Array.from({ length: options.sockets }, (_, i) => {
        const tenant = tenants[i % options.tenants] as { id: string; key: string };
        return withKey
          ? { url: `${urls[i % urls.length]}/v1/events`, token: tenant.key, tenantId: tenant.id }
          : { url: `ws://127.0.0.1:${barePort}/?tenant=${tenant.id}`, tenantId: tenant.id };
      });
    await clients.ask({ op: 'open', side: 'bare', targets: targetsFor([], false) }, 'opened');

    let n = 0;
    for (const count of options.instances) {
      while (instances.length < count) {
        instances.push(
          await Tenantry.connect({
            databaseUrl: db.url,
            secret: db.secret,
            roles: db.roles,
            migrations: itemsMigrations,
          }),
        );
      }
      for (const s of servers.splice(0)) await s.close();
      const urls: string[] = [];
      for (const t of instances.slice(0, count)) {
        const app = await createServer(t, { logger: false, events: { maxSocketsPerTenant: perTenant * 2 } });
        servers.push(app);
        urls.push((await app.listen({ host: '127.0.0.1', port: 0 })).replace('http', 'ws'));
      }
      const side = `tenantry-${count}`;
      const opened = await clients.ask<{ count: number }>(
        { op: 'open', side, targets: targetsFor(urls, true) },
        'opened',
      );
      log(`\n${count} instance(s): ${opened.count} sockets over ${options.tenants} tenants (${perTenant} per tenant)`);
      const perRound = Math.ceil(options.events / options.rounds);
      for (let round = 0; round < options.rounds; round++) {
        for (const which of [side, `bare-${count}`]) {
          for (let i = 0; i < perRound; i++) {
            const tenant = tenants[Math.floor(Math.random() * tenants.length)] as { id: string };
            const id = ++n;
            const t0 = wall();
            if (which.startsWith('bare')) {
              const frame = JSON.stringify({
                type: 'event',
                event: {
                  id: String(id),
                  tenantId: tenant.id,
                  seq: id,
                  type: 'bench.ping',
                  payload: { t0, n: id, phase: which },
                },
              });
              for (const ws of byTenant.get(tenant.id) ?? []) ws.send(frame);
            } else {
              await (instances[0] as Tenantry<unknown>).transaction(tenant.id, async (tx) => {
                emit(tx, 'bench.ping', { t0, n: id });
              });
            }
            const socketSide = which.startsWith('bare') ? 'bare' : which;
            if (!(await clients.until(`${socketSide}:${id}`, socketsOf(tenant.id)))) failures++;
          }
        }
      }
      await clients.ask({ op: 'close', side }, 'closed');
      const stats = servers.map((s) => s.eventSockets.stats());
      log(`server stats: ${JSON.stringify(stats.map((s) => ({ sent: s.sent, slow: s.slowConsumers, dead: s.dead })))}`);
    }
    const result = await clients.ask<{ latencies: Record<string, number[]>; crossTenant: number; received: number }>(
      { op: 'collect' },
      'collected',
    );
    log('\nDelivery latency, ms (publish → frame parsed by the client; Tenantry includes the commit):\n');
    log(
      `| ${'side'.padEnd(44)} | ${'frames'.padStart(7)} | ${'p50'.padStart(8)} | ${'p99'.padStart(8)} | ${'max'.padStart(8)} |`,
    );
    log(`| ${'-'.repeat(44)} | ${'-'.repeat(6)}: | ${'-'.repeat(7)}: | ${'-'.repeat(7)}: | ${'-'.repeat(7)}: |`);
    for (const [side, values] of Object.entries(result.latencies)) {
      const [kind, count] = side.split('-');
      const label =
        kind === 'bare' ? `baseline (bare ws, no database), beside ${count}` : `Tenantry, ${count} instance(s)`;
      log(describe(label, values));
    }
    log(
      `\ncross-tenant deliveries: ${result.crossTenant} (of ${result.received} frames); events not fully delivered within 5 s: ${failures}`,
    );
    bare.close();
    return result.crossTenant === 0 && failures === 0 ? 0 : 1;
  } finally {
    clients.exit();
    for (const s of servers) await s.close().catch(() => {});
    for (const t of instances) await t.close().catch(() => {});
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
