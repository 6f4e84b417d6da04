import type { Command } from 'commander';
import { TenantryError } from '../../errors/catalog.ts';
import type { FleetPlan } from '../../fleet/fleet-plan.ts';
import { FLEET_DEFAULT_CONCURRENCY, FLEET_MAX_CONCURRENCY, type FleetReport } from '../../fleet/fleet-run.ts';
import type { TenantMigration } from '../../schema/migration.ts';
import type { Tenantry } from '../../tenantry.ts';
import { cliMigrations, connectFromEnvironment, note, withTenantry } from '../run.ts';

interface MigrateFlags {
  migrations?: string;
  json?: boolean;
  concurrency?: string;
  plan?: boolean;
  canary?: string;
}

/** `tenantry migrate`: control plane, shared tables, then every tenant schema and database. */
export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('create roles, migrate the control plane, the shared tables and every tenant schema and database')
    .option('--migrations <module>', 'module exporting the tenant-table migrations (default: the reference server’s)')
    .option(
      '--concurrency <n>',
      `targets migrated at once (1-${FLEET_MAX_CONCURRENCY})`,
      String(FLEET_DEFAULT_CONCURRENCY),
    )
    .option('--plan', 'print which targets are behind and what would run; change nothing')
    .option('--canary <n|slug,slug>', 'migrate the first n targets (or these tenants) first; stop if any fails')
    .option('--json', 'print the report as JSON')
    .action(async (opts: MigrateFlags) => {
      // Flags are checked before anything connects: a typo must not half-run a migration.
      const concurrency = parseConcurrency(opts.concurrency);
      const canary = parseCanary(opts.canary);
      const migrations = await cliMigrations(opts.migrations);
      if (opts.plan) {
        await printPlan(migrations, opts.json === true);
        return;
      }
      await withTenantry(
        async (tenantry) => {
          if (Array.isArray(canary)) await assertTenantsExist(tenantry, canary);
          const control = await tenantry.setup();
          const tenant = await tenantry.migrate();
          const progress = progressReporter(process.stderr);
          let fleet: FleetReport;
          try {
            fleet = await tenantry.migrateFleet({
              concurrency,
              ...(canary === undefined ? {} : { canary }),
              onProgress: progress.update,
            });
          } finally {
            progress.finish();
          }
          if (fleet.failed.length > 0) process.exitCode = 1;
          if (opts.json) {
            process.stdout.write(`${JSON.stringify({ control, tenant, fleet }, null, 2)}\n`);
            return;
          }
          for (const r of [control, tenant]) {
            process.stdout.write(
              `${r.chain} (${r.target}): ${r.applied.length ? `applied ${r.applied.join(', ')}` : 'up to date'}\n`,
            );
          }
          process.stdout.write(describeReport(fleet));
        },
        { migrations },
      );
    });
}

function parseConcurrency(value: string | undefined): number {
  const n = Number(value ?? '4');
  if (!/^\d+$/.test(value ?? '4') || n < 1 || n > FLEET_MAX_CONCURRENCY) {
    throw new TenantryError('INVALID_INPUT', `--concurrency must be an integer from 1 to ${FLEET_MAX_CONCURRENCY}`);
  }
  return n;
}

/** `--canary 10` (the first ten targets of the plan) or `--canary acme,globex` (those tenants). */
function parseCanary(value: string | undefined): number | string[] | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (n < 1) throw new TenantryError('INVALID_INPUT', '--canary must be at least 1');
    return n;
  }
  const slugs = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (slugs.length === 0) throw new TenantryError('INVALID_INPUT', '--canary needs a number or tenant slugs');
  return slugs;
}

async function assertTenantsExist(tenantry: Tenantry, slugs: readonly string[]): Promise<void> {
  const missing: string[] = [];
  for (const slug of slugs) if (!(await tenantry.tenants.find(slug))) missing.push(slug);
  if (missing.length > 0) throw new TenantryError('INVALID_INPUT', `--canary: no tenant ${missing.join(', ')}`);
}

/**
 * `--plan`: reads the control plane only. It does not run `setup()` either, so it changes
 * nothing even when the control plane itself is behind.
 */
async function printPlan(migrations: readonly TenantMigration[], json: boolean): Promise<void> {
  const { tenantry, env } = await connectFromEnvironment(migrations, { setup: false });
  try {
    const plan = await tenantry.planFleet();
    process.stdout.write(json ? `${JSON.stringify(plan, null, 2)}\n` : describePlan(plan));
  } finally {
    await tenantry.close();
    await env.embedded?.stop();
  }
}

function describePlan(plan: FleetPlan): string {
  const head = `${plan.head} tenant migration${plan.head === 1 ? '' : 's'}, head ${plan.version ?? '(none)'}`;
  if (plan.targets.length === 0) return `every target is at head (${head})\n`;
  const rows = plan.targets.map((t) => [
    t.target,
    t.kind + (t.state === 'warm' ? ' (warm)' : ''),
    t.tenantSlug ?? '-',
    `${t.appliedCount}/${plan.head}`,
    t.pending.join(', ') + (t.lastError ? `  [last error: ${t.lastError}]` : ''),
  ]);
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const lines = rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
  return `${plan.targets.length} target${plan.targets.length === 1 ? '' : 's'} behind head (${head}):\n${lines.join('\n')}\n`;
}

function describeReport(r: FleetReport): string {
  if (r.total === 0) return 'fleet: every tenant schema and database is at head\n';
  const out = [
    `fleet: ${r.total} target${r.total === 1 ? '' : 's'} behind head: ${r.migrated} migrated, ${r.failed.length} failed, ${r.skipped} skipped in ${(r.durationMs / 1000).toFixed(1)} s`,
  ];
  if (r.canary && !r.canary.passed) {
    out.push(`canary of ${r.canary.size} failed: the other ${r.skipped} targets were left untouched`);
  }
  for (const f of r.failed) out.push(`  failed ${f.target}${f.tenant ? ` (${f.tenant})` : ''}: ${f.error}`);
  if (r.failed.length > 0)
    out.push('fix the cause and run `tenantry migrate` again: it picks up where this run stopped');
  return `${out.join('\n')}\n`;
}

/**
 * Progress on stderr. On a terminal: one line redrawn in place (bar, counts, rate, ETA).
 * Otherwise (CI logs, files): a plain line at every 10% and at least every 10 s, so a log
 * shows that a long run is alive without being flooded.
 */
function progressReporter(stream: NodeJS.WriteStream): {
  update: (done: number, total: number, failed: number) => void;
  finish: () => void;
} {
  const tty = stream.isTTY === true;
  const started = performance.now();
  let state = { done: 0, total: 0, failed: 0 };
  let printedAt = 0;
  let printedStep = -1;
  let drawn = false;
  const line = () => {
    const { done, total, failed } = state;
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = done >= total ? '0s' : rate > 0 ? duration((total - done) / rate) : '?';
    const percent = Math.floor((done / total) * 100);
    const counts = `${done}/${total} (${percent}%), ${rate.toFixed(1)} targets/s, ETA ${eta}${failed ? `, ${failed} failed` : ''}`;
    if (!tty) return `fleet ${counts}`;
    const width = 24;
    const filled = Math.round((width * done) / total);
    return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${counts}`;
  };
  const draw = () => {
    if (state.total === 0) return;
    printedAt = performance.now();
    if (tty) {
      stream.write(`\r\x1b[K${line()}`); // carriage return + erase line: redrawn in place
      drawn = true;
    } else {
      note(line());
    }
  };
  // Also redraw while no target finishes (a slow one), so the rate and ETA stay honest.
  const timer = setInterval(() => {
    if (state.total > 0 && state.done < state.total && performance.now() - printedAt >= (tty ? 1_000 : 10_000)) draw();
  }, 1_000);
  timer.unref();
  return {
    update: (done, total, failed) => {
      state = { done, total, failed };
      if (total === 0) return;
      const step = Math.floor((done * 10) / total);
      if (done === total || (tty ? performance.now() - printedAt >= 100 : step !== printedStep)) {
        printedStep = step;
        draw();
      }
    },
    finish: () => {
      clearInterval(timer);
      if (drawn) stream.write('\n');
    },
  };
}

function duration(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
