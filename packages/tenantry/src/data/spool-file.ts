import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What a spooled file ended as: its size and SHA-256, and its line count. */
export interface SpoolResult {
  readonly bytes: number;
  readonly sha256: string;
  readonly lines: number;
}

/**
 * A file written in order while its SHA-256 and size are computed: an export spools each
 * table here (a tar entry needs its size before its content), an import each archive entry
 * (nothing is written to the database before every file is checked). `write` waits when
 * the disk is slower than the database, so memory stays flat whatever the table's size.
 *
 * @example
 * ```ts
 * const file = new SpoolFile(join(dir, 'items.ndjson'));
 * await file.write('{"id":1}\n', 1);
 * const { bytes, sha256, lines } = await file.close();
 * ```
 */
export class SpoolFile {
  readonly path: string;
  readonly #out: WriteStream;
  readonly #hash: Hash = createHash('sha256');
  #bytes = 0;
  #lines = 0;
  #failed: Error | undefined;

  constructor(path: string) {
    this.path = path;
    this.#out = createWriteStream(path);
    this.#out.on('error', (error) => {
      this.#failed = error;
    });
  }

  /** Appends `chunk` (counting `lines` lines); resolves once the file can take more. */
  async write(chunk: string | Buffer, lines = 0): Promise<void> {
    if (this.#failed) throw this.#failed;
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    this.#hash.update(data);
    this.#bytes += data.length;
    this.#lines += lines;
    // once() rejects when the stream emits 'error' meanwhile.
    if (!this.#out.write(data)) await once(this.#out, 'drain');
    if (this.#failed) throw this.#failed;
  }

  /** Flushes and closes the file. */
  async close(): Promise<SpoolResult> {
    this.#out.end();
    await once(this.#out, 'close');
    if (this.#failed) throw this.#failed;
    return { bytes: this.#bytes, sha256: this.#hash.digest('hex'), lines: this.#lines };
  }

  /** Closes without caring for the content (after an error). */
  abort(): void {
    this.#out.destroy();
  }
}

/**
 * Runs `fn` with a fresh private temporary directory, removed afterwards whatever happens.
 *
 * @example
 * ```ts
 * await withTempDir('tenantry-export-', async (dir) => { … });
 * ```
 */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
