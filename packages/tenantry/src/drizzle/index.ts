/**
 * `tenantry/drizzle`: Drizzle ORM's node-postgres driver on Tenantry's tenant transactions
 * (`drizzle-orm` is an optional peer dependency). See `docs/adapters/drizzle.md`.
 *
 * @packageDocumentation
 */
export { TenantPgPool, type TenantWork } from '../transaction/tenant-pg-pool.ts';
export { tenantDrizzleClient, withTenantDrizzle } from './tenant-drizzle.ts';
