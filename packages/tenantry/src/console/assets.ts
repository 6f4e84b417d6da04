import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

/** One static file of the console, read once at start. */
export interface ConsoleAsset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

const require = createRequire(import.meta.url);
const own = (name: string) => new URL(`./assets/${name}`, import.meta.url);

// The files the console serves under /console/assets/: htmx and uPlot from their packages
// (dependencies of this one, so `npm ci` puts them in place and no build step copies them),
// the console's own script and style from `assets/` beside this module (the build copies
// that folder next to the compiled files).
const SOURCES: Readonly<Record<string, { path: () => string | URL; type: string }>> = {
  'htmx.min.js': { path: () => require.resolve('htmx.org/dist/htmx.min.js'), type: 'text/javascript' },
  'uPlot.iife.min.js': { path: () => require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript' },
  'uPlot.min.css': { path: () => require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css' },
  'console.js': { path: () => own('console.js'), type: 'text/javascript' },
  'console.css': { path: () => own('console.css'), type: 'text/css' },
};

/**
 * Reads every console asset into memory (a few hundred KiB) with its ETag. They reveal no
 * data (library code and style), so they are served without a session, and the sign-in
 * page can use them; every other console route needs one.
 *
 * @example
 * ```ts
 * const assets = await loadConsoleAssets();
 * const htmx = assets.get('htmx.min.js');
 * ```
 */
export async function loadConsoleAssets(): Promise<ReadonlyMap<string, ConsoleAsset>> {
  const entries = await Promise.all(
    Object.entries(SOURCES).map(async ([name, source]) => {
      const body = await readFile(source.path());
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
      return [name, { body, type: `${source.type}; charset=utf-8`, etag }] as const;
    }),
  );
  return new Map(entries);
}
