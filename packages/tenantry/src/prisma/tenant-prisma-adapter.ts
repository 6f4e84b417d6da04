import { PrismaPg } from '@prisma/adapter-pg';
import type { SqlDriverAdapter, SqlDriverAdapterFactory, SqlQuery, SqlQueryable } from '@prisma/driver-adapter-utils';
import { TenantPgPool, type TenantWork } from '../transaction/tenant-pg-pool.ts';

/** Options of Prisma's pg adapter that still apply when Tenantry owns the connections. */
export type TenantPrismaAdapterOptions = NonNullable<ConstructorParameters<typeof PrismaPg>[1]>;

/**
 * Prisma qualifies every table with its schema (`"public"."items"`). A tenant's tables
 * are where its transaction's `search_path` points (its own schema on the schema tier), so
 * the qualifier of the schema Prisma was generated for is dropped: the same SQL then runs
 * on every tier. Values are always parameters in Prisma's SQL, so only identifiers match.
 */
function unqualifier(schema: string): (query: SqlQuery) => SqlQuery {
  const qualifier = `"${schema.replaceAll('"', '""')}".`;
  return (query) => (query.sql.includes(qualifier) ? { ...query, sql: query.sql.replaceAll(qualifier, '') } : query);
}

function unqualified<Q extends SqlQueryable>(queryable: Q, rewrite: (query: SqlQuery) => SqlQuery): Q {
  return new Proxy(queryable, {
    get(target, property, receiver) {
      if (property === 'queryRaw' || property === 'executeRaw') {
        return (query: SqlQuery) => target[property](rewrite(query));
      }
      if (property === 'startTransaction') {
        return async (...args: unknown[]) =>
          unqualified(await (target as unknown as SqlDriverAdapter).startTransaction(...(args as [])), rewrite);
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * Prisma's pg driver adapter (`@prisma/adapter-pg`: its type mapping and error
 * conversion) on Tenantry's connections: every statement Prisma sends runs in a tenant
 * transaction, on the connection where the tenant's rows live (shared pool, its schema, its
 * database), under the runtime role.
 *
 * - A statement inside `tenantry.transaction()` runs on that transaction; in a tenant
 *   context without one (`withTenant`, a request), as a one-statement tenant transaction.
 * - A Prisma transaction (interactive, batch, or the one Prisma opens for a nested write)
 *   binds to the tenant when it starts: inside `tenantry.transaction()` it becomes a
 *   savepoint of it, otherwise a tenant transaction of its own.
 * - With no tenant context, Prisma's query fails with `NO_TENANT_CONTEXT`.
 * - Tables are not schema-qualified: the tenant transaction's `search_path` decides
 *   (`options.schema`, default `public`, names the schema the Prisma schema describes).
 *
 * Use it with {@link tenantPrisma}, which keeps Prisma's request batching from carrying one
 * tenant's query into another tenant's context.
 *
 * @example
 * ```ts
 * import { PrismaClient } from './generated/prisma/client.ts';
 * const prisma = tenantPrisma(new PrismaClient({ adapter: createTenantPrismaAdapter(tenantry) }));
 * ```
 */
export function createTenantPrismaAdapter(
  tenantry: TenantWork,
  options?: TenantPrismaAdapterOptions,
): SqlDriverAdapterFactory {
  const factory = new PrismaPg(new TenantPgPool(tenantry), options);
  const rewrite = unqualifier(options?.schema ?? 'public');
  return {
    provider: factory.provider,
    adapterName: factory.adapterName,
    connect: async () => unqualified(await factory.connect(), rewrite),
  };
}
