import type { ClientBase } from 'pg';
import pgUtils from 'pg/lib/utils.js';
import { serialize } from 'pg-protocol';
import { Submittable, type WireConnection } from '../wire/submittable.ts';

/** A statement queued to run just before `COMMIT` (see `TenantTransaction.defer`). */
export interface DeferredStatement {
  readonly text: string;
  readonly values?: readonly unknown[] | undefined;
}

const COMMIT = Buffer.concat([
  serialize.parse({ text: 'COMMIT' }),
  serialize.bind({ values: [] }),
  serialize.execute({}),
]);
const SYNC = serialize.sync();

/**
 * Sends the deferred statements and `COMMIT` as one pipelined extended-protocol exchange
 * with a single Sync: writing an audit entry with the commit costs no round trip of its
 * own, and the row lock its chain takes is held only for the commit itself. PostgreSQL
 * stops at the first error and skips the rest, so `COMMIT` never runs after a failed
 * statement (the transaction stays aborted for the caller to roll back). Resolves with
 * whether PostgreSQL answered `COMMIT` (not `ROLLBACK`).
 */
class CommitPipeline extends Submittable<boolean> {
  readonly #statements: readonly DeferredStatement[];
  #completed = 0;
  #committed = false;

  constructor(statements: readonly DeferredStatement[]) {
    super();
    this.#statements = statements;
  }

  protected send(connection: WireConnection): void {
    const parts: Buffer[] = [];
    for (const statement of this.#statements) {
      parts.push(
        serialize.parse({ text: statement.text }),
        serialize.bind({ values: [...(statement.values ?? [])] as never[], valueMapper: pgUtils.prepareValue }),
        serialize.execute({}),
      );
    }
    parts.push(COMMIT, SYNC);
    if (connection.stream.writable) connection.stream.write(Buffer.concat(parts));
  }

  override handleCommandComplete(message: { text?: string }): void {
    if (this.#completed === this.#statements.length) this.#committed = message.text === 'COMMIT';
    this.#completed++;
  }
  override handleEmptyQuery(): void {
    this.#completed++;
  }
  protected outcome(): boolean {
    return this.#committed;
  }
}

/**
 * Runs `statements` then `COMMIT` on `client` in one round trip; true when committed.
 *
 * @example
 * ```ts
 * const committed = await pipelinedCommit(client, [{ text: 'SELECT 1' }]);
 * ```
 */
export function pipelinedCommit(client: ClientBase, statements: readonly DeferredStatement[]): Promise<boolean> {
  const pipeline = new CommitPipeline(statements);
  // pg types `query()` for its own Query class; a submittable is the documented extension point.
  (client as unknown as { query(s: CommitPipeline): unknown }).query(pipeline);
  return pipeline.promise;
}
