/** The slice of pg's connection that a custom submittable talks to: its socket. */
export interface WireConnection {
  stream: { writable: boolean; write(chunk: Buffer): boolean };
}

/**
 * What pg calls on a query object of its own making (a "submittable": anything with
 * `submit(connection)`), with nothing done for the messages a subclass does not care about.
 * The promise settles at `ReadyForQuery`: with {@link outcome}, or with the first error
 * (PostgreSQL skips the rest of the pipeline up to the Sync after one).
 */
export abstract class Submittable<T, Connection = WireConnection> {
  readonly promise: Promise<T>;
  #resolve!: (value: T) => void;
  #reject!: (error: unknown) => void;
  #failed = false;

  constructor() {
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /**
   * What pg calls to send the query. pg's contract is that an error is returned, not thrown
   * (pg then reports it through `handleError` and goes on with the next query); one thrown
   * while building the messages (a parameter that cannot be serialized) would leave the
   * client waiting forever for an answer to a query it never sent.
   */
  submit(connection: Connection): Error | null {
    try {
      this.send(connection);
      return null;
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  }
  /** Writes the whole pipeline, ending in one Sync. */
  protected abstract send(connection: Connection): void;
  /** The result, once PostgreSQL is ready for the next query and nothing failed. */
  protected abstract outcome(): T;

  handleRowDescription(_message: { fields: unknown[] }): void {}
  handleDataRow(_message: { fields: unknown[] }): void {}
  handleCommandComplete(_message: { text?: string }): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
  handleError(error: unknown): void {
    this.#failed = true;
    this.#reject(error);
  }
  handleReadyForQuery(): void {
    if (!this.#failed) this.#resolve(this.outcome());
  }
}
