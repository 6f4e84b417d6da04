import { PassThrough, Readable, type Writable } from 'node:stream';
import tar from 'tar-stream';
import type { ExportManifest } from '../packages/tenantry/src/index.ts';

/** An export of `ref` held in memory: its manifest and the archive's bytes. */
export async function exportOf(
  tenantry: { exportTenant(ref: string, out: Writable): Promise<ExportManifest> },
  ref: string,
): Promise<{ manifest: ExportManifest; archive: Buffer }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const manifest = await tenantry.exportTenant(ref, out);
  return { manifest, archive: Buffer.concat(chunks) };
}

/** The archive's files by name, as text. */
export async function filesOf(archive: Buffer): Promise<Map<string, string>> {
  const extract = tar.extract();
  Readable.from([archive]).pipe(extract);
  const files = new Map<string, string>();
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    files.set(entry.header.name, Buffer.concat(chunks).toString('utf8'));
  }
  return files;
}

/** The rows of an NDJSON file. */
export const rowsOf = (text: string | undefined) =>
  (text ?? '')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Tenant table → [rows, checksum], what an import must reproduce. */
export const tenantTables = (m: ExportManifest) =>
  Object.fromEntries(m.files.filter((x) => x.kind === 'tenant').map((x) => [x.table, [x.rows, x.checksum]]));
