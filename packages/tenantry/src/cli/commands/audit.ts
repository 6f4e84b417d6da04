import type { Command } from 'commander';
import type { AuditChainReport } from '../../effects/audit-log.ts';
import { TenantryError } from '../../errors/catalog.ts';
import { withTenantry } from '../run.ts';

function chainName(chain: AuditChainReport): string {
  return chain.tenantId === null ? '(no tenant)' : (chain.slug ?? chain.tenantId);
}

function positiveInteger(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new TenantryError('INVALID_INPUT', `${name} is a whole number ≥ 1`);
  return n;
}

/** `tenantry audit list|verify|prune`: read, check and trim the hash-chained audit log. */
export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('read, verify and trim the audit log');

  audit
    .command('list <tenant>')
    .description('a tenant’s entries, newest first')
    .option('--actor <actor>', 'only this actor, e.g. user:<id>')
    .option('--action <action>', 'only this action, e.g. item.created')
    .option('--since <iso>', 'entries at or after this time')
    .option('--until <iso>', 'entries before this time')
    .option('--limit <n>', 'page size, 1–200', '50')
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .option('--json', 'print JSON')
    .action(
      async (
        ref: string,
        o: {
          actor?: string;
          action?: string;
          since?: string;
          until?: string;
          limit: string;
          cursor?: string;
          json?: boolean;
        },
      ) => {
        await withTenantry(async (t) => {
          const tenant = await t.tenants.get(ref);
          const page = await t.audit.list(tenant.id, { ...o, limit: positiveInteger(o.limit, '--limit') });
          if (o.json) {
            process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
            return;
          }
          for (const e of page.entries) {
            const target = e.target ? ` ${e.target}` : '';
            process.stdout.write(
              `${e.at}  #${e.seq}  ${e.actor}  ${e.action}${target}  ${JSON.stringify(e.metadata)}\n`,
            );
          }
          if (page.nextCursor) process.stdout.write(`next page: --cursor ${page.nextCursor}\n`);
        });
      },
    );

  audit
    .command('verify')
    .description('recompute the hash chains; exit 1 and name the first bad entry if any was changed')
    .option('--tenant <tenant>', 'only this tenant’s chain (id or slug)')
    .option('--json', 'print JSON')
    .action(async (o: { tenant?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const tenantId = o.tenant ? (await t.tenants.get(o.tenant)).id : undefined;
        const report = await t.audit.verify(tenantId ? { tenantId } : {});
        if (!report.ok) process.exitCode = 1;
        if (o.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        for (const chain of report.chains) {
          const bad = chain.firstBad;
          process.stdout.write(
            bad
              ? `BROKEN ${chainName(chain)}: entry #${bad.seq}${bad.id ? ` (id ${bad.id})` : ''} ${bad.problem}\n`
              : `ok     ${chainName(chain)}: ${chain.entries} entries\n`,
          );
        }
        const broken = report.chains.filter((c) => !c.ok).length;
        process.stdout.write(`${report.chains.length} chains, ${broken} broken\n`);
      });
    });

  audit
    .command('prune')
    .description('remove the months older than the retention (whole partitions); chains stay verifiable')
    .requiredOption('--months <n>', 'months to keep before the current one')
    .option('--detach', 'keep each removed month as a table audit_archive_YYYY_MM, to dump, instead of dropping it')
    .action(async (o: { months: string; detach?: boolean }) => {
      await withTenantry(async (t) => {
        const removed = await t.audit.partitions.retain({
          months: positiveInteger(o.months, '--months'),
          mode: o.detach ? 'detach' : 'drop',
        });
        process.stdout.write(removed.length ? `${removed.join('\n')}\n` : 'nothing older than the retention\n');
      });
    });
}
