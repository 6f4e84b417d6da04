import type { Command } from 'commander';
import { itemsMigrations } from '../../example/items.ts';
import { createServer } from '../../http/server.ts';
import { Tenantry } from '../../tenantry.ts';
import { resolveEnvironment } from '../environment.ts';
import { loadMigrations, note } from '../run.ts';

/** `tenantry serve`: roles, control-plane migrations, then the HTTP server until SIGINT/SIGTERM. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the reference server (embedded PostgreSQL when DATABASE_URL is unset)')
    .option('-p, --port <port>', 'port to listen on (env PORT)', process.env.PORT ?? '3000')
    .option('--host <host>', 'interface to bind', process.env.HOST ?? '127.0.0.1')
    .option('--migrations <module>', 'module exporting the tenant-table migrations to apply')
    .action(async (opts: { port: string; host: string; migrations?: string }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${opts.port}`);
      const env = await resolveEnvironment();
      for (const line of env.notes) note(line);
      const tenantry = await Tenantry.connect({
        databaseUrl: env.databaseUrl,
        secret: env.secret,
        roles: env.roles,
        // The example application's tables, then the caller's own.
        migrations: [...itemsMigrations, ...(await loadMigrations(opts.migrations))],
      });
      await tenantry.setup();
      await tenantry.migrate();
      const adminToken = process.env.TENANTRY_ADMIN_TOKEN;
      if (!adminToken) note('TENANTRY_ADMIN_TOKEN is unset: the control plane (/v1/tenants…) answers 401');
      const app = await createServer(tenantry, { ...(adminToken ? { adminToken } : {}) });
      const address = await app.listen({ port, host: opts.host });
      process.stdout.write(`Tenantry is serving on ${address} (try ${address}/health)\n`);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        note(`${signal}: shutting down`);
        await app.close();
        await tenantry.close();
        await env.embedded?.stop();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
    });
}
