// Generates the Prisma client of the test application (test-support/prisma/schema.prisma)
// into test-support/prisma/generated, which is not checked in. Prisma 7's client needs no
// engine binary (the query compiler is WebAssembly), but its CLI insists on finding the
// migration engine before any command, and downloads it when missing: where that download
// cannot happen, the CLI is pointed at a file that exists. `prisma generate` never runs it.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const schema = join(root, 'test-support/prisma/schema.prisma');
const client = join(root, 'test-support/prisma/generated/client.ts');

const fresh = existsSync(client) && statSync(client).mtimeMs >= statSync(schema).mtimeMs;
if (!fresh || process.argv.includes('--force')) {
  const env = { ...process.env };
  env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath;
  env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
  execFileSync(process.execPath, [join(root, 'node_modules/prisma/build/index.js'), 'generate', '--schema', schema], {
    cwd: root,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
