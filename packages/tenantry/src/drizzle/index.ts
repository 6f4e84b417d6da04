/**
 * `tenantry/drizzle`: Drizzle ORM on Tenantry's tenant transactions (`drizzle-orm` is an
 * optional peer dependency). See `docs/adapters/drizzle.md`.
 *
 * @packageDocumentation
 */
export { TenantPgPool, type TenantWork } from '../transaction/tenant-pg-pool.ts';
export { createTenantDrizzle, type TenantDrizzle, withTenantDrizzle } from './tenant-drizzle.ts';
