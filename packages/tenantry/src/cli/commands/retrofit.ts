import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { ApplyProgress } from '../../retrofit/apply.ts';
import { connectFromEnvironment, note, withTenantry } from '../run.ts';

const list = (value: string, previous: string[] = []) => [...previous, ...value.split(',').filter(Boolean)];

function clock(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Progress lines on stderr, with an ETA from the weight (rows) of the steps done so far. */
function progressPrinter(): (p: ApplyProgress) => void {
  const started = Date.now();
  return (p) => {
    const elapsed = Date.now() - started;
    const eta =
      p.weightDone > 0 ? ` · ETA ${clock((elapsed / p.weightDone) * Math.max(0, p.weightTotal - p.weightDone))}` : '';
    const head = `[${String(p.position).padStart(String(p.total).length)}/${p.total}] ${p.step.action} ${p.step.target}`;
    if (p.state === 'start') note(`${head}${eta}`);
    else if (p.state === 'batch') note(`${head} ${Math.round((p.fraction ?? 0) * 100)}%${eta}`);
    else if (p.state === 'retry') note(`${head}: lock not granted, retry ${p.attempt}`);
  };
}

/** `tenantry retrofit plan|apply`: turn an existing single-tenant schema into tenant tables. */
export function registerRetrofit(program: Command): void {
  const retrofit = program
    .command('retrofit')
    .description('retrofit an existing single-tenant schema into Tenantry tenant tables, online (docs/retrofit.md)');

  retrofit
    .command('plan')
    .description('read the catalog and write the plan: steps with why, estimate and rollback; hazards with fixes')
    .option('--schema <schema>', 'schema of the application tables', 'public')
    .option('--global <tables>', 'tables shared by all tenants, comma-separated (e.g. country,language)', list)
    .option('--default-tenant <slug>', 'tenant that receives every existing row', 'default')
    .option(
      '--legacy-role <roles>',
      "roles the running application uses (default: the tables' owners and writers)",
      list,
    )
    .option('--out <file>', 'write the plan there instead of stdout')
    .action(
      async (opts: {
        schema: string;
        global?: string[];
        defaultTenant: string;
        legacyRole?: string[];
        out?: string;
      }) => {
        const { planRetrofit } = await import('../../retrofit/plan.ts');
        const { renderPlan } = await import('../../retrofit/plan-file.ts');
        // Planning reads the catalog only: no setup, nothing changes.
        const { tenantry, env } = await connectFromEnvironment([], { setup: false });
        try {
          const plan = await planRetrofit(tenantry.adminPool, {
            schema: opts.schema,
            global: opts.global ?? [],
            defaultTenant: opts.defaultTenant,
            ownerRole: tenantry.config.roles.owner,
            runtimeRole: tenantry.config.roles.runtime,
            ...(opts.legacyRole ? { legacyRoles: opts.legacyRole } : {}),
            dialect: tenantry.config.dialect,
          });
          const text = renderPlan(plan);
          if (opts.out) await writeFile(opts.out, text);
          else process.stdout.write(text);
          note(
            `${plan.steps.length} steps for ${plan.tenantTables.length} tenant tables, ${plan.globalTables.length} global; ${plan.hazards.length} hazards`,
          );
          if (plan.candidates.length > 0) {
            note(`look like reference data, confirm with --global: ${plan.candidates.join(', ')}`);
          }
        } finally {
          await tenantry.close();
          await env.embedded?.stop();
        }
      },
    );

  retrofit
    .command('apply <file>')
    .description('apply a plan step by step (resumable); ends with doctor, exit 1 on errors')
    .option('--dry-run', 'change nothing: list the steps that would run and the rollback of those done')
    .option('--cutover', 'run the cutover steps (after the application works through the runtime role)')
    .option('--lock-timeout <ms>', 'longest wait for a lock the application holds', '2000')
    .option('--batch-rows <n>', 'rows per backfill transaction', '5000')
    .option('--json', 'print the report as JSON')
    .action(
      async (
        file: string,
        opts: { dryRun?: boolean; cutover?: boolean; lockTimeout: string; batchRows: string; json?: boolean },
      ) => {
        const { applyRetrofit } = await import('../../retrofit/apply.ts');
        const text = await readFile(file, 'utf8');
        const controller = new AbortController();
        const stop = () => controller.abort();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const report = await withTenantry((tenantry) =>
          applyRetrofit(tenantry, text, {
            phase: opts.cutover ? 'cutover' : 'retrofit',
            dryRun: opts.dryRun === true,
            lockTimeoutMs: Number(opts.lockTimeout),
            batchRows: Number(opts.batchRows),
            signal: controller.signal,
            onProgress: progressPrinter(),
          }),
        ).finally(() => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        } else {
          const verb = report.dryRun ? 'would run' : 'ran';
          process.stdout.write(`${verb} ${report.applied.length} steps (${report.skipped} already applied)\n`);
          for (const s of report.dryRun ? report.applied : []) {
            process.stdout.write(`  step ${s.n} ${s.action} ${s.target} [${s.mode}] ${s.estimate}\n`);
          }
          if (report.rollback) process.stdout.write(`\n-- Rollback of the applied steps:\n${report.rollback}\n`);
          if (report.doctor) {
            const errors = report.doctor.findings.filter((f) => f.severity === 'error');
            for (const f of errors) process.stdout.write(`ERROR ${f.code} ${f.table ?? ''}: ${f.message}\n`);
            process.stdout.write(
              `doctor: ${errors.length} errors, ${report.doctor.findings.length - errors.length} warnings\n`,
            );
          }
        }
        if (report.doctor && !report.doctor.ok) process.exitCode = 1;
      },
    );
}
