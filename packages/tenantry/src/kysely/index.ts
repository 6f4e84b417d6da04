/**
 * `tenantry/kysely`: the Kysely side of Tenantry.
 *
 * @packageDocumentation
 */
import type { Generated } from 'kysely';

export { prepareTenantQuery, type QueryParam } from './prepared-query.ts';
export { type TenantFilterOptions, TenantFilterPlugin } from './tenant-filter-plugin.ts';
export { createTenantKysely } from './tenant-kysely.ts';
export { TenantTransactionDialect } from './transaction-driver.ts';

/**
 * Type of the `tenant_id` column in a Kysely table interface: selected as a string,
 * optional on insert (Tenantry adds it, and the column defaults to the verified context).
 *
 * @example
 * ```ts
 * interface DB { items: { tenant_id: TenantIdColumn; id: Generated<string>; title: string } }
 * ```
 */
export type TenantIdColumn = Generated<string>;
