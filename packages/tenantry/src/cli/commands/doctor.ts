import type { Command } from 'commander';
import { withTenantry } from '../run.ts';

/** `tenantry doctor`: lists isolation gaps; exits 1 when any is an error. */
export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('inspect the database for tenant-isolation gaps; exit 1 when there are errors')
    .option('--schema <schema...>', 'schemas holding tenant tables (default: the tenant schema, `public`)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { schema?: string[]; json?: boolean }) => {
      const report = await withTenantry((t) => t.doctor(opts.schema ? { schemas: opts.schema } : {}));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        for (const f of report.findings) {
          process.stdout.write(`${f.severity.toUpperCase().padEnd(7)} ${f.code}${f.table ? ` ${f.table}` : ''}\n`);
          process.stdout.write(`        ${f.message}\n        fix: ${f.fix.replaceAll('\n', '\n             ')}\n`);
        }
        const errors = report.findings.filter((f) => f.severity === 'error').length;
        process.stdout.write(
          `${report.tablesChecked} tenant tables checked: ${errors} errors, ${report.findings.length - errors} warnings\n`,
        );
      }
      if (!report.ok) process.exitCode = 1;
    });
}
