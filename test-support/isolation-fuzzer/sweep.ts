import pg from 'pg';
import { describeError } from './checks.ts';
import type { FuzzContext } from './context.ts';
import type { Op, Row, TenantState } from './model.ts';

/**
 * The final sweep, as a superuser: reads every copy of `items` (the shared table, each
 * tenant schema, each tenant database) and holds it to the model.
 */
export async function finalSweep(
  c: FuzzContext,
  options: { readonly adminUrl?: string },
): Promise<{ copies: number; rows: number }> {
  const adminUrl = options.adminUrl ?? c.tenantry.config.databaseUrl;
  const shared = c.tenantry.config.tenantSchema;
  const sweepOp = (t: TenantState, detail = 'sweep'): Op => ({
    index: -1,
    kind: 'sweep',
    tenant: t,
    start: c.model.clock,
    detail,
  });
  const seen = new Map<TenantState, Set<string>>(c.model.tenants.map((t) => [t, new Set<string>()]));
  let copies = 0;
  let total = 0;
  const read = async (url: string, schema: string, owner: TenantState | undefined, label: string) => {
    const client = new pg.Client({ connectionString: url });
    let connected = false;
    try {
      await client.connect();
      connected = true;
      const { rows } = await client.query<Row & { tenant_id: string }>(
        `SELECT tenant_id::text, id::text, title, description FROM ${pg.escapeIdentifier(schema)}.items`,
      );
      copies++;
      total += rows.length;
      for (const row of rows) {
        const t = c.model.byId.get(row.tenant_id);
        const reporter = owner ?? t ?? (c.model.tenants[0] as TenantState);
        const op = sweepOp(reporter, `sweep of ${label}`);
        c.checker.checks++;
        if (!t) {
          c.checker.fail(op, 'anomaly', 'row of no tenant of the run', JSON.stringify(row).slice(0, 300));
          continue;
        }
        const home = owner ? t === owner : t.record.tier === 'pool';
        if (!home) {
          // Already reported when the write was accepted, unless the model never saw it.
          if (!t.planted.has(row.id)) {
            c.checker.fail(
              op,
              'leak',
              `row of ${t.record.tier}-tier tenant in ${label}`,
              JSON.stringify(row).slice(0, 300),
            );
          }
          continue;
        }
        (seen.get(t) as Set<string>).add(row.id);
        c.checker.checkRow(sweepOp(t, `sweep of ${label}`), row);
      }
    } catch (error) {
      // A copy nobody can read is not a clean copy.
      c.checker.fail(
        sweepOp(owner ?? (c.model.tenants[0] as TenantState)),
        'anomaly',
        `sweep could not read ${label}`,
        describeError(error),
      );
    } finally {
      if (connected) await client.end();
    }
  };
  await read(adminUrl, shared, undefined, 'the shared table');
  for (const t of c.model.tenants) {
    const { schemaName, databaseName, placementId } = t.record;
    if (schemaName) await read(adminUrl, schemaName, t, `${t.record.slug}'s schema`);
    if (databaseName) {
      const placement = await c.tenantry.placements.resolve(placementId);
      const url = new URL(placement.url ?? adminUrl);
      url.pathname = `/${databaseName}`;
      await read(url.toString(), shared, t, `${t.record.slug}'s database`);
    }
  }
  for (const t of c.model.tenants) {
    const found = seen.get(t) as Set<string>;
    for (const [id, item] of t.live) {
      if (item.uncertain) continue;
      c.checker.checks++;
      if (!found.has(id)) {
        c.checker.fail(sweepOp(t), 'anomaly', 'acknowledged item missing from its copy of items', id);
      }
    }
  }
  return { copies, rows: total };
}
