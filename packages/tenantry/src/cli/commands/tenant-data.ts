import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { Command } from 'commander';
import type { IsolationTier } from '../../context/tenant-context.ts';
import { cliMigrations, withTenantry } from '../run.ts';

/**
 * `tenantry tenants export|import`: a tenant's data as one archive, and back as a new
 * tenant, or over an existing one with `--replace --yes` (see `docs/data-lifecycle.md`).
 *
 * @example
 * ```ts
 * registerTenantData(program.command('tenants'), 'cli:ops');
 * ```
 */
export function registerTenantData(tenants: Command, actor: string): void {
  tenants
    .command('export <tenant>')
    .description('write a tenant’s rows and control-plane records (no credentials) to a tar of NDJSON files')
    .requiredOption('--out <file>', 'the archive to write (written under a temporary name, renamed when complete)')
    .option('--json', 'print the manifest as JSON')
    .action(async (ref: string, o: { out: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const partial = `${o.out}.partial`;
        try {
          const manifest = await t.exportTenant(ref, createWriteStream(partial));
          await rename(partial, o.out);
          if (o.json) {
            process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
            return;
          }
          process.stdout.write(`exported ${manifest.tenant.slug} (${manifest.tenant.tier}) to ${o.out}\n`);
          for (const f of manifest.files) {
            process.stdout.write(`  ${f.path.padEnd(32)} ${String(f.rows).padStart(9)} rows  sha256 ${f.sha256}\n`);
          }
        } catch (error) {
          await rm(partial, { force: true });
          throw error;
        }
      });
    });

  tenants
    .command('import <file>')
    .description('restore an export as a new tenant; the archive is verified in full before anything is written')
    .requiredOption('--slug <slug>', 'slug of the new tenant')
    .option('--name <name>', 'display name (default: the exported tenant’s)')
    .option('--tier <tier>', 'isolation tier: pool, schema or database (default: the exported tenant’s)')
    .option('--placement <name>', 'placement (default: shared, schemas or databases by tier)')
    .option('--migrations <module>', 'module exporting the tenant-table migrations (default: the reference server’s)')
    .option(
      '--replace',
      'restore over the existing tenant <slug>: import and verify first, then swap and erase the old one',
    )
    .option('--yes', 'confirm --replace (the old tenant, its users and keys are erased)')
    .option('--json', 'print the report as JSON')
    .action(async (file: string, o: ImportFlags) => {
      if (o.replace && !o.yes) throw new Error('--replace erases the existing tenant: add --yes to confirm');
      const migrations = await cliMigrations(o.migrations);
      await withTenantry(
        async (t) => {
          const report = await t.importTenant(createReadStream(file), {
            slug: o.slug,
            actor,
            ...(o.replace ? { replace: true } : {}),
            ...(o.name ? { name: o.name } : {}),
            ...(o.tier ? { tier: o.tier as IsolationTier } : {}),
            ...(o.placement ? { placement: o.placement } : {}),
          });
          if (o.json) {
            process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
            return;
          }
          process.stdout.write(`imported ${report.tenant.slug} (${report.tenant.id}, ${report.tenant.tier})\n`);
          if (report.replaced) process.stdout.write(`replaced and erased tenant ${report.replaced.tenantId}\n`);
          for (const table of report.tables) {
            process.stdout.write(
              `  ${table.table.padEnd(24)} ${String(table.rows).padStart(9)} rows  md5 ${table.checksum}\n`,
            );
          }
          process.stdout.write(`not imported (invite users and create keys again): ${report.notImported.join(', ')}\n`);
        },
        { migrations },
      );
    });
}

interface ImportFlags {
  slug: string;
  name?: string;
  tier?: string;
  placement?: string;
  migrations?: string;
  replace?: boolean;
  yes?: boolean;
  json?: boolean;
}
