import type { ClientBase } from 'pg';
import type { IsolationTier } from '../context/tenant-context.ts';
import type { PipelinedStatement } from '../wire/statement-pipeline.ts';
import type { TenantRecord } from './tenant-record.ts';

/** Where a new tenant's rows went (what {@link TenantPlacer} reports). */
export interface TenantPlacement {
  readonly placementId: string;
  readonly schemaName: string | null;
  readonly databaseName: string | null;
  /** Whether its rows are in the main database. */
  readonly inMainDatabase: boolean;
}

/**
 * Provisions the place a new tenant's rows live in (implemented by the tiers module):
 * `prepare` runs before the tenant's transaction (a database cannot be created inside
 * one), `place` inside it (or `placeAtOnce`, with no statement), `abort` undoes `prepare`
 * when the transaction fails.
 */
export interface TenantPlacer {
  prepare(tenant: {
    id: string;
    tier: IsolationTier;
    placement?: string | undefined;
    statementTimeoutMs: number;
  }): Promise<unknown>;
  /**
   * Places the tenant inside its transaction on `client`, which `begin` opens: `place` sends
   * those statements first, in the round trip of its own first statement.
   */
  place(
    client: ClientBase,
    tenantId: string,
    prepared: unknown,
    begin: readonly PipelinedStatement[],
  ): Promise<TenantPlacement>;
  /**
   * The placement, when it needs no statement in the tenant's transaction (the pool tier):
   * the create is then one round trip. `undefined`: call {@link place}.
   */
  placeAtOnce?(prepared: unknown): TenantPlacement | undefined;
  abort(prepared: unknown): Promise<void>;
  /** After a committed change of status or limits: copies them where the rows live. */
  changed?(tenant: TenantRecord): Promise<void>;
}

/** Removes a deleted tenant's rows, or its schema or database (implemented by the tiers module). */
export interface TenantPurge {
  /** Rows deleted per table (`schema.table`); empty when a schema or database went as a whole. */
  purge(tenant: TenantRecord): Promise<Record<string, number>>;
}

/**
 * Erases a soft-deleted tenant everywhere and verifies nothing is left (implemented by the
 * data module): what `tenants.delete(ref, { hard: true })` runs.
 */
export interface TenantErasure {
  erase(tenant: TenantRecord, actor: string): Promise<unknown>;
}
