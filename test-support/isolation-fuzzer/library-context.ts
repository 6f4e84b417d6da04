import pg from 'pg';
import { CLUSTER_CONTEXT_SETTING } from '../../packages/tenantry/src/context/citus-dialect.ts';
import { CONTEXT_SETTING } from '../../packages/tenantry/src/context/context-dialect.ts';
import { type FuzzContext, withTenant } from './context.ts';
import type { Op, Row, TenantState } from './model.ts';
import type { Rng } from './rng.ts';

/** Library operations that tamper with the tenant context and the session: forged, replayed or left behind. */

/**
 * The setting an operation tampers with: the server's context, or, on a Citus cluster, as
 * often the one propagated to the workers (`CLUSTER_CONTEXT_SETTING`). One server draws
 * nothing here, so its random stream (and a seed's replay) is unchanged.
 */
function settingFor(c: FuzzContext, rng: Rng): string {
  if (c.tenantry.config.dialect.name !== 'citus') return CONTEXT_SETTING;
  return rng.chance(0.5) ? CLUSTER_CONTEXT_SETTING : CONTEXT_SETTING;
}

/** A context value read inside another tenant's transaction (then replayed elsewhere). */
async function steal(c: FuzzContext, t: TenantState, rng: Rng, setting = CONTEXT_SETTING): Promise<string> {
  if (setting === CONTEXT_SETTING && c.stolen.length >= 8 && rng.chance(0.8)) return rng.pick(c.stolen);
  const u = c.model.other(t, rng) as TenantState;
  const r = await withTenant(c, u, (tx) => tx.query<{ v: string }>(`SELECT current_setting('${setting}') AS v`));
  const value = r.rows[0]?.v ?? '';
  if (setting !== CONTEXT_SETTING) return value;
  c.stolen.push(value);
  if (c.stolen.length > 16) c.stolen.shift();
  return value;
}

/** Forged and replayed context inside the transaction: refused, or only the caller's rows. */
export async function libForgeContext(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const u = c.model.other(t, rng) as TenantState;
  const variant = rng.pick([
    'set_config-forged',
    'set_config-stolen',
    'set-local-stolen',
    'enter-forged',
    'reset',
    'row-security-off',
    'set-role-owner',
    'search-path-other',
  ] as const);
  const setting = settingFor(c, rng);
  const forged = `${u.record.id}.0.0.${'0'.repeat(64)}`;
  const value = variant.endsWith('stolen') ? await steal(c, t, rng, setting) : forged;
  const schema = c.model.other(t, rng, (s) => s.record.schemaName !== null)?.record.schemaName ?? 'public';
  const owner = c.tenantry.config.roles.owner;
  const prelude: Record<typeof variant, string> = {
    'set_config-forged': `SELECT set_config('${setting}', ${pg.escapeLiteral(value)}, true)`,
    'set_config-stolen': `SELECT set_config('${setting}', ${pg.escapeLiteral(value)}, true)`,
    'set-local-stolen': `SET LOCAL ${setting} = ${pg.escapeLiteral(value)}`,
    'enter-forged': `SELECT tenantry_context.enter(${pg.escapeLiteral(`v1.work.${u.record.id}.1.${Date.now() + 5000}.${'ab'.repeat(32)}`)})`,
    reset: `RESET ${setting}`,
    'row-security-off': 'SET LOCAL row_security = off',
    'set-role-owner': `SET LOCAL ROLE ${pg.escapeIdentifier(owner)}`,
    'search-path-other': `SET LOCAL search_path = ${pg.escapeIdentifier(schema)}, public`,
  };
  op.detail = `${variant} (other: ${u.record.slug}) then select every item: ${prelude[variant].slice(0, 200)}`;
  await c.checker.refused(
    withTenant(c, t, async (tx) => {
      await tx.query(prelude[variant]);
      return (await tx.query<Row>('SELECT tenant_id, id, title, description FROM items')).rows;
    }),
    (rows) => {
      for (const row of rows) c.checker.checkRow(op, row);
    },
  );
}

/**
 * State left on the pooled connection after the transaction: a session-level context
 * value, `search_path`, or a temporary table that shadows `items`. Invariant 3 says a
 * connection returned to the pool carries nothing; whatever does shows up in the reads
 * and writes of whichever tenant gets the connection next.
 */
export async function libSessionState(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const s = c.model.other(t, rng, (u) => u.record.schemaName !== null && t.record.tier !== 'database');
  const variant = rng.pick(['context', 'search-path', 'temp-table'] as const);
  let statement: string;
  if (variant === 'context') {
    const setting = settingFor(c, rng);
    const value = await steal(c, t, rng, setting);
    statement = `SELECT set_config('${setting}', ${pg.escapeLiteral(value)}, false)`;
  } else if (variant === 'search-path' && s) {
    statement = `SELECT set_config('search_path', ${pg.escapeLiteral(pg.escapeIdentifier(s.record.schemaName as string))}, false)`;
  } else {
    statement = `CREATE TEMP TABLE IF NOT EXISTS items (
      tenant_id uuid NOT NULL DEFAULT tenantry_context.current_tenant_id(),
      id uuid NOT NULL DEFAULT gen_random_uuid(),
      title text NOT NULL, description text,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      search tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || coalesce(description, ''))) STORED)`;
  }
  op.detail = `session-level ${variant}: ${statement.replace(/\s+/g, ' ').slice(0, 200)}`;
  await c.checker.refused(
    withTenant(c, t, (tx) => tx.query(statement)),
    () => {
      // Accepted: judged by what the next tenant on this connection reads and writes.
      c.checker.checks++;
    },
  );
}
