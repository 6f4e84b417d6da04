import { readFileSync } from 'node:fs';

/** The parts of a V8 `.cpuprofile` (written by `node --cpu-prof`) this summary reads. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
}

/** Microseconds of CPU, by name. */
export type Costs = ReadonlyArray<readonly [name: string, us: number]>;

export interface ProfileSummary {
  /** Sampled time in all, µs (idle excluded). */
  readonly busyUs: number;
  readonly idleUs: number;
  /**
   * Self time by where the code lives: a package of node_modules, a file of Tenantry's src,
   * a Node core module, GC. Native frames (V8 builtins such as JSON.stringify, crypto
   * bindings) are charged to the nearest JavaScript caller that has a file.
   */
  readonly byPlace: Costs;
  /** Inclusive time of functions defined in `packages/tenantry/src` (each sample counted once per function). */
  readonly tenantryInclusive: Costs;
  /** Self time by function, natives charged to their caller as above. */
  readonly topSelf: Costs;
}

/** Where a script lives, short: `node:http`, `kysely`, `tenantry/transaction/tenant-transaction.ts`, `bench/http/probes.ts`. */
function place(url: string): string {
  return file(url, false);
}

/** The script itself, short: like {@link place} but with the file inside a package or Node module. */
function file(url: string, detailed = true): string {
  if (url.startsWith('node:')) {
    const name = url.replace(/^node:(internal\/)?/, '');
    return `node:${detailed ? name : name.split('/')[0]}`;
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    const scoped = (parts[0] ?? '').startsWith('@');
    const pkg = scoped ? `${parts[0]}/${parts[1]}` : (parts[0] ?? url);
    const rest = parts.slice(scoped ? 2 : 1).join('/');
    return detailed ? `${pkg}/${rest}` : pkg;
  }
  const src = url.indexOf('/packages/tenantry/src/');
  if (src >= 0) return `tenantry/${url.slice(src + '/packages/tenantry/src/'.length)}`;
  const bench = url.indexOf('/bench/');
  if (bench >= 0) return `bench/${url.slice(bench + '/bench/'.length)}`;
  return url;
}

function top(map: Map<string, number>, n: number): Costs {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, n);
}

/** Reads a `.cpuprofile` and sums where the CPU went. */
export function summarizeProfile(path: string, options: { top?: number } = {}): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const n = options.top ?? 25;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  // The frame a sample is charged to: itself if it has a file (or is GC/program/idle), else its nearest caller that has one.
  const chargedTo = new Map<number, { place: string; fn: string }>();
  const charge = (id: number): { place: string; fn: string } => {
    const cached = chargedTo.get(id);
    if (cached) return cached;
    const node = byId.get(id);
    let result: { place: string; fn: string };
    if (!node) result = { place: '(unknown)', fn: '(unknown)' };
    else {
      const { functionName, url, lineNumber } = node.callFrame;
      if (url) {
        result = { place: place(url), fn: `${functionName || '(anonymous)'} ${file(url)}:${lineNumber + 1}` };
      } else if (/^\((garbage collector|program|idle|root)\)$/.test(functionName) || !parent.has(id)) {
        result = { place: functionName || '(native)', fn: functionName || '(native)' };
      } else {
        result = charge(parent.get(id) as number);
      }
    }
    chargedTo.set(id, result);
    return result;
  };

  const byPlace = new Map<string, number>();
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busyUs = 0;
  let idleUs = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    // A sample lasts until the next one.
    const us = timeDeltas[i + 1] ?? 0;
    const id = samples[i] as number;
    const target = charge(id);
    if (target.place === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    byPlace.set(target.place, (byPlace.get(target.place) ?? 0) + us);
    self.set(target.fn, (self.get(target.fn) ?? 0) + us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame?.url.includes('/packages/tenantry/src/')) continue;
      const key = `${frame.functionName || '(anonymous)'} ${file(frame.url)}:${frame.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
  return { busyUs, idleUs, byPlace: top(byPlace, n), tenantryInclusive: top(inclusive, n), topSelf: top(self, n) };
}

// `node bench/http/profile.ts <file.cpuprofile>`: the summary of a saved profile, as JSON.
if (import.meta.main) {
  const [target] = process.argv.slice(2);
  if (!target) throw new Error('usage: node bench/http/profile.ts <file.cpuprofile>');
  process.stdout.write(`${JSON.stringify(summarizeProfile(target, { top: 40 }), null, 2)}\n`);
}
