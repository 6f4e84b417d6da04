import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { TenantryError } from '../../errors/catalog.ts';
import { USAGE_RANKINGS, type UsageRanking } from '../../ops/usage-service.ts';
import { withTenantry } from '../run.ts';

function ranking(value: string): UsageRanking {
  if (!(USAGE_RANKINGS as readonly string[]).includes(value)) {
    throw new TenantryError('INVALID_INPUT', `--by is one of ${USAGE_RANKINGS.join(', ')}`);
  }
  return value as UsageRanking;
}

function limitOf(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new TenantryError('INVALID_INPUT', '--limit is 1–1000');
  return n;
}

/** `tenantry tenants top`: the busiest tenants over a window (registered under `tenants`). */
export function registerTenantsTop(tenants: Command): void {
  tenants
    .command('top')
    .description('the busiest tenants over a window, summed across every instance')
    .option('--by <figure>', `rank by ${USAGE_RANKINGS.join('|')}`, 'time')
    .option('--window <window>', 'how far back, e.g. 15m, 1h, 7d (at most 7d)', '15m')
    .option('--limit <n>', 'how many tenants, 1–1000', '10')
    .option('--json', 'print JSON')
    .action(async (o: { by: string; window: string; limit: string; json?: boolean }) => {
      const by = ranking(o.by);
      const limit = limitOf(o.limit);
      await withTenantry(async (t) => {
        const top = await t.usage.top({ by, window: o.window, limit });
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ by, window: o.window, tenants: top }, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          `${['slug', 'tier', 'db time ms', 'transactions', 'statements', 'errors', 'requests', '5xx'].join('\t')}\n`,
        );
        for (const r of top) {
          process.stdout.write(
            `${[r.slug, r.tier, r.dbTimeMs.toFixed(1), r.transactions, r.statements, r.errors, r.requests, r.status5xx].join('\t')}\n`,
          );
        }
      });
    });
}

/** `tenantry usage export|snapshot`: metering rows for billing, tenant snapshots. */
export function registerUsage(program: Command): void {
  const usage = program.command('usage').description('per-tenant metering for billing, and tenant snapshots');

  usage
    .command('export')
    .description('a tenant’s daily metering rows (UTC days, inclusive) as CSV or JSON')
    .requiredOption('--tenant <id|slug>', 'the tenant')
    .requiredOption('--from <date>', 'first day, YYYY-MM-DD')
    .requiredOption('--to <date>', 'last day, YYYY-MM-DD')
    .option('--format <format>', 'csv or json', 'csv')
    .option('--out <file>', 'write to a file instead of stdout')
    .action(async (o: { tenant: string; from: string; to: string; format: string; out?: string }) => {
      if (o.format !== 'csv' && o.format !== 'json')
        throw new TenantryError('INVALID_INPUT', '--format is csv or json');
      await withTenantry(async (t) => {
        const tenant = await t.tenants.get(o.tenant);
        const days = await t.usage.daily(tenant.id, { from: o.from, to: o.to });
        const text =
          o.format === 'csv'
            ? t.usage.toCsv(days)
            : `${JSON.stringify({ tenantId: tenant.id, from: o.from, to: o.to, days }, null, 2)}\n`;
        if (o.out) await writeFile(o.out, text);
        else process.stdout.write(text);
      });
    });

  usage
    .command('snapshot')
    .description('measure tenants now: rows per table, storage, members (what serve does hourly)')
    .option('--tenant <id|slug>', 'only this tenant')
    .option('--json', 'print JSON')
    .action(async (o: { tenant?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        await t.usage.upkeep();
        const taken = await t.usage.snapshot(o.tenant ? { tenants: [o.tenant] } : {});
        if (o.json) {
          process.stdout.write(`${JSON.stringify(taken, null, 2)}\n`);
          return;
        }
        for (const s of taken) {
          const rows = Object.values(s.tableRows).reduce((a, b) => a + b, 0);
          process.stdout.write(
            `${s.tenantId}\t${s.tier}\t${rows} rows\t${s.storageBytes} bytes${s.storageExact ? '' : ' (estimated)'}\t${s.users} users\n`,
          );
        }
      });
    });
}
