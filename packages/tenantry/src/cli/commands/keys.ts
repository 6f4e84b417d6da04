import type { Command } from 'commander';
import type { CreateApiKeyInput } from '../../auth/api-key-record.ts';
import { withTenantry } from '../run.ts';

/** `tenantry keys create|list|revoke`: a tenant's API keys. */
export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('create, list and revoke a tenant’s API keys');
  const actor = `cli:${process.env.USER ?? 'operator'}`;

  keys
    .command('create <tenant>')
    .description('create an API key; it is printed once and never stored')
    .requiredOption('--name <name>', 'what the key is for')
    .option('--env <environment>', 'live, test or dev', 'live')
    .option('--scopes <scopes>', 'comma-separated permissions, e.g. items:read,items:write', '')
    .option('--expires <iso>', 'expiry, ISO 8601')
    .option('--json', 'print JSON')
    .action(async (ref: string, o: { name: string; env: string; scopes: string; expires?: string; json?: boolean }) => {
      await withTenantry(async (t) => {
        const tenant = await t.tenants.get(ref);
        const input: CreateApiKeyInput = {
          name: o.name,
          environment: o.env as CreateApiKeyInput['environment'],
          scopes: o.scopes ? o.scopes.split(',').map((s) => s.trim()) : [],
          ...(o.expires ? { expiresAt: o.expires } : {}),
        };
        const { key, record } = await t.apiKeys.create(tenant.id, input, { actor });
        if (o.json) process.stdout.write(`${JSON.stringify({ key, apiKey: record }, null, 2)}\n`);
        else process.stdout.write(`${key}\n(id ${record.id}; shown once: store it now)\n`);
      });
    });

  keys
    .command('list <tenant>')
    .description('list a tenant’s keys (never the keys themselves)')
    .option('--json', 'print JSON')
    .action(async (ref: string, o: { json?: boolean }) => {
      await withTenantry(async (t) => {
        const list = await t.apiKeys.list((await t.tenants.get(ref)).id);
        if (o.json) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        for (const k of list) {
          const state = k.revokedAt ? 'revoked' : k.expiresAt && k.expiresAt < new Date() ? 'expired' : 'active';
          process.stdout.write(`${k.id}  ${k.displayPrefix}…  ${state.padEnd(8)} ${k.name}  [${k.scopes.join(',')}]\n`);
        }
      });
    });

  keys
    .command('revoke <tenant> <keyId>')
    .description('revoke a key: every instance refuses it within a second')
    .action(async (ref: string, keyId: string) => {
      await withTenantry(async (t) => {
        const k = await t.apiKeys.revoke((await t.tenants.get(ref)).id, keyId, { actor });
        process.stdout.write(`revoked ${k.displayPrefix}… (${k.id})\n`);
      });
    });
}
