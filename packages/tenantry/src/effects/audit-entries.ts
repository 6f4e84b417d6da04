import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { AuditTransaction } from './tenant-audit.ts';

/** One audit entry as the read API returns it. */
export interface AuditRecord {
  readonly id: string;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string | null;
  readonly requestId: string | null;
  readonly metadata: Record<string, unknown>;
  /** Position in the tenant's chain (1, 2, …). */
  readonly seq: number;
  /** sha256 over the previous entry's hash and this entry's content, hex. */
  readonly hash: string;
}

/** Filters of an audit listing; every one optional. */
export interface AuditFilter {
  readonly actor?: string | undefined;
  readonly action?: string | undefined;
  /** Entries at or after this time (ISO 8601). */
  readonly since?: string | undefined;
  /** Entries before this time (ISO 8601). */
  readonly until?: string | undefined;
  /** The `nextCursor` of the previous page. */
  readonly cursor?: string | undefined;
  /** Page size, 1–200 (default 50). */
  readonly limit?: number | undefined;
}

/** A page of entries, newest first; `nextCursor` when there are more. */
export interface AuditPage {
  readonly entries: AuditRecord[];
  readonly nextCursor?: string;
}

/** The columns both reads return. */
export interface AuditRow {
  id: string;
  at: Date;
  actor: string;
  action: string;
  target: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
  seq: string;
  hash: Buffer;
}

const CURSOR = /^s([1-9][0-9]{0,17})$/;

function decodeCursor(cursor: string): string {
  const match = CURSOR.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match?.[1]) throw new TenantryError('INVALID_INPUT', 'cursor is not one this API returned');
  return match[1];
}

function time(value: string | undefined, name: string): Date | null {
  if (value === undefined) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new TenantryError('INVALID_INPUT', `${name} is not a date-time`);
  return date;
}

/**
 * The parameters of `audit_entries(…)` for `filter` (one more row than the page, to know
 * whether another page follows), shared by the tenant and the control-plane read.
 */
export function auditQueryValues(filter: AuditFilter): unknown[] {
  const limit = filter.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
    throw new TenantryError('INVALID_INPUT', 'limit is an integer from 1 to 200');
  }
  return [
    filter.actor ?? null,
    filter.action ?? null,
    time(filter.since, 'since'),
    time(filter.until, 'until'),
    filter.cursor ? decodeCursor(filter.cursor) : null,
    limit + 1,
  ];
}

/** The page of `rows` (read with {@link auditQueryValues}'s extra row). */
export function auditPage(rows: readonly AuditRow[], filter: AuditFilter): AuditPage {
  const limit = filter.limit ?? 50;
  const page = rows.slice(0, limit).map(
    (row): AuditRecord => ({
      id: String(row.id),
      at: row.at.toISOString(),
      actor: row.actor,
      action: row.action,
      target: row.target,
      requestId: row.request_id,
      metadata: row.details,
      seq: Number(row.seq),
      hash: row.hash.toString('hex'),
    }),
  );
  const last = page.at(-1);
  return rows.length > limit && last
    ? { entries: page, nextCursor: Buffer.from(`s${last.seq}`).toString('base64url') }
    : { entries: page };
}

/**
 * The current tenant's audit entries, newest first, read in its tenant transaction through
 * a `SECURITY DEFINER` function that filters by the verified context (the runtime role has
 * no privilege on the log itself): another tenant's entries cannot be asked for.
 *
 * @example
 * ```ts
 * const page = await req.tenantTransaction((tx) => listTenantAudit(tx, { action: 'item.created', limit: 20 }));
 * ```
 */
export async function listTenantAudit(tx: AuditTransaction, filter: AuditFilter): Promise<AuditPage> {
  const { rows } = await tx.query(
    `SELECT * FROM ${CONTEXT_SCHEMA}.audit_entries($1, $2, $3, $4, $5, $6)`,
    auditQueryValues(filter),
  );
  return auditPage(rows as AuditRow[], filter);
}
