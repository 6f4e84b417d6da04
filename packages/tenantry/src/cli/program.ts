import { Command } from 'commander';
import { registerAudit } from './commands/audit.ts';
import { registerDb } from './commands/db.ts';
import { registerDoctor } from './commands/doctor.ts';
import { registerJobs } from './commands/jobs.ts';
import { registerKeys } from './commands/keys.ts';
import { registerMigrate } from './commands/migrate.ts';
import { registerRetrofit } from './commands/retrofit.ts';
import { registerServe } from './commands/serve.ts';
import { registerTenants } from './commands/tenants.ts';
import { registerUsage } from './commands/usage.ts';
import { registerWebhooks } from './commands/webhooks.ts';

/** The `tenantry` command line, every command registered, not yet parsed. */
export function createProgram(): Command {
  const program = new Command()
    .name('tenantry')
    .description('Multi-tenancy for TypeScript backends on PostgreSQL')
    .showHelpAfterError();
  registerServe(program);
  registerMigrate(program);
  registerTenants(program);
  registerDoctor(program);
  registerKeys(program);
  registerRetrofit(program);
  registerAudit(program);
  registerDb(program);
  registerWebhooks(program);
  registerUsage(program);
  registerJobs(program);
  return program;
}
