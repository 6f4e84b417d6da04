import type { IsolationTier, TenantContext } from '../context/tenant-context.ts';

/** The statement text kept for a tenant's slowest statement, at most this many characters. */
const SQL_KEPT = 300;

/**
 * The running usage of one tenant in this process: plain numbers, one object per tenant,
 * kept for the life of the process (the meter drops tenants idle for an hour), so counting
 * a transaction is a few additions on an object the runner already holds — no allocation,
 * no `Date`, no write. The meter writes the difference since its last flush, in one batched
 * statement (see `ops/usage-meter.ts`).
 *
 * Counters only grow; `flushed` holds what was already written.
 *
 * @example
 * ```ts
 * const usage = tenantry.usage.meter?.of(tenant);
 * console.log(usage?.transactions, usage?.dbTimeMs); // counted by this process so far
 * ```
 */
export class TenantUsage {
  readonly tenantId: string;
  tier: IsolationTier;
  plan: string;
  // Transactions (step 5).
  transactions = 0;
  statements = 0;
  /** Milliseconds the tenant's transactions held a database connection (first statement to COMMIT/ROLLBACK). */
  dbTimeMs = 0;
  rowsRead = 0;
  rowsWritten = 0;
  /** Transactions that ended in an error (rolled back). */
  errors = 0;
  // Requests (step 7).
  requests = 0;
  status2xx = 0;
  status3xx = 0;
  status4xx = 0;
  status5xx = 0;
  bytesIn = 0;
  bytesOut = 0;
  apiKeyRequests = 0;
  /** The slowest statement since the last flush (reset by the flush). */
  slowestMs = 0;
  slowestSql: string | null = null;
  /** Users who made requests since the last flush (allocated on the first one). */
  users: Set<string> | undefined;
  /** Flushes in a row that found nothing new (the meter drops a tenant idle for long). */
  idleFlushes = 0;
  /** What the last flush wrote (the delta is the difference). */
  readonly flushed = {
    transactions: 0,
    statements: 0,
    dbTimeMs: 0,
    rowsRead: 0,
    rowsWritten: 0,
    errors: 0,
    requests: 0,
    status2xx: 0,
    status3xx: 0,
    status4xx: 0,
    status5xx: 0,
    bytesIn: 0,
    bytesOut: 0,
    apiKeyRequests: 0,
  };

  constructor(tenant: Pick<TenantContext, 'id' | 'tier' | 'plan'>) {
    this.tenantId = tenant.id;
    this.tier = tenant.tier;
    this.plan = tenant.plan;
  }

  /**
   * Counts one statement's result (rows returned by a read, rows affected by a write) that
   * took `ms` milliseconds. Clock reads cost a few hundred nanoseconds on some virtual
   * machines: the runner reads the clock twice per statement and once more per transaction.
   */
  statement(result: { command?: string | null; rowCount?: number | null } | undefined, text: string, ms: number): void {
    this.statements++;
    const rows = result?.rowCount ?? 0;
    if (rows > 0) {
      if (result?.command === 'SELECT') this.rowsRead += rows;
      else this.rowsWritten += rows;
    }
    if (ms > this.slowestMs) {
      this.slowestMs = ms;
      this.slowestSql = text.length > SQL_KEPT ? text.slice(0, SQL_KEPT) : text;
    }
  }

  /** Counts one finished transaction that held its connection `ms` milliseconds. */
  transaction(ms: number, failed: boolean): void {
    this.transactions++;
    this.dbTimeMs += ms;
    if (failed) this.errors++;
  }
}

/**
 * Where the transaction runner counts usage: the {@link TenantUsage} of a tenant (the same
 * object every time for the same tenant). `ops/usage-meter.ts` implements it.
 */
export interface UsageCounting {
  of(tenant: TenantContext): TenantUsage;
}
