/**
 * `tenantry/prisma`: Prisma 7 on Tenantry's tenant transactions (`@prisma/client` and
 * `@prisma/adapter-pg` are optional peer dependencies). See `docs/adapters/prisma.md`.
 *
 * @packageDocumentation
 */
export { createTenantPrismaAdapter, type TenantPrismaAdapterOptions } from './tenant-prisma-adapter.ts';
export { tenantPrisma } from './tenant-prisma-client.ts';
