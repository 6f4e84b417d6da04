import type { Command } from 'commander';
import type { MaintenanceOperation, MaintenanceRequest } from '../../dbops/maintenance.ts';
import type { MaintenanceProgress } from '../../dbops/maintenance-progress.ts';
import { TenantryError } from '../../errors/catalog.ts';
import type { Tenantry } from '../../tenantry.ts';
import { withTenantry } from '../run.ts';

const print = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};
const line = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

function count(value: string | undefined, name: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max)
    throw new TenantryError('INVALID_INPUT', `${name} is a whole number 0–${max}`);
  return n;
}

interface MaintenanceFlags {
  table?: string[];
  index?: string;
  tenant?: string;
  fleet?: boolean;
  concurrency?: string;
  full?: boolean;
  json?: boolean;
}

/** Progress on stderr, one line rewritten in place (stdout stays clean for --json). */
function progressLine(p: MaintenanceProgress): void {
  const share = p.blocksTotal > 0 ? ` ${Math.round((p.blocksDone / p.blocksTotal) * 100)}%` : '';
  process.stderr.write(`\r\x1b[K${p.command} ${p.relation ?? ''}: ${p.phase}${share}`);
}

async function maintain(t: Tenantry, operation: MaintenanceOperation, o: MaintenanceFlags): Promise<void> {
  if (o.fleet && o.tenant) throw new TenantryError('INVALID_INPUT', '--fleet or --tenant, not both');
  // Ctrl-C cancels the running statement (its own backend only), then the command exits 1.
  const controller = new AbortController();
  const cancel = () => {
    process.stderr.write('\ncancelling…\n');
    controller.abort();
  };
  process.once('SIGINT', cancel);
  const request: MaintenanceRequest = {
    operation,
    actor: `cli:${process.env.USER ?? 'operator'}`,
    signal: controller.signal,
    ...(o.table?.length ? { tables: o.table } : {}),
    ...(o.index ? { index: o.index } : {}),
    ...(o.full ? { full: true } : {}),
    ...(o.json || !process.stderr.isTTY ? {} : { onProgress: progressLine }),
  };
  try {
    if (o.fleet) {
      const report = await t.dbops.maintainFleet(request, {
        concurrency: count(o.concurrency, '--concurrency', 2, 64),
        ...(o.json
          ? {}
          : {
              onTarget: (done, total, failed) =>
                process.stderr.write(`\r\x1b[K${done}/${total} targets, ${failed} failed`),
            }),
      });
      if (!o.json) process.stderr.write('\n');
      if (report.failed.length > 0) process.exitCode = 1;
      if (o.json) return print(report);
      for (const r of report.completed) line(`ok      ${r.target} (${r.durationMs} ms)`);
      for (const f of report.failed) line(`FAILED  ${f.target}: ${f.error}`);
      line(`${report.completed.length} of ${report.total} targets in ${report.durationMs} ms`);
      return;
    }
    const report = await t.dbops.maintain({ ...request, ...(o.tenant ? { tenant: o.tenant } : {}) });
    if (request.onProgress) process.stderr.write('\r\x1b[K');
    if (o.json) return print(report);
    for (const s of report.statements) line(s);
    line(`${report.target}: ${report.statements.length} statements in ${report.durationMs} ms (audited)`);
  } finally {
    process.off('SIGINT', cancel);
  }
}

function maintenanceCommand(db: Command, operation: MaintenanceOperation, description: string): Command {
  const command = db
    .command(operation)
    .description(description)
    .option('--tenant <tenant>', 'the schema or database of this tenant (id or slug); default the shared tables')
    .option('--fleet', 'every tenant schema and database, --concurrency at a time')
    .option('--concurrency <n>', 'targets at once with --fleet (default 2)')
    .option('--json', 'print JSON');
  if (operation !== 'create-indexes')
    command.option('--table <table...>', 'only these tables (default all of the target)');
  return command;
}

/** `tenantry db …`: database health, statistics, slow statements, index advice and maintenance. */
export function registerDb(program: Command): void {
  const db = program
    .command('db')
    .description('database health, statistics, slow statements, index advice and maintenance');

  db.command('health')
    .description(
      'connections, pool map, long and blocked sessions, replication, wraparound, checkpoints; exit 1 when critical',
    )
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      await withTenantry(async (t) => {
        const h = await t.dbops.health();
        if (h.status === 'critical') process.exitCode = 1;
        if (o.json) return print(h);
        line(`status       ${h.status}${h.problems.map((p) => `\n  - ${p}`).join('')}`);
        line(`server       PostgreSQL ${h.serverVersion}${h.inRecovery ? ' (replica)' : ''}`);
        line(`connections  ${h.connections.used}/${h.connections.max}`);
        if (h.poolMap)
          line(
            `pool map     ${h.poolMap.connectionsInUse} in use, ${h.poolMap.connectionsOpen} open, ${h.poolMap.waiters} waiting`,
          );
        line(
          `wraparound   xid age ${h.wraparound.xidAge} in ${h.wraparound.database} (${(h.wraparound.ratio * 100).toFixed(1)} %)`,
        );
        line(`checkpoints  ${h.checkpoints.timed} timed, ${h.checkpoints.requested} requested`);
        for (const r of h.replication) line(`replica      ${r.name} ${r.state} lag ${r.lagSeconds ?? '?'} s`);
        for (const s of [...h.longRunning, ...h.idleInTransaction])
          line(`long         pid ${s.pid} ${s.state} ${s.transactionSeconds} s: ${s.query}`);
        for (const b of h.blocked)
          line(`blocked      pid ${b.pid} by ${b.blockedBy.join(',')} for ${b.waitingSeconds} s: ${b.query}`);
      });
    });

  db.command('stats')
    .description(
      'table and index sizes, bloat, dead tuples, (auto)vacuum, unused and duplicate indexes, cache hit ratio',
    )
    .option('--schema <schema>', 'schema to report on (default the tenant schema)')
    .option('--json', 'print JSON')
    .action(async (o: { schema?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const s = await t.dbops.stats(o.schema ? { schemas: [o.schema] } : {});
        if (o.json) return print(s);
        for (const x of s.tables) {
          line(
            `${x.table.padEnd(40)} ${mb(x.totalBytes).padStart(10)} live ${x.liveRows} dead ${x.deadRows} bloat≈${mb(x.bloatBytes)} ` +
              `seq ${x.seqScans} idx ${x.indexScans} vacuum ${x.lastVacuum ?? x.lastAutovacuum ?? 'never'}`,
          );
        }
        for (const i of s.unusedIndexes) line(`unused index     ${i.index} (${mb(i.bytes)})`);
        for (const g of s.duplicateIndexes) line(`duplicate index  ${g.join(' = ')}`);
        for (const i of s.invalidIndexes) line(`INVALID index    ${i.index}: drop it and build it again`);
        for (const x of s.deadTupleHeavy)
          line(`dead tuples      ${x.table}: ${(x.deadRatio * 100).toFixed(0)} % (vacuum it)`);
        for (const x of s.seqScanHeavy) line(`seq-scan heavy   ${x.table}: ${x.seqScans} sequential scans`);
        line(`cache hit ratio  ${s.cacheHitRatio === null ? 'n/a' : `${(s.cacheHitRatio * 100).toFixed(2)} %`}`);
      });
    });

  db.command('slow')
    .description('the slowest statements (pg_stat_statements), or why they are not available')
    .option('--limit <n>', 'statements, slowest total time first (default 20)')
    .option('--min-mean-ms <ms>', 'only statements at least this slow on average')
    .option('--json', 'print JSON')
    .action(async (o: { limit?: string; minMeanMs?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const r = await t.dbops.slowQueries({
          limit: count(o.limit, '--limit', 20, 500),
          minMeanMs: count(o.minMeanMs, '--min-mean-ms', 0, 86_400_000),
        });
        if (o.json) return print(r);
        if (!r.available) return line(`not available: ${r.reason}`);
        for (const s of r.statements)
          line(
            `${s.meanMs.toFixed(2).padStart(10)} ms × ${String(s.calls).padEnd(8)} ${s.query.replace(/\s+/g, ' ').slice(0, 160)}`,
          );
      });
    });

  db.command('advise')
    .description('indexes led by tenant_id for the slowest statements, checked with hypopg when installed')
    .option('--limit <n>', 'statements examined (default 20)')
    .option('--min-mean-ms <ms>', 'only statements at least this slow on average')
    .option('--json', 'print JSON')
    .action(async (o: { limit?: string; minMeanMs?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const a = await t.dbops.adviseIndexes({
          limit: count(o.limit, '--limit', 20, 500),
          minMeanMs: count(o.minMeanMs, '--min-mean-ms', 0, 86_400_000),
        });
        if (o.json) return print(a);
        if (!a.available) return line(`not available: ${a.reason}`);
        if (!a.hypopg)
          line('(hypopg is not installed in this database: suggestions are not checked with hypothetical indexes)');
        for (const s of a.suggestions) {
          const check = s.hypothetical
            ? ` → ${s.hypothetical.costAfter.toFixed(0)}${s.hypothetical.used ? '' : ' (planner did not pick it)'}`
            : '';
          line(
            `${s.sql};\n    cost ${s.costBefore.toFixed(0)}${check} — ${s.statement.query.replace(/\s+/g, ' ').slice(0, 120)}`,
          );
        }
        if (a.suggestions.length === 0) line('no suggestion');
      });
    });

  const run = (operation: MaintenanceOperation) => async (o: MaintenanceFlags) => {
    await withTenantry((t) => maintain(t, operation, o));
  };
  maintenanceCommand(db, 'analyze', 'ANALYZE (audited; one run per target; Ctrl-C cancels)').action(run('analyze'));
  maintenanceCommand(db, 'vacuum', 'VACUUM (ANALYZE); never FULL unless --full (audited; Ctrl-C cancels)')
    .option('--full', 'VACUUM FULL: rewrites each table under an exclusive lock')
    .action(run('vacuum'));
  maintenanceCommand(db, 'reindex', 'REINDEX … CONCURRENTLY, without blocking writes (audited; Ctrl-C cancels)')
    .option('--index <index>', 'only this index')
    .action(run('reindex'));
  maintenanceCommand(
    db,
    'create-indexes',
    'CREATE INDEX CONCURRENTLY the tenant-leading indexes doctor finds missing',
  ).action(run('create-indexes'));
  db.command('partitions')
    .description('create the audit log partitions of the coming months (audited)')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      await withTenantry((t) => maintain(t, 'partitions', o));
    });
}
