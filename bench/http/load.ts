import { createRequire } from 'node:module';
import { quantile } from '../lib/stats.ts';

/** One request of the mix a connection cycles through. */
export interface BenchRequest {
  readonly method: 'GET';
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** The part of autocannon v8's programmatic API this benchmark uses (it ships no types). */
interface AutocannonClient {
  setRequests(requests: BenchRequest[]): void;
}
interface AutocannonResult {
  readonly duration: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly mismatches: number;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', fn: (client: AutocannonClient, status: number, bytes: number, ms: number) => void): this;
  stop(): void;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration?: number;
  amount?: number;
  timeout?: number;
  requests: BenchRequest[];
  setupClient: (client: AutocannonClient) => void;
}) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** What one load run measured. Latencies are exact (from autocannon's float timings), not histogram buckets. */
export interface LoadResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  /** Mean response size on the wire (status line, headers and body), bytes. */
  readonly bytes: number;
  /** Connection errors, timeouts included. */
  readonly errors: number;
  readonly non2xx: number;
  readonly statuses: Readonly<Record<string, number>>;
}

let running: AutocannonInstance | undefined;

/** Stops the load run in progress, if any (Ctrl-C). */
export function stopLoad(): void {
  running?.stop();
}

/**
 * Runs autocannon against `url` with `connections` keep-alive connections, for `seconds`
 * or for `amount` requests. Every connection cycles through `requests`, each starting at
 * a different offset, so the connections do not walk the same rows in lockstep.
 */
export async function runLoad(options: {
  url: string;
  connections: number;
  requests: readonly BenchRequest[];
  seconds?: number;
  amount?: number;
}): Promise<LoadResult> {
  const { requests, connections } = options;
  let latencies = new Float64Array(1 << 16);
  let n = 0;
  let sum = 0;
  let bytesSum = 0;
  const statuses: Record<string, number> = {};
  let nextOffset = 0;
  const stride = Math.max(1, Math.floor(requests.length / connections));
  const instance = autocannon({
    url: options.url,
    connections,
    ...(options.amount ? { amount: options.amount } : { duration: options.seconds ?? 10 }),
    timeout: 10,
    requests: [...requests],
    setupClient(client) {
      const offset = (nextOffset++ * stride) % requests.length;
      client.setRequests([...requests.slice(offset), ...requests.slice(0, offset)]);
    },
  });
  running = instance;
  instance.on('response', (_client, status, bytes, ms) => {
    bytesSum += bytes;
    if (n === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[n++] = ms;
    sum += ms;
    statuses[status] = (statuses[status] ?? 0) + 1;
  });
  const result = await instance;
  running = undefined;
  const sorted = latencies.subarray(0, n).sort();
  return {
    requests: n,
    seconds: result.duration,
    rps: n / result.duration,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    mean: n ? sum / n : Number.NaN,
    bytes: n ? bytesSum / n : Number.NaN,
    errors: result.errors,
    non2xx: result.non2xx,
    statuses,
  };
}
