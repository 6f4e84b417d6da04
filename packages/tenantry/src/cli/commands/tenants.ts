import type { Command } from 'commander';
import type { CreateTenantInput } from '../../control/tenant-input.ts';
import type { TenantRecord } from '../../control/tenant-record.ts';
import { cliMigrations, withTenantry } from '../run.ts';
import { registerTenantData } from './tenant-data.ts';
import { registerTenantsTop } from './usage.ts';

function print(tenant: TenantRecord, json: boolean | undefined): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(tenant, null, 2)}\n`);
    return;
  }
  const l = tenant.limits;
  process.stdout.write(
    `${[
      `id:       ${tenant.id}`,
      `slug:     ${tenant.slug}`,
      `name:     ${tenant.name}`,
      `status:   ${tenant.status}`,
      `tier:     ${tenant.tier}${tenant.schemaName ? ` (schema ${tenant.schemaName})` : ''}${tenant.databaseName ? ` (database ${tenant.databaseName})` : ''}${tenant.frozen ? ', frozen for a move' : ''}`,
      `plan:     ${tenant.plan}`,
      `limits:   users ${l.maxUsers ?? '∞'}, storage ${l.maxStorageMb ?? '∞'} MB, statement timeout ${l.statementTimeoutMs} ms`,
      `features: ${JSON.stringify(tenant.features)}`,
      `created:  ${tenant.createdAt.toISOString()}`,
    ].join('\n')}\n`,
  );
}

function parseJsonOption<T>(value: string | undefined, name: string): T | undefined {
  if (value === undefined) return undefined;
  try {
    // Shape and types are validated by the registry, with coded errors.
    return JSON.parse(value) as T;
  } catch {
    throw new Error(`--${name} must be a JSON object`);
  }
}

/** `tenantry tenants create|list|show|suspend|resume|move|delete|export|import`. */
export function registerTenants(program: Command): void {
  const tenants = program.command('tenants').description('create, inspect and change the lifecycle of tenants');
  const actor = `cli:${process.env.USER ?? 'operator'}`;

  tenants
    .command('create <slug>')
    .description('provision a tenant')
    .option('--name <name>', 'display name (default: the slug)')
    .option('--plan <plan>', 'plan name', 'free')
    .option('--tier <tier>', 'isolation tier: pool, schema or database', 'pool')
    .option('--placement <name>', 'placement (default: shared, schemas or databases by tier)')
    .option(
      '--migrations <module>',
      'module exporting the tenant-table migrations (default: the reference server’s); new schemas and databases start at its head',
    )
    .option('--features <json>', 'feature flags, a JSON object')
    .option('--limits <json>', 'limits, e.g. {"maxUsers":10,"statementTimeoutMs":5000}')
    .option('--json', 'print JSON')
    .action(
      async (
        slug: string,
        o: {
          name?: string;
          plan: string;
          tier: string;
          placement?: string;
          migrations?: string;
          features?: string;
          limits?: string;
          json?: boolean;
        },
      ) => {
        await withTenantry(
          async (t) => {
            const tenant = await t.tenants.create(
              {
                slug,
                name: o.name ?? slug,
                plan: o.plan,
                tier: o.tier as 'pool',
                ...(o.placement ? { placement: o.placement } : {}),
                ...(o.features
                  ? { features: parseJsonOption<CreateTenantInput['features']>(o.features, 'features') }
                  : {}),
                ...(o.limits ? { limits: parseJsonOption<CreateTenantInput['limits']>(o.limits, 'limits') } : {}),
              },
              { actor },
            );
            print(tenant, o.json);
          },
          { migrations: await cliMigrations(o.migrations) },
        );
      },
    );

  tenants
    .command('list')
    .description('list tenants')
    .option('--status <status>', 'only tenants in this status')
    .option('--limit <n>', 'page size', '50')
    .option('--cursor <cursor>', 'page cursor from a previous listing')
    .option('--json', 'print JSON')
    .action(async (o: { status?: string; limit: string; cursor?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const page = await t.tenants.list({
          limit: Number(o.limit),
          ...(o.cursor ? { cursor: o.cursor } : {}),
          ...(o.status ? { status: o.status as TenantRecord['status'] } : {}),
        });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
          return;
        }
        for (const x of page.tenants) {
          process.stdout.write(`${x.id}  ${x.slug.padEnd(24)} ${x.status.padEnd(11)} ${x.tier.padEnd(8)} ${x.plan}\n`);
        }
        if (page.nextCursor) process.stdout.write(`more: --cursor ${page.nextCursor}\n`);
      });
    });

  tenants
    .command('show <tenant>')
    .description('show one tenant (id or slug)')
    .option('--json', 'print JSON')
    .action(async (ref: string, o: { json?: boolean }) => {
      await withTenantry(async (t) => print(await t.tenants.get(ref), o.json));
    });

  for (const [verb, what] of [
    ['suspend', 'refuse tenant work until resumed'],
    ['resume', 'allow tenant work again'],
  ] as const) {
    tenants
      .command(`${verb} <tenant>`)
      .description(what)
      .option('--json', 'print JSON')
      .action(async (ref: string, o: { json?: boolean }) => {
        await withTenantry(async (t) => print(await t.tenants[verb](ref, { actor }), o.json));
      });
  }

  tenants
    .command('move <tenant>')
    .description('move a tenant to another tier or placement (copy, verify, switch, remove the old copy)')
    .requiredOption(
      '--to <where>',
      'destination tier: pool, schema or database; on a Citus cluster, dedicated-shard or node (with --node)',
    )
    .option('--placement <name>', 'destination placement (default: shared, schemas or databases by tier)')
    .option('--node <host:port>', 'with --to node: the Citus node to move the tenant’s shards to')
    .option('--migrations <module>', 'module exporting the tenant-table migrations (default: the reference server’s)')
    .option('--json', 'print the report as JSON')
    .action(
      async (
        ref: string,
        o: { to: string; placement?: string; node?: string; migrations?: string; json?: boolean },
      ) => {
        const migrations = await cliMigrations(o.migrations);
        await withTenantry(
          async (t) => {
            if (o.to === 'dedicated-shard' || o.to === 'node') {
              const report = await t.moveTenantShard(ref, { to: o.to, actor, ...(o.node ? { node: o.node } : {}) });
              if (o.json) {
                process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
                return;
              }
              process.stdout.write(
                `moved ${ref}: shard ${report.from.shardId} on ${report.from.node} → shard ${report.to.shardId} on ${report.to.node}` +
                  `${report.to.dedicated ? ' (dedicated)' : ''} in ${report.durationMs} ms (writes refused for ${report.frozenMs} ms)\n`,
              );
              for (const table of report.tables) {
                process.stdout.write(
                  `  ${table.table.padEnd(24)} ${String(table.rows).padStart(9)} rows  md5 ${table.checksum}\n`,
                );
              }
              return;
            }
            const report = await t.moveTenant(ref, {
              to: o.to as 'pool',
              actor,
              ...(o.placement ? { placement: o.placement } : {}),
            });
            if (o.json) {
              process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
              return;
            }
            process.stdout.write(
              `moved ${ref}: ${report.from.tier}/${report.from.placement} → ${report.to.tier}/${report.to.placement} ` +
                `in ${report.durationMs} ms (read-only for ${report.frozenMs} ms)\n`,
            );
            for (const table of report.tables) {
              process.stdout.write(
                `  ${table.table.padEnd(24)} ${String(table.rows).padStart(9)} rows  md5 ${table.checksum}\n`,
              );
            }
          },
          { migrations },
        );
      },
    );

  tenants
    .command('delete <tenant>')
    .description(
      'soft-delete a tenant; with --hard, erase it: rows in every tier, keys, memberships, sessions, accounts of no other tenant, then verify and audit',
    )
    .option('--hard', 'erase the tenant and its record, verify nothing is left (irreversible)')
    .option('--yes', 'confirm a hard delete')
    .option('--json', 'print the erasure report as JSON')
    .action(async (ref: string, o: { hard?: boolean; yes?: boolean; json?: boolean }) => {
      if (o.hard && !o.yes) throw new Error('a hard delete cannot be undone: add --yes to confirm');
      await withTenantry(async (t) => {
        if (!o.hard) {
          const tenant = await t.tenants.delete(ref, { actor });
          process.stdout.write(`deleted ${tenant.slug} (${tenant.id})\n`);
          return;
        }
        const report = await t.eraseTenant(ref, { actor });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        process.stdout.write(`erased ${report.tenantId}; verification (rows left per table):\n`);
        for (const [table, n] of Object.entries(report.verification.rows)) {
          process.stdout.write(`  ${table.padEnd(40)} ${n}\n`);
        }
      });
    });

  registerTenantData(tenants, actor);
  registerTenantsTop(tenants);
}
