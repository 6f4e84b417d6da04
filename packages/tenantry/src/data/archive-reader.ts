import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { isTenantryError, TenantryError } from '../errors/catalog.ts';
import { type ExportManifest, MANIFEST_MAX_BYTES, MANIFEST_NAME, parseManifest } from './archive-format.ts';
import { SpoolFile } from './spool-file.ts';

const NEWLINE = 0x0a;

/**
 * Reads an export archive from `input` into `dir` and checks it completely before anyone
 * writes a row: `manifest.json` first and valid, every entry a file the manifest lists,
 * every listed file present, and each file's size, SHA-256 and line count equal to the
 * manifest's. Files are spooled to disk as they arrive, so memory stays flat.
 *
 * Throws `EXPORT_INVALID` (not an export, or an unreadable manifest), `EXPORT_TRUNCATED`
 * (the archive ends early) or `EXPORT_CHECKSUM_MISMATCH` (a file differs from the manifest).
 *
 * @example
 * ```ts
 * const manifest = await readArchive(createReadStream('acme.tar'), spoolDir);
 * ```
 */
export async function readArchive(input: Readable, dir: string): Promise<ExportManifest> {
  await mkdir(join(dir, 'tables'), { recursive: true });
  await mkdir(join(dir, 'control'), { recursive: true });
  const extract = tar.extract();
  const piping = pipeline(input, extract);
  piping.catch(() => {}); // awaited below; an early throw must not leave it unhandled
  let manifest: ExportManifest | undefined;
  const seen = new Map<string, { bytes: number; sha256: string; lines: number }>();
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      if (manifest === undefined) {
        if (name !== MANIFEST_NAME)
          throw new TenantryError('EXPORT_INVALID', 'the archive does not start with manifest.json');
        manifest = await readManifest(entry);
        continue;
      }
      const listed = manifest.files.find((f) => f.path === name);
      if (!listed || seen.has(name) || entry.header.type !== 'file') {
        throw new TenantryError(
          'EXPORT_INVALID',
          `the archive holds ${JSON.stringify(name)}, which its manifest does not list`,
        );
      }
      const file = new SpoolFile(join(dir, name));
      let lines = 0;
      try {
        for await (const chunk of entry) {
          const buffer = chunk as Buffer;
          for (let i = buffer.indexOf(NEWLINE); i !== -1; i = buffer.indexOf(NEWLINE, i + 1)) lines++;
          await file.write(buffer);
        }
      } catch (error) {
        file.abort();
        throw error;
      }
      const done = await file.close();
      seen.set(name, { ...done, lines });
    }
    await piping;
  } catch (error) {
    if (isTenantryError(error)) throw error;
    const message = error instanceof Error ? error.message : String(error);
    if (/unexpected end/i.test(message)) {
      throw new TenantryError('EXPORT_TRUNCATED', 'the archive ends in the middle of a file', { cause: error });
    }
    throw new TenantryError('EXPORT_INVALID', 'the input is not a readable tar archive', { cause: error });
  }
  if (manifest === undefined) throw new TenantryError('EXPORT_INVALID', 'the archive is empty');
  for (const listed of manifest.files) {
    const got = seen.get(listed.path);
    if (!got) throw new TenantryError('EXPORT_TRUNCATED', `${listed.path} is missing from the archive`);
    if (got.bytes !== listed.bytes || got.sha256 !== listed.sha256 || got.lines !== listed.rows) {
      throw new TenantryError('EXPORT_CHECKSUM_MISMATCH', `${listed.path} does not match the manifest`, {
        details: { file: listed.path },
      });
    }
  }
  return manifest;
}

async function readManifest(entry: AsyncIterable<unknown>): Promise<ExportManifest> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry) {
    size += (chunk as Buffer).length;
    if (size > MANIFEST_MAX_BYTES) throw new TenantryError('EXPORT_INVALID', 'manifest.json is too large');
    chunks.push(chunk as Buffer);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new TenantryError('EXPORT_INVALID', 'manifest.json is not JSON', { cause: error });
  }
  return parseManifest(value);
}
