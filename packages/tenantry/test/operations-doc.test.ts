import { readdirSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { createProgram } from '../src/cli/program.ts';

// docs/operations.md is where operators look up the CLI and the environment; it once lacked
// `migrate --plan` and called live variables "planned". These tests hold it to the CLI itself.

const doc = readFileSync(new URL('../../../docs/operations.md', import.meta.url), 'utf8');
const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const synopsis = (/## CLI\n+```\n([\s\S]*?)```/.exec(doc)?.[1] ?? '')
  .split('\n')
  .filter((l) => l.startsWith('tenantry '));
const environment = doc.split('\n## ')[1] ?? '';

/** Every command without subcommands, with the names leading to it (`['tenants', 'create']`). */
function leaves(command: Command, path: string[] = []): { path: string[]; command: Command }[] {
  if (command.commands.length === 0) return [{ path, command }];
  return command.commands.flatMap((c) => leaves(c, [...path, c.name()]));
}

const commands = leaves(createProgram());

describe('docs/operations.md', () => {
  it.each(commands.map((c) => [c.path.join(' '), c.command] as const))(
    'tenantry %s: every option is in the synopsis',
    (_, command) => {
      const path = commands.find((c) => c.command === command)?.path ?? [];
      // `tenantry tenants suspend|resume <id|slug>` stands for both commands.
      const lines = synopsis.filter((line) =>
        path.every((name, n) => (line.split(' ')[n + 1] ?? '').split('|').includes(name)),
      );
      expect(lines, `no synopsis line for tenantry ${path.join(' ')}`).not.toEqual([]);
      const documented = lines.join(' ');
      const missing = command.options
        .map((o) => o.long ?? '')
        .filter((flag) => !new RegExp(`${flag}(?![\\w-])`).test(documented));
      expect(missing).toEqual([]);
    },
  );

  it('documents every environment variable the CLI reads, none of them as "planned"', () => {
    const dir = new URL('../src/cli/', import.meta.url);
    const sources = readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(new URL(f, dir), 'utf8'))
      .join('\n');
    const read = new Set([...sources.matchAll(/\benv\.([A-Z][A-Z0-9_]+)/g)].map((m) => m[1] as string));
    expect(read.size).toBeGreaterThan(5);
    expect([...read].filter((name) => !environment.includes(`\`${name}\``))).toEqual([]);
    expect(environment).not.toMatch(/planned/i);
  });
});

describe('README', () => {
  it('says where the port comes from, how npm start stops, and what EBADENGINE warnings mean', () => {
    expect(readme).toMatch(/`npm start` listens on `PORT`/);
    expect(readme).toMatch(/SIGTERM/);
    expect(readme).toContain('EBADENGINE');
  });
});

describe('README dependencies', () => {
  it('says why each runtime dependency and each optional peer is there', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
    };
    const section = readme.slice(readme.indexOf('## Runtime dependencies'), readme.indexOf('## Repository'));
    const names = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.peerDependencies)];
    expect(names.filter((name) => !section.includes(`\`${name}\``))).toEqual([]);
  });
});
