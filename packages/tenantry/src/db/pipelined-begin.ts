import type { ClientBase } from 'pg';

/** The slice of pg's connection that a custom submittable talks to. */
interface WireConnection {
  parse(config: { text: string; name?: string; types?: number[] }): void;
  bind(config: { portal?: string; statement?: string; values?: unknown[] }): void;
  describe(config: { type: 'P' | 'S'; name?: string }): void;
  execute(config: { portal?: string; rows?: number }): void;
  sync(): void;
  stream: { cork?: () => void; uncork?: () => void };
}

interface DataRowMessage {
  fields: (string | null)[];
}

/**
 * Sends `BEGIN` and the context statement (with its bind parameters) in one pipelined
 * extended-protocol exchange ending in a single Sync: one round trip instead of two.
 * pg accepts any object with `submit(connection)` as a query ("submittable"); this one
 * resolves with the first column of the context statement's first row.
 *
 * If `BEGIN` succeeded and the context statement failed, the session is left in an
 * aborted transaction; the caller rolls it back.
 */
class PipelinedBegin {
  readonly promise: Promise<string | null>;
  #resolve!: (value: string | null) => void;
  #reject!: (error: unknown) => void;
  #value: string | null = null;
  #failed = false;

  readonly beginSql: string;
  readonly text: string;
  readonly values: unknown[];

  constructor(beginSql: string, text: string, values: unknown[]) {
    this.beginSql = beginSql;
    this.text = text;
    this.values = values;
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  submit(connection: WireConnection): null {
    connection.stream.cork?.();
    try {
      connection.parse({ text: this.beginSql });
      connection.bind({ values: [] });
      connection.execute({});
      connection.parse({ text: this.text });
      connection.bind({ values: this.values });
      connection.describe({ type: 'P' });
      connection.execute({});
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleRowDescription(): void {}
  handleDataRow(message: DataRowMessage): void {
    this.#value ??= message.fields[0] ?? null;
  }
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
  handleError(error: unknown): void {
    this.#failed = true;
    this.#reject(error);
  }
  handleReadyForQuery(): void {
    if (!this.#failed) this.#resolve(this.#value);
  }
}

/**
 * Opens a transaction and runs `text` inside it, in one round trip.
 *
 * @returns the first column of the statement's first row, as text.
 */
export function pipelinedBegin(
  client: ClientBase,
  text: string,
  values: unknown[],
  beginSql = 'BEGIN',
): Promise<string | null> {
  const submittable = new PipelinedBegin(beginSql, text, values);
  // pg types `query()` for its own Query class; a submittable is the documented extension point.
  (client as unknown as { query(s: PipelinedBegin): unknown }).query(submittable);
  return submittable.promise;
}
