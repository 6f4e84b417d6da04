import type { Command } from 'commander';
import { WebhookDeliverer } from '../../effects/webhook-deliverer.ts';
import { withTenantry } from '../run.ts';

/** `tenantry webhooks dead-letters|replay`: what could not be delivered, and sending it again. */
export function registerWebhooks(program: Command): void {
  const webhooks = program.command('webhooks').description('webhook dead letters and replays');

  webhooks
    .command('dead-letters <tenant> <endpoint>')
    .description('events a tenant’s endpoint could not receive after every attempt, newest first')
    .option('--json', 'print JSON')
    .action(async (ref: string, endpoint: string, o: { json?: boolean }) => {
      await withTenantry(async (t) => {
        const tenant = await t.tenants.get(ref);
        const letters = await t.webhooks.deadLetters(tenant.id, endpoint, 200);
        if (o.json) {
          process.stdout.write(`${JSON.stringify(letters, null, 2)}\n`);
          return;
        }
        for (const d of letters) {
          process.stdout.write(
            `${d.deadAt.toISOString()}  event ${d.eventId}  ${d.eventType}  ${d.attempts} attempts  ${d.lastError ?? ''}\n`,
          );
        }
        if (letters.length === 0) process.stdout.write('no dead letters\n');
      });
    });

  webhooks
    .command('replay <tenant> <endpoint> <eventId>')
    .description(
      'send a dead letter again (same body and webhook-id, new signature, the usual retries); exits 0 once delivered, 1 if it failed again',
    )
    .option(
      '--allow-private-addresses',
      'allow endpoints on loopback, link-local and private addresses (as the server option)',
    )
    .action(async (ref: string, endpoint: string, eventId: string, o: { allowPrivateAddresses?: boolean }) => {
      const delivered = await withTenantry(async (t) => {
        const tenant = await t.tenants.get(ref);
        const deliverer = new WebhookDeliverer(t.webhooks, { allowPrivateAddresses: o.allowPrivateAddresses ?? false });
        return deliverer.replay(tenant.id, endpoint, eventId);
      });
      process.stdout.write(delivered ? 'delivered; dead letter removed\n' : 'failed again; still a dead letter\n');
      if (!delivered) process.exitCode = 1;
    });
}
