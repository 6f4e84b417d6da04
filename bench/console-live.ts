/**
 * The console's Live feed under write load: what open viewers of every tenant's events
 * (`GET /console/live/stream`, one shared `FleetEventFeed` per server) cost the tenants' own
 * writes, and how late the viewers see the events.
 *
 * `--writers` writers commit one event per tenant transaction (`emit()` in
 * `tenantry.transaction`, a tenant picked at random among `--tenants`) for `--seconds`. Side
 * "off": no viewer (the feed is stopped); side "on": `--viewers` viewers connected. The sides
 * alternate over `--rounds`, and each round's on/off ratio of commits per second is printed
 * with their median. The viewers run in the same process as the server and the writers (a
 * console next to the application), so their reading is charged to the writers too: an upper
 * bound of the cost. They note, per chunk received, the delay from the last event's insert
 * (`created_at`, the database's clock on this machine) to its arrival.
 *
 *   npm run bench -- console-live [--tenants 200] [--writers 8] [--viewers 20] [--seconds 5] [--rounds 4]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser; the
 * benchmark works in a database of its own and removes it.
 */
import { parseArgs } from 'node:util';
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { emit, Tenantry } from '../packages/tenantry/src/index.ts';
import { benchDatabaseUrl, positive } from './lib/argv.ts';
import { type ConsoleServer, startConsoleServer } from './lib/console-server.ts';
import { createBenchDatabase } from './lib/database.ts';
import { fixed, log } from './lib/print.ts';
import { describeMachine } from './lib/report.ts';
import { median, quantile } from './lib/stats.ts';

const ADMIN = 'bench-console-live-admin-token-0123456789';

interface Viewer {
  frames: number;
  readonly delays: number[];
  close(): void;
}

/** One viewer: counts frames, and notes the delay of the last event of each chunk. */
async function openViewer(base: string, cookie: string): Promise<Viewer> {
  const controller = new AbortController();
  const response = await fetch(`${base}/console/live/stream`, { headers: { cookie }, signal: controller.signal });
  if (response.status !== 200 || !response.body) throw new Error(`live stream: ${response.status}`);
  const viewer: Viewer = { frames: 0, delays: [], close: () => controller.abort() };
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const arrived = Date.now();
      for (let i = value.indexOf('data: '); i >= 0; i = value.indexOf('data: ', i + 6)) viewer.frames++;
      const at = value.lastIndexOf('"at":"');
      if (at >= 0) viewer.delays.push(arrived - Date.parse(value.slice(at + 6, at + 30)));
    }
  })().catch(() => {});
  return viewer;
}

export async function main(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      tenants: { type: 'string' },
      writers: { type: 'string' },
      viewers: { type: 'string' },
      seconds: { type: 'string' },
      rounds: { type: 'string' },
    },
  });
  const tenantCount = positive(values.tenants, 200, '--tenants', true);
  const writers = positive(values.writers, 8, '--writers', true);
  const viewerCount = positive(values.viewers, 20, '--viewers', true);
  const seconds = positive(values.seconds, 5, '--seconds', false);
  const rounds = positive(values.rounds, 4, '--rounds', true);
  const db = await createBenchDatabase(benchDatabaseUrl());
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    pool: { max: writers + 2 },
  });
  let app: ConsoleServer['app'] | undefined;
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const pgVersion =
      (await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ??
      '?';
    log(`machine: ${JSON.stringify(await describeMachine(pgVersion))}`);
    log(`options: ${JSON.stringify({ tenants: tenantCount, writers, viewers: viewerCount, seconds, rounds })}`);
    const tenants: string[] = [];
    for (let i = 0; i < tenantCount; i++)
      tenants.push((await tenantry.tenants.create({ slug: `live-${i}`, name: `Live ${i}` })).id);

    const started = await startConsoleServer(tenantry as Tenantry<unknown>, ADMIN);
    app = started.app;
    const { base, cookie } = started;

    /** Commits events for `seconds`; returns commits per second. */
    const write = async (): Promise<number> => {
      let commits = 0;
      const end = performance.now() + seconds * 1000;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: writers }, async () => {
          while (performance.now() < end) {
            const tenant = tenants[Math.floor(Math.random() * tenants.length)] as string;
            await tenantry.transaction(tenant, async (tx) => {
              emit(tx, 'bench.live', { n: commits });
            });
            commits++;
          }
        }),
      );
      return commits / ((performance.now() - started) / 1000);
    };

    await write(); // warm-up: pools, plans
    const off: number[] = [];
    const on: number[] = [];
    const ratios: number[] = [];
    const delays: number[] = [];
    let received = 0;
    let committed = 0;
    for (let round = 0; round < rounds; round++) {
      const withoutViewers = await write();
      off.push(withoutViewers);
      const viewers = await Promise.all(Array.from({ length: viewerCount }, () => openViewer(base, cookie)));
      await new Promise((resolve) => setTimeout(resolve, 500)); // the recent events go out first
      const before = viewers.map((v) => v.frames);
      for (const v of viewers) v.delays.length = 0;
      const withViewers = await write();
      await new Promise((resolve) => setTimeout(resolve, 1000)); // the last events reach them
      on.push(withViewers);
      ratios.push(withViewers / withoutViewers);
      committed += Math.round(withViewers * seconds);
      received += median(viewers.map((v, i) => v.frames - (before[i] ?? 0)));
      for (const v of viewers) {
        delays.push(...v.delays);
        v.close();
      }
      log(
        `round ${round + 1}: off ${fixed(withoutViewers, 0)} commits/s, on (${viewerCount} viewers) ${fixed(withViewers, 0)} commits/s, ratio ${fixed(withViewers / withoutViewers, 3)}`,
      );
    }
    delays.sort((a, b) => a - b);
    log();
    log(`| side | commits/s (median of ${rounds}) |`);
    log('| --- | --- |');
    log(`| no viewer (feed stopped) | ${fixed(median(off), 0)} |`);
    log(`| ${viewerCount} viewers of every tenant | ${fixed(median(on), 0)} |`);
    log();
    log(
      `on/off ratio, median of the rounds: ${fixed(median(ratios), 3)} (per round: ${ratios.map((r) => fixed(r, 3)).join(', ')})`,
    );
    log(
      `viewer delay from insert to arrival: p50 ${fixed(quantile(delays, 0.5), 0)} ms, p99 ${fixed(quantile(delays, 0.99), 0)} ms (${delays.length} chunks)`,
    );
    log(
      `events received per viewer (median) against committed, over the "on" rounds: ${received} of about ${committed}`,
    );
    return 0;
  } finally {
    await app?.close();
    await tenantry.close();
    await db.drop();
  }
}
