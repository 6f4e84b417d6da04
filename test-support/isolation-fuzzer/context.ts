import type { Kysely } from 'kysely';
import type { ItemsDB } from '../../packages/tenantry/src/example/items.ts';
import type { Tenantry, TenantTransaction } from '../../packages/tenantry/src/index.ts';
import type { RawHttp } from '../fuzz.ts';
import type { Checker } from './checks.ts';
import type { Model, TenantState } from './model.ts';

/** What every operation of a run works with. */
export interface FuzzContext {
  readonly tenantry: Tenantry<unknown>;
  readonly http: RawHttp;
  readonly model: Model;
  readonly checker: Checker;
  /** Values of the context setting read inside other tenants' transactions, to replay. */
  readonly stolen: string[];
}

/** Runs a read's statements: in a tenant transaction of its own, or in one shared with other reads. */
export type Within = <T>(fn: (tx: TenantTransaction<unknown>, db: Kysely<ItemsDB>) => Promise<T>) => Promise<T>;

/** `fn` in a tenant transaction of `t`, with its Kysely view of the example application's tables. */
export function withTenant<T>(
  c: FuzzContext,
  t: TenantState,
  fn: (tx: TenantTransaction<unknown>, db: Kysely<ItemsDB>) => Promise<T>,
): Promise<T> {
  return c.tenantry.transaction(t.record, (tx) => fn(tx, tx.db as unknown as Kysely<ItemsDB>));
}
