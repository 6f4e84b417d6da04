import type { ClientBase, QueryResult } from 'pg';
// pg's own row parsing and parameter conversion, so results and values behave exactly as
// with client.query() (pg ships these as CommonJS modules without type declarations).
import PgResult from 'pg/lib/result.js';
import pgUtils from 'pg/lib/utils.js';
import { serialize } from 'pg-protocol';
import { Submittable, type WireConnection } from './submittable.ts';

/** One parameterised statement of a {@link runPipelined} batch. */
export interface PipelinedStatement {
  readonly text: string;
  readonly values?: readonly unknown[];
}

interface ResultLike {
  addFields(fields: unknown[]): void;
  parseRow(fields: unknown[]): unknown;
  addRow(row: unknown): void;
  addCommandComplete(message: unknown): void;
}

const DESCRIBE_EXECUTE = Buffer.concat([serialize.describe({ type: 'P' }), serialize.execute({})]);

/** Parse/Bind/Describe/Execute per statement, one Sync: one round trip for all of them. */
class StatementPipeline extends Submittable<QueryResult[]> {
  readonly #statements: readonly PipelinedStatement[];
  readonly #results: ResultLike[] = [];
  #current: ResultLike | undefined;

  constructor(statements: readonly PipelinedStatement[]) {
    super();
    this.#statements = statements;
  }

  protected send(connection: WireConnection): void {
    const parts: Buffer[] = [];
    for (const s of this.#statements) {
      parts.push(
        serialize.parse({ text: s.text }),
        serialize.bind({ values: [...(s.values ?? [])] as never[], valueMapper: pgUtils.prepareValue }),
        DESCRIBE_EXECUTE,
      );
    }
    parts.push(serialize.sync());
    if (connection.stream.writable) connection.stream.write(Buffer.concat(parts));
  }

  #result(): ResultLike {
    this.#current ??= new PgResult(undefined, undefined) as ResultLike;
    return this.#current;
  }
  override handleRowDescription(message: { fields: unknown[] }): void {
    this.#result().addFields(message.fields);
  }
  override handleDataRow(message: { fields: unknown[] }): void {
    const result = this.#result();
    result.addRow(result.parseRow(message.fields));
  }
  override handleCommandComplete(message: { text?: string }): void {
    const result = this.#result();
    result.addCommandComplete(message);
    this.#results.push(result);
    this.#current = undefined;
  }
  override handleEmptyQuery(): void {
    this.#results.push(this.#result());
    this.#current = undefined;
  }
  protected outcome(): QueryResult[] {
    return this.#results as unknown as QueryResult[];
  }
}

/**
 * Runs parameterised statements in order in one round trip (the extended protocol's
 * messages for each, then one Sync), inside the caller's transaction: PostgreSQL stops at
 * the first error, which aborts the transaction, and the promise rejects with it. Resolves
 * with each statement's result.
 *
 * @example
 * ```ts
 * const [inserted] = await runPipelined(client, [
 *   { text: 'INSERT INTO t (a) VALUES ($1) RETURNING *', values: [1] },
 *   { text: 'INSERT INTO log (what) VALUES ($1)', values: ['t.created'] },
 * ]);
 * ```
 */
export function runPipelined(client: ClientBase, statements: readonly PipelinedStatement[]): Promise<QueryResult[]> {
  const pipeline = new StatementPipeline(statements);
  (client as unknown as { query(s: StatementPipeline): unknown }).query(pipeline);
  return pipeline.promise;
}
