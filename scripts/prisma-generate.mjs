// Generates the Prisma clients of this repository, which are not checked in: the test
// application's (test-support/prisma/schema.prisma → test-support/prisma/generated) and the
// prisma-express example's (examples/prisma-express/prisma/schema.prisma → …/generated).
// Prisma 7's client needs no engine binary (the query compiler is WebAssembly), but its CLI
// insists on finding the migration engine before any command, and downloads it when missing:
// where that download cannot happen, the CLI is pointed at a file that exists. `prisma
// generate` never runs it. Pass schema paths (relative to the root) to generate only those.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCHEMAS = ['test-support/prisma/schema.prisma', 'examples/prisma-express/prisma/schema.prisma'];
const named = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));

for (const relative of named.length > 0 ? named : SCHEMAS) {
  const schema = join(root, relative);
  const client = join(dirname(schema), 'generated/client.ts');
  const fresh = existsSync(client) && statSync(client).mtimeMs >= statSync(schema).mtimeMs;
  if (fresh && !process.argv.includes('--force')) continue;
  const env = { ...process.env };
  env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath;
  env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
  execFileSync(process.execPath, [join(root, 'node_modules/prisma/build/index.js'), 'generate', '--schema', schema], {
    cwd: root,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
