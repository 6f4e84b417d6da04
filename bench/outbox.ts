/**
 * Outbox throughput: how many committed events per second the dispatcher delivers
 * (`tenantry.events.start()`, `--concurrency` workers per instance) to
 *
 * - an in-process subscriber that only counts (what the dispatcher itself costs: one claim,
 *   one handler call and one mark-delivered transaction per event), against a hand-written
 *   `FOR UPDATE SKIP LOCKED` job queue (claim, mark done, commit per job) on the same pool at
 *   the same concurrency, which keeps no order per tenant and enters no tenant context;
 * - a local webhook receiver (HTTP on loopback, answering 204), through the
 *   `WebhookDeliverer` (endpoint lookup, signature, POST, history row), against the same
 *   signed POSTs sent by a plain loop at the same concurrency.
 *
 * Events are written first (`--events` over `--tenants` tenants, 100 per transaction), then
 * drained while the clock runs; sides alternate over `--rounds`.
 *
 *   node bench/outbox.ts [--events 5000] [--tenants 50] [--rounds 3] [--concurrency 2,8] [--quick]
 */
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { emit, signWebhook, Tenantry, WebhookDeliverer } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median } from './lib/stats.ts';

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out waiting for deliveries');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      events: { type: 'string' },
      tenants: { type: 'string' },
      rounds: { type: 'string' },
      concurrency: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick === true;
  const events = positive(values.events, quick ? 1000 : 5000, '--events', true);
  const tenantCount = positive(values.tenants, quick ? 20 : 50, '--tenants', true);
  const rounds = positive(values.rounds, quick ? 2 : 3, '--rounds', true);
  const concurrencies = (values.concurrency ?? '2,8').split(',').map((c) => positive(c, 2, '--concurrency', true));

  const db = await createBenchDatabase(benchDatabaseUrl());
  let received = 0;
  const receiver = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const setup = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
  });
  try {
    await setup.setup();
    await setup.migrate();
    const pgVersion =
      (await setup.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? '?';
    log(`machine: ${JSON.stringify(await describeMachine(pgVersion))}`);
    log(`options: ${JSON.stringify({ events, tenants: tenantCount, rounds, concurrencies })}`);
    const tenants: string[] = [];
    const secrets: string[] = [];
    for (let i = 0; i < tenantCount; i++) {
      const t = await setup.tenants.create({ slug: `ob-${i}`, name: `Outbox ${i}` });
      tenants.push(t.id);
    }
    await setup.events.drain(); // the tenant.created events

    /** Writes `events` events over the tenants, 100 per transaction. */
    const write = async () => {
      for (let i = 0; i < events; i += 100) {
        await setup.transaction(tenants[(i / 100) % tenants.length] as string, async (tx) => {
          for (let j = i; j < Math.min(events, i + 100); j++) emit(tx, 'bench.tick', { j });
        });
      }
    };

    const results: Record<string, number[]> = {};
    const record = (key: string, seconds: number) => {
      results[key] ??= [];
      results[key].push(events / seconds);
    };
    for (const concurrency of concurrencies) {
      const tenantry = await Tenantry.connect({
        databaseUrl: db.url,
        secret: db.secret,
        roles: db.roles,
        migrations: itemsMigrations,
        events: { concurrency, pollIntervalMs: 50 },
        pool: { max: concurrency + 2 },
      });
      try {
        for (let round = 0; round < rounds; round++) {
          // 1. In-process subscriber.
          let count = 0;
          const off = tenantry.events.on('bench.tick', () => {
            count++;
          });
          await write();
          let started = performance.now();
          await tenantry.events.start();
          await until(() => count >= events, 300_000);
          record(`subscriber-${concurrency}`, (performance.now() - started) / 1000);
          await tenantry.events.close();
          off();

          // Baseline: a hand-written SKIP LOCKED job queue (claim, mark done, commit: one
          // transaction per job, as the dispatcher), without per-tenant order or context.
          await tenantry.adminPool.query(
            'CREATE TABLE IF NOT EXISTS bench_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, done boolean NOT NULL DEFAULT false, payload jsonb)',
          );
          await tenantry.adminPool.query(
            `INSERT INTO bench_jobs (payload) SELECT jsonb_build_object('j', g) FROM generate_series(1, $1) g`,
            [events],
          );
          started = performance.now();
          let jobs = 0;
          await Promise.all(
            Array.from({ length: concurrency }, async () => {
              for (;;) {
                const c = await tenantry.adminPool.connect();
                try {
                  await c.query('BEGIN');
                  const { rows } = await c.query(
                    'SELECT id, payload FROM bench_jobs WHERE NOT done ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED',
                  );
                  if (rows.length === 0) {
                    await c.query('COMMIT');
                    return;
                  }
                  jobs++;
                  await c.query('UPDATE bench_jobs SET done = true WHERE id = $1', [rows[0].id]);
                  await c.query('COMMIT');
                } finally {
                  c.release();
                }
              }
            }),
          );
          if (jobs !== events) throw new Error(`the job queue ran ${jobs} jobs of ${events}`);
          await tenantry.adminPool.query('TRUNCATE bench_jobs');
          record(`floor-${concurrency}`, (performance.now() - started) / 1000);

          // 2. Webhooks to the local receiver.
          for (const [i, tenantId] of tenants.entries()) {
            if (secrets[i] === undefined) {
              secrets[i] = (
                await tenantry.webhooks.create(tenantId, { url: receiverUrl, eventTypes: ['bench.tick'] })
              ).secret;
            }
          }
          const deliverer = new WebhookDeliverer(tenantry.webhooks, { allowPrivateAddresses: true, attempts: 1 });
          deliverer.subscribe(tenantry.events);
          await write();
          received = 0;
          started = performance.now();
          await tenantry.events.start();
          await until(() => received >= events, 600_000);
          record(`webhook-${concurrency}`, (performance.now() - started) / 1000);
          await tenantry.events.close();
          deliverer.close();

          // Baseline: the same signed POSTs from a plain loop, same concurrency.
          received = 0;
          started = performance.now();
          let next = 0;
          const secret = secrets[0] as string;
          await Promise.all(
            Array.from({ length: concurrency }, async () => {
              while (next < events) {
                const j = next++;
                const body = JSON.stringify({ id: `evt_${j}`, type: 'bench.tick', data: { j } });
                const ts = Math.floor(Date.now() / 1000);
                const res = await fetch(receiverUrl, {
                  method: 'POST',
                  headers: {
                    'content-type': 'application/json',
                    'webhook-id': `evt_${j}`,
                    'webhook-timestamp': String(ts),
                    'webhook-signature': signWebhook(secret, `evt_${j}`, ts, body),
                  },
                  body,
                });
                await res.arrayBuffer();
              }
            }),
          );
          record(`post-${concurrency}`, (performance.now() - started) / 1000);
        }
      } finally {
        await tenantry.events.close();
        await tenantry.close();
      }
    }
    log('\nevents/s delivered (median of rounds):\n');
    log(
      '| concurrency | in-process subscriber | baseline: SKIP LOCKED job queue | ratio | webhooks | plain signed POSTs | ratio |',
    );
    log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const c of concurrencies) {
      const m = (k: string) => median(results[`${k}-${c}`] ?? [0]);
      log(
        `| ${c} | ${m('subscriber').toFixed(0)} | ${m('floor').toFixed(0)} | ${(m('subscriber') / m('floor')).toFixed(2)} | ${m('webhook').toFixed(0)} | ${m('post').toFixed(0)} | ${(m('webhook') / m('post')).toFixed(2)} |`,
      );
    }
    return 0;
  } finally {
    receiver.close();
    await setup.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
