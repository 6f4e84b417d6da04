import type { ClientBase, QueryResult } from 'pg';
// pg's own row parsing and parameter conversion, so results and values behave exactly as
// with client.query() (pg ships these as CommonJS modules without type declarations).
import PgResult from 'pg/lib/result.js';
import pgUtils from 'pg/lib/utils.js';
import { serialize } from 'pg-protocol';
import type { ResultShape } from '../context/tenant-context.ts';
import { Submittable, type WireConnection } from '../wire/submittable.ts';

/** Messages that never change, serialized once. */
const WIRE = {
  begin: Buffer.concat([serialize.parse({ text: 'BEGIN' }), serialize.bind({ values: [] }), serialize.execute({})]),
  commit: Buffer.concat([serialize.parse({ text: 'COMMIT' }), serialize.bind({ values: [] }), serialize.execute({})]),
  describeAndExecute: Buffer.concat([serialize.describe({ type: 'P' }), serialize.execute({})]),
  // The context statement's one text column needs no description: PostgreSQL sends no
  // RowDescription for it, and its value is read as the text it is.
  execute: serialize.execute({}),
  sync: serialize.sync(),
};

interface ResultLike {
  addFields(fields: unknown[]): void;
  parseRow(fields: unknown[]): unknown;
  addRow(row: unknown): void;
  addCommandComplete(message: unknown): void;
}

/** Which step of the pipeline an error came from. */
export type PipelineStage = 'begin' | 'enter' | 'statement' | 'commit';

/** What the pipeline sends: `BEGIN`, the context statement, and optionally the first statement. */
export interface PipelineRequest {
  readonly begin: string;
  readonly enter: { readonly text: string; readonly values: readonly unknown[]; readonly name?: string };
  /** Parse `enter` (under `enter.name`) before executing it; false when this connection already has it. */
  readonly parseEnter: boolean;
  readonly statement?: {
    readonly text: string;
    readonly values?: readonly unknown[];
    readonly shape?: ResultShape;
    /**
     * A statement prepared on this connection under this name: bound, not parsed again.
     * With `parse`, it is (re)prepared first: `Close` then `Parse` under the name, so a
     * statement that an earlier, failed pipeline may or may not have prepared is replaced.
     */
    readonly name?: string | undefined;
    readonly parse?: boolean | undefined;
  };
  /**
   * Commit after the statement: the whole transaction in one round trip. With the default
   * `BEGIN`, neither `BEGIN` nor `COMMIT` is sent: the messages up to a Sync run as one
   * implicit transaction, which PostgreSQL commits at the Sync (or rolls back at the first
   * error), so the context placed by the first statement holds for the second, and two
   * statements' worth of server work are saved.
   */
  readonly commit?: boolean;
  /**
   * Always send `BEGIN` and `COMMIT`, never the implicit form: Citus propagates `SET LOCAL`
   * and assigns a distributed transaction id only inside a transaction block.
   */
  readonly explicit?: boolean;
}

/** The outcome: the context statement's first column, and the first statement's result. */
export interface PipelineResponse {
  readonly enterValue: string | null;
  readonly result: QueryResult | undefined;
  /** With `commit`: whether PostgreSQL answered `COMMIT` (not `ROLLBACK`). */
  readonly committed: boolean;
}

const STAGES: PipelineStage[] = ['begin', 'enter', 'statement', 'commit'];

/**
 * Sends `BEGIN`, the context statement, (optionally) the application's first statement and
 * (optionally) `COMMIT` as one pipelined extended-protocol exchange ending in a single Sync:
 * one round trip where a plain client would take three or four. pg accepts any object with `submit(connection)`
 * as a query (a "submittable"). PostgreSQL stops at the first error and skips the rest up
 * to the Sync, so a refused context never runs the statement; the error carries `stage`.
 */
class Pipeline extends Submittable<PipelineResponse> {
  readonly #request: PipelineRequest;
  #completed = 0;
  #enterValue: string | null = null;
  #result: ResultLike | undefined;
  #committed = false;

  constructor(request: PipelineRequest) {
    super();
    this.#request = request;
  }

  /** A one-statement transaction at the default level: sent without `BEGIN` and `COMMIT`. */
  get #implicit(): boolean {
    const r = this.#request;
    return r.commit === true && r.statement !== undefined && r.begin === 'BEGIN' && r.explicit !== true;
  }

  protected send(connection: WireConnection): void {
    const { begin, enter, parseEnter, statement, commit } = this.#request;
    const implicit = this.#implicit;
    // One buffer, one write: a corked socket still hands the kernel a dozen small pieces,
    // and that writev was the largest self time of the whole HTTP path in a profile.
    const parts: Buffer[] = [];
    if (implicit)
      this.#completed = 1; // no BEGIN: the stages count from the context statement
    else if (begin === 'BEGIN') parts.push(WIRE.begin);
    else parts.push(serialize.parse({ text: begin }), serialize.bind({ values: [] }), serialize.execute({}));
    if (parseEnter) parts.push(serialize.parse({ text: enter.text, ...(enter.name ? { name: enter.name } : {}) }));
    parts.push(
      serialize.bind({
        ...(enter.name ? { statement: enter.name } : {}),
        values: [...enter.values] as never[],
        valueMapper: pgUtils.prepareValue,
      }),
      WIRE.execute,
    );
    if (statement) {
      const name = statement.name;
      if (!name) parts.push(serialize.parse({ text: statement.text }));
      else if (statement.parse)
        parts.push(serialize.close({ type: 'S', name }), serialize.parse({ text: statement.text, name }));
      parts.push(
        serialize.bind({
          ...(name ? { statement: name } : {}),
          values: [...(statement.values ?? [])] as never[],
          valueMapper: pgUtils.prepareValue,
        }),
        WIRE.describeAndExecute,
      );
      if (commit && !implicit) parts.push(WIRE.commit);
    }
    parts.push(WIRE.sync);
    if (connection.stream.writable) connection.stream.write(Buffer.concat(parts));
  }

  override handleRowDescription(message: { fields: unknown[] }): void {
    if (this.#completed === 2) {
      const shape = this.#request.statement?.shape;
      this.#result = new PgResult(shape?.rowMode, shape?.types) as ResultLike;
      this.#result.addFields(message.fields);
    }
  }
  override handleDataRow(message: { fields: unknown[] }): void {
    if (this.#completed === 1) this.#enterValue ??= (message.fields[0] as string | null) ?? null;
    else if (this.#result) this.#result.addRow(this.#result.parseRow(message.fields));
  }
  override handleCommandComplete(message: { text?: string }): void {
    if (this.#completed === 2) {
      const shape = this.#request.statement?.shape;
      this.#result ??= new PgResult(shape?.rowMode, shape?.types) as ResultLike;
      this.#result.addCommandComplete(message);
    } else if (this.#completed === 3) {
      this.#committed = message.text === 'COMMIT';
    }
    this.#completed++;
  }
  override handleEmptyQuery(): void {
    this.#completed++;
  }
  override handleError(error: unknown): void {
    if (error && typeof error === 'object') {
      Object.defineProperty(error, 'stage', { value: STAGES[Math.min(this.#completed, 3)], enumerable: false });
    }
    super.handleError(error);
  }
  protected outcome(): PipelineResponse {
    return {
      enterValue: this.#enterValue,
      result: this.#result as unknown as QueryResult | undefined,
      // Implicit: ReadyForQuery without an error is the commit (a failed commit is an error).
      committed: this.#implicit ? this.#completed === 3 : this.#committed,
    };
  }
}

/**
 * Opens a transaction, places the tenant context and runs the first statement, in one
 * round trip.
 */
export function pipelinedBegin(client: ClientBase, request: PipelineRequest): Promise<PipelineResponse> {
  const pipeline = new Pipeline(request);
  // pg types `query()` for its own Query class; a submittable is the documented extension point.
  (client as unknown as { query(s: Pipeline): unknown }).query(pipeline);
  return pipeline.promise;
}

/** The pipeline stage an error came from, if it came from {@link pipelinedBegin}. */
export function stageOf(error: unknown): PipelineStage | undefined {
  return (error as { stage?: PipelineStage } | null)?.stage;
}
