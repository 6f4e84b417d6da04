import { parseArgs } from 'node:util';
import { benchDatabaseUrl, positive } from './argv.ts';

/** What one run of `bench/core.ts` measures, validated once and frozen. */
export interface CoreOptions {
  /** Admin connection (a superuser: it creates the database and roles and is the RLS-bypassing baseline). */
  readonly databaseUrl: string;
  readonly tenants: number;
  readonly rows: number;
  /** Measured seconds per side, for each workload and client count, split over the rounds. */
  readonly seconds: number;
  /** Alternating rounds per workload and client count (order a, b, … then … b, a). */
  readonly rounds: number;
  /** Unmeasured seconds per side before the rounds (fills pools, warms caches and JIT). */
  readonly warmup: number;
  readonly clients: readonly number[];
  /** Workload keys to run, in run order. */
  readonly workloads: readonly string[];
  /** Only these sides (e.g. `a,b`); undefined: all. */
  readonly sides: readonly string[] | undefined;
  /** Tenant transactions per side when counting protocol messages through the proxy. */
  readonly countTransactions: number;
  readonly keep: boolean;
  readonly verbose: boolean;
  readonly quick: boolean;
  /** Write the results as JSON to this file. */
  readonly json: string | undefined;
}

export const ALL_WORKLOADS = ['point', 'breakdown', 'range', 'fts', 'fts-leakproof', 'insert', 'usage'] as const;

export const USAGE = `Usage: node bench/core.ts [options]

  --tenants N        tenants to create (default 1000; --quick 20)
  --rows N           rows loaded into items, spread evenly over the tenants (default 1000000; --quick 20000)
  --seconds S        measured seconds per side for each workload and client count (default 10; --quick 2)
  --rounds R         alternating rounds those seconds are split into (default 10; --quick 2)
  --warmup S         unmeasured seconds per side before the rounds (default 1; --quick 0.2)
  --clients LIST     concurrent clients, comma-separated (default 1,16); pools are sized to match
  --workloads LIST   any of ${ALL_WORKLOADS.join(',')} (default: all;
                     breakdown runs at the smallest client count only)
  --sides LIST       only these sides, e.g. a,b (default: all)
  --quick            small smoke run: 20 tenants, 20,000 rows, 2 s per side
  --keep             keep the database and roles (their names are printed)
  --verbose          print the query plans
  --json FILE        also write the results as JSON
  DATABASE_URL       superuser connection (default postgres://postgres@127.0.0.1:5432/postgres)
`;

/** Parses `argv` (without the node and script paths). Throws with a readable message on bad input. */
export function parseCoreOptions(argv: readonly string[], env: NodeJS.ProcessEnv): CoreOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      tenants: { type: 'string' },
      rows: { type: 'string' },
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      clients: { type: 'string' },
      workloads: { type: 'string' },
      sides: { type: 'string' },
      count: { type: 'string' },
      quick: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  const tenants = positive(values.tenants, quick ? 20 : 1000, '--tenants', true);
  const rows = positive(values.rows, quick ? 20_000 : 1_000_000, '--rows', true);
  if (rows < tenants) throw new Error('--rows must be at least --tenants (every tenant gets rows)');
  const clients = (values.clients ?? '1,16').split(',').map((c) => positive(c.trim(), 1, '--clients', true));
  if (clients.some((c) => c > 64)) throw new Error('--clients above 64 would exhaust max_connections');
  const workloads = values.workloads ? values.workloads.split(',').map((w) => w.trim()) : [...ALL_WORKLOADS];
  for (const w of workloads) {
    if (!(ALL_WORKLOADS as readonly string[]).includes(w)) {
      throw new Error(`unknown workload ${JSON.stringify(w)}; choose from ${ALL_WORKLOADS.join(', ')}`);
    }
  }
  return Object.freeze({
    databaseUrl: benchDatabaseUrl(env),
    tenants,
    rows,
    seconds: positive(values.seconds, quick ? 2 : 10, '--seconds', false),
    rounds: positive(values.rounds, quick ? 2 : 10, '--rounds', true),
    warmup: values.warmup === '0' ? 0 : positive(values.warmup, quick ? 0.2 : 1, '--warmup', false),
    clients: Object.freeze([...new Set(clients)].sort((x, y) => x - y)),
    // Inserts grow the table: run them last so the reads see the loaded data set.
    workloads: Object.freeze(ALL_WORKLOADS.filter((w) => workloads.includes(w))),
    sides: values.sides ? Object.freeze(values.sides.split(',').map((x) => x.trim())) : undefined,
    countTransactions: positive(values.count, quick ? 20 : 200, '--count', true),
    keep: values.keep ?? false,
    verbose: values.verbose ?? false,
    quick,
    json: values.json,
  });
}
