import type { Command } from 'commander';
import { loadMigrations, withTenantry } from '../run.ts';

/** `tenantry migrate`: control plane, then the tenant-table chain. */
export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('create roles, migrate the control plane and apply tenant-table migrations')
    .option('--migrations <module>', 'module exporting the tenant-table migrations')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { migrations?: string; json?: boolean }) => {
      const migrations = await loadMigrations(opts.migrations);
      await withTenantry(
        async (tenantry) => {
          const control = await tenantry.setup();
          const tenant = await tenantry.migrate();
          if (opts.json) {
            process.stdout.write(`${JSON.stringify({ control, tenant }, null, 2)}\n`);
            return;
          }
          for (const r of [control, tenant]) {
            process.stdout.write(
              `${r.chain} (${r.target}): ${r.applied.length ? `applied ${r.applied.join(', ')}` : 'up to date'}\n`,
            );
          }
        },
        { migrations },
      );
    });
}
