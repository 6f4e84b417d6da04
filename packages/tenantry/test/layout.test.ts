import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layout of `src/` is the architecture (docs/architecture.md): one folder per step of
 * the request path and per concern, and folders that depend on each other in one direction
 * only. This test fails on a folder-level import cycle, naming the files that close it.
 */
const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** A top-level folder of `src/`, or a file directly in it. */
function unitOf(file: string): string {
  const [first = ''] = relative(SRC, file).split('/');
  return first;
}

/** Unit (folder, or file) → unit → the import lines that make the edge. */
function importGraph(unit: (file: string) => string): Map<string, Map<string, string[]>> {
  const graph = new Map<string, Map<string, string[]>>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gm)) {
      const target = resolve(dirname(file), match[1] as string);
      const from = unit(file);
      const to = unit(target);
      if (from === to) continue;
      const edges = graph.get(from) ?? new Map<string, string[]>();
      graph.set(from, edges);
      const why = edges.get(to) ?? [];
      why.push(`${relative(SRC, file)} imports ${relative(SRC, target)}`);
      edges.set(to, why);
    }
  }
  return graph;
}

/** Strongly connected components with more than one member (Tarjan). */
function cycles(graph: Map<string, Map<string, string[]>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('source layout', () => {
  it.each([
    ['folders', unitOf],
    ['files', (file: string) => relative(SRC, file)],
  ])('has no import cycle between %s', (_what, unit) => {
    const graph = importGraph(unit);
    const explained = cycles(graph).map((component) =>
      component.flatMap((from) =>
        component.flatMap((to) => graph.get(from)?.get(to) ?? []).map((line) => `${from}: ${line}`),
      ),
    );
    expect(explained).toEqual([]);
  });

  it('finds a cycle when there is one (the check itself works)', () => {
    const graph = new Map([
      ['a', new Map([['b', ['a/x.ts imports b/y.ts']]])],
      ['b', new Map([['c', ['b/y.ts imports c/z.ts']]])],
      ['c', new Map([['a', ['c/z.ts imports a/x.ts']]])],
      ['d', new Map([['a', ['d/w.ts imports a/x.ts']]])],
    ]);
    expect(cycles(graph)).toEqual([['a', 'b', 'c']]);
  });

  it('keeps the request path in its folders, in order', () => {
    const folders = new Set(
      readdirSync(SRC, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name),
    );
    for (const step of ['identify', 'auth', 'admit', 'context', 'transaction', 'effects', 'http']) {
      expect(folders, `src/${step}/`).toContain(step);
    }
  });
});
