/**
 * `tenantry/schema`: declaring tenant tables in migrations.
 *
 * @packageDocumentation
 */
export { qualified, quoteIdent, quoteLiteral } from '../sql.ts';
export type { PersonalData } from './personal-data.ts';
export {
  type TenantForeignKey,
  type TenantIndex,
  type TenantTableDefinition,
  type TenantTableOptions,
  tenantTableSql,
} from './tenant-table.ts';
