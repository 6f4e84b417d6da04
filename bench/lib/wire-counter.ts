import net from 'node:net';

/** Protocol messages and bytes seen by {@link WireCounter}, per direction. */
export interface WireCounts {
  /** Frontend `Sync` + simple `Query`: each makes the client wait for a `ReadyForQuery`. */
  readonly roundTrips: number;
  /** Backend `ReadyForQuery` (`Z`) messages: should equal {@link roundTrips}. */
  readonly readyForQuery: number;
  /** Frontend messages by type letter (`P` Parse, `B` Bind, `D` Describe, `E` Execute, `S` Sync, `Q` Query…). */
  readonly frontend: Readonly<Record<string, number>>;
  readonly bytesUp: number;
  readonly bytesDown: number;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

/**
 * Splits one direction of a PostgreSQL connection into messages (type byte + int32
 * length), calling `onMessage` with each type. The frontend direction starts with the
 * untyped startup message.
 */
class MessageScanner {
  #header = Buffer.alloc(0);
  #skip = 0;
  #startup: boolean;
  readonly #onMessage: (type: string) => void;

  constructor(startup: boolean, onMessage: (type: string) => void) {
    this.#startup = startup;
    this.#onMessage = onMessage;
  }

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        this.#skip -= n;
        i += n;
        continue;
      }
      const need = this.#startup ? 8 : 5;
      const take = Math.min(need - this.#header.length, chunk.length - i);
      this.#header = Buffer.concat([this.#header, chunk.subarray(i, i + take)]);
      i += take;
      if (this.#header.length < need) return;
      if (this.#startup) {
        const code = this.#header.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          throw new Error('round-trip counting needs a plain connection: add sslmode=disable to DATABASE_URL');
        }
        this.#startup = false;
        this.#skip = this.#header.readInt32BE(0) - 8;
        this.#onMessage('startup');
      } else {
        this.#skip = this.#header.readInt32BE(1) - 4;
        this.#onMessage(String.fromCharCode(this.#header[0] as number));
      }
      this.#header = Buffer.alloc(0);
    }
  }
}

/**
 * A tiny TCP proxy in front of PostgreSQL that counts the protocol messages passing
 * through it, so a benchmark can show how many round trips a transaction costs.
 *
 * @example
 * ```ts
 * const counter = new WireCounter('127.0.0.1', 5432);
 * const port = await counter.listen();
 * const before = counter.snapshot();
 * // … run transactions on a pool connected to 127.0.0.1:port …
 * const delta = WireCounter.diff(counter.snapshot(), before);
 * ```
 */
export class WireCounter {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #frontend: Record<string, number> = {};
  #readyForQuery = 0;
  #bytesUp = 0;
  #bytesDown = 0;

  constructor(targetHost: string, targetPort: number) {
    this.#server = net.createServer((client) => {
      client.setNoDelay(true);
      const upstream = net.connect({ host: targetHost, port: targetPort });
      upstream.setNoDelay(true);
      this.#sockets.add(client).add(upstream);
      const up = new MessageScanner(true, (type) => {
        this.#frontend[type] = (this.#frontend[type] ?? 0) + 1;
      });
      const down = new MessageScanner(false, (type) => {
        if (type === 'Z') this.#readyForQuery++;
      });
      client.on('data', (chunk: Buffer) => {
        this.#bytesUp += chunk.length;
        up.push(chunk);
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        this.#bytesDown += chunk.length;
        down.push(chunk);
        client.write(chunk);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      for (const socket of [client, upstream]) {
        socket.on('error', close);
        socket.on('close', close);
      }
    });
  }

  /** Starts listening on an ephemeral port of 127.0.0.1 and returns it. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve((this.#server.address() as net.AddressInfo).port));
    });
  }

  snapshot(): WireCounts {
    const f = { ...this.#frontend };
    return {
      roundTrips: (f.S ?? 0) + (f.Q ?? 0),
      readyForQuery: this.#readyForQuery,
      frontend: f,
      bytesUp: this.#bytesUp,
      bytesDown: this.#bytesDown,
    };
  }

  /** `after − before`, divided by `per` (e.g. the number of transactions). */
  static diff(after: WireCounts, before: WireCounts, per = 1): WireCounts {
    const frontend: Record<string, number> = {};
    for (const [type, n] of Object.entries(after.frontend)) {
      const d = (n - (before.frontend[type] ?? 0)) / per;
      if (d !== 0) frontend[type] = d;
    }
    return {
      roundTrips: (after.roundTrips - before.roundTrips) / per,
      readyForQuery: (after.readyForQuery - before.readyForQuery) / per,
      frontend,
      bytesUp: (after.bytesUp - before.bytesUp) / per,
      bytesDown: (after.bytesDown - before.bytesDown) / per,
    };
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
