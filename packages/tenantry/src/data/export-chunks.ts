import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import type { Pool } from 'pg';

/** Largest chunk stored in one row (1 MiB): what an export job holds in memory at most. */
export const CHUNK_BYTES = 1024 * 1024;

/** What {@link ChunkWriter} stored: chunk count, size and SHA-256 of the whole archive. */
export interface StoredArchive {
  readonly chunks: number;
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * A writable that stores what it is given in `tenantry.export_chunks`, one row per
 * {@link CHUNK_BYTES}, each insert awaited before more is taken: an export written here
 * waits for PostgreSQL the way it waits for a slow disk, so memory stays at one chunk.
 *
 * @example
 * ```ts
 * const sink = new ChunkWriter(pool, job.id, job.tenantId);
 * await tenantry.exportTenant('acme', sink);
 * const { bytes, sha256 } = sink.stored();
 * ```
 */
export class ChunkWriter extends Writable {
  readonly #pool: Pool;
  readonly #jobId: string;
  readonly #tenantId: string;
  readonly #hash = createHash('sha256');
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #seq = 0;
  #bytes = 0;
  #sha256: string | undefined;

  constructor(pool: Pool, jobId: string, tenantId: string) {
    super({ highWaterMark: 64 * 1024 });
    this.#pool = pool;
    this.#jobId = jobId;
    this.#tenantId = tenantId;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < CHUNK_BYTES) done();
    else this.#flush(false).then(() => done(), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.#flush(true).then(() => {
      this.#sha256 = this.#hash.digest('hex');
      done();
    }, done);
  }

  /** Stores every whole chunk waiting (and, at the end, what is left). */
  async #flush(final: boolean): Promise<void> {
    let all = Buffer.concat(this.#pending);
    while (all.length >= CHUNK_BYTES || (final && all.length > 0)) {
      const part = all.subarray(0, CHUNK_BYTES);
      await this.#pool.query(
        'INSERT INTO tenantry.export_chunks (job_id, tenant_id, seq, data) VALUES ($1, $2, $3, $4)',
        [this.#jobId, this.#tenantId, this.#seq++, part],
      );
      all = all.subarray(part.length);
    }
    this.#pending = all.length > 0 ? [Buffer.from(all)] : [];
    this.#pendingBytes = all.length;
  }

  /** What was stored; only once the stream has finished. */
  stored(): StoredArchive {
    if (this.#sha256 === undefined) throw new Error('the archive is not complete');
    return { chunks: this.#seq, bytes: this.#bytes, sha256: this.#sha256 };
  }
}

/**
 * The stored archive of a job as a stream, one chunk read at a time and only when the
 * reader wants more (a slow client holds one chunk, not the archive).
 *
 * @example
 * ```ts
 * await reply.send(readChunks(pool, job.id, job.chunks));
 * ```
 */
export function readChunks(pool: Pool, jobId: string, chunks: number): Readable {
  async function* chunksOf(): AsyncGenerator<Buffer> {
    for (let seq = 0; seq < chunks; seq++) {
      const { rows } = await pool.query<{ data: Buffer }>(
        'SELECT data FROM tenantry.export_chunks WHERE job_id = $1 AND seq = $2',
        [jobId, seq],
      );
      // Removed meanwhile (retention, erasure): end with an error, not a short archive.
      if (!rows[0]) throw new Error('the archive was removed while it was being read');
      yield rows[0].data;
    }
  }
  return Readable.from(chunksOf(), { objectMode: false, highWaterMark: 1 });
}
