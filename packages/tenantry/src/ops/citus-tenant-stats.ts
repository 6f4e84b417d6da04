import type { Pool } from 'pg';

/**
 * One tenant's activity on a Citus cluster, as `citus_stat_tenants` counts it (per node, summed).
 *
 * @example
 * ```ts
 * const stats: ClusterTenantStats[] = await tenantry.usage.cluster(10);
 * ```
 */
export interface ClusterTenantStats {
  readonly tenantId: string;
  /** Read-only queries routed to the tenant in the current period, and in the last full one. */
  readonly reads: { readonly thisPeriod: number; readonly lastPeriod: number };
  /** All queries routed to the tenant, in the current period and the last full one. */
  readonly queries: { readonly thisPeriod: number; readonly lastPeriod: number };
  /** CPU seconds its queries used on the nodes, in the current period and the last full one. */
  readonly cpuSeconds: { readonly thisPeriod: number; readonly lastPeriod: number };
}

/**
 * Per-tenant statistics from Citus's `citus_stat_tenants` (kept when
 * `citus.stat_tenants_track = 'all'`; the period is `citus.stat_tenants_period`), summed over
 * the nodes, busiest first. Where the view is absent (one server, or Citus older than 11.3)
 * the answer is empty. Only router queries are attributed to a tenant, which is what
 * Tenantry's filter makes of every query.
 *
 * @example
 * ```ts
 * const [busiest] = await citusTenantStats(tenantry.adminPool, 10);
 * ```
 */
export async function citusTenantStats(pool: Pool, limit = 100): Promise<ClusterTenantStats[]> {
  const { rows: present } = await pool.query("SELECT to_regclass('pg_catalog.citus_stat_tenants') IS NOT NULL AS ok");
  if (!present[0]?.ok) return [];
  const { rows } = await pool.query<Record<string, string>>(
    `SELECT tenant_attribute AS tenant,
            sum(read_count_in_this_period)::text AS r1, sum(read_count_in_last_period)::text AS r0,
            sum(query_count_in_this_period)::text AS q1, sum(query_count_in_last_period)::text AS q0,
            sum(cpu_usage_in_this_period)::text AS c1, sum(cpu_usage_in_last_period)::text AS c0
       FROM citus_stat_tenants
      WHERE tenant_attribute ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      GROUP BY tenant_attribute
      ORDER BY sum(query_count_in_this_period) DESC
      LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    tenantId: r.tenant as string,
    reads: { thisPeriod: Number(r.r1), lastPeriod: Number(r.r0) },
    queries: { thisPeriod: Number(r.q1), lastPeriod: Number(r.q0) },
    cpuSeconds: { thisPeriod: Number(r.c1), lastPeriod: Number(r.c0) },
  }));
}
