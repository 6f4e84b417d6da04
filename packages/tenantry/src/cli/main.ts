#!/usr/bin/env node
import { Command } from 'commander';
import { registerDoctor } from './commands/doctor.ts';
import { registerKeys } from './commands/keys.ts';
import { registerMigrate } from './commands/migrate.ts';
import { registerServe } from './commands/serve.ts';
import { registerTenants } from './commands/tenants.ts';
import { reportError } from './run.ts';

const program = new Command()
  .name('tenantry')
  .description('Multi-tenancy for TypeScript backends on PostgreSQL')
  .showHelpAfterError();

registerServe(program);
registerMigrate(program);
registerTenants(program);
registerDoctor(program);
registerKeys(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  process.exitCode = reportError(error);
});
