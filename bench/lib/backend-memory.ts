import { readFile } from 'node:fs/promises';

/**
 * Anonymous (private) memory of a PostgreSQL backend in MiB, from `/proc/<pid>/status`: where
 * its relation, catalog and plan caches live. NaN when PostgreSQL runs on another machine.
 */
export async function rssAnonMiB(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^RssAnon:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : Number.NaN;
  } catch {
    return Number.NaN; // PostgreSQL on another machine
  }
}
