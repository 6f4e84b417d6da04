import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import tar from 'tar-stream';
import { type ExportManifest, MANIFEST_NAME } from './archive-format.ts';

/** A fixed time for every entry: an archive's bytes depend on its content alone. */
const EPOCH = new Date(0);

/**
 * Writes the export archive to `out`: a POSIX tar whose first entry is `manifest.json`,
 * then every file the manifest lists, read from `dir` (where the export spooled them). Each
 * file is streamed chunk by chunk and waits while `out` is busy: memory stays flat.
 *
 * @example
 * ```ts
 * await writeArchive(createWriteStream('acme.tar'), manifest, spoolDir);
 * ```
 */
export async function writeArchive(out: Writable, manifest: ExportManifest, dir: string): Promise<void> {
  const pack = tar.pack();
  const done = pump(pack, out);
  done.catch(() => {}); // awaited below
  try {
    const text = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8');
    await entry(pack, MANIFEST_NAME, text.length, async (sink) => {
      await write(sink, text);
    });
    for (const file of manifest.files) {
      await entry(pack, file.path, file.bytes, async (sink) => {
        for await (const chunk of createReadStream(join(dir, file.path))) await write(sink, chunk as Buffer);
      });
    }
    pack.finalize();
  } catch (error) {
    pack.destroy(error as Error);
  }
  await done;
}

async function entry(pack: tar.Pack, name: string, size: number, fill: (sink: Sink) => Promise<void>): Promise<void> {
  let finished!: (error?: Error | null) => void;
  const written = new Promise<void>((resolve, reject) => {
    finished = (error) => (error ? reject(error) : resolve());
  });
  const sink = pack.entry({ name, size, mtime: EPOCH, mode: 0o644 }, (error) => finished(error));
  await fill(sink);
  sink.end(null);
  await written;
}

/** A tar entry being written. */
type Sink = ReturnType<tar.Pack['entry']>;

async function write(sink: Sink, chunk: Buffer): Promise<void> {
  if (!sink.write(chunk)) await new Promise<void>((resolve) => sink.once('drain', () => resolve()));
}

/**
 * Copies the tar stream to `out`, one chunk at a time, waiting for `out` to drain: the pack
 * is pulled only as fast as `out` takes it. (Piping the pack, a streamx stream, into a Node
 * stream with `pipeline()` let the whole archive pile up in `out`'s buffer when the disk was
 * slower than the database.)
 */
async function pump(pack: tar.Pack, out: Writable): Promise<void> {
  try {
    for await (const chunk of pack) {
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await finished(out);
  } catch (error) {
    out.destroy(error as Error);
    throw error;
  }
}
