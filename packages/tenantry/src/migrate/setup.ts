import type { ClientBase } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import { isCitus } from '../context/citus-dialect.ts';
import { CONTEXT_SCHEMA } from '../context/context-dialect.ts';
import { TenantryError } from '../errors/catalog.ts';
import { hmacPads, type KeyRing } from '../secrets/keys.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';
import { setupCitus } from './citus-setup.ts';
import { controlPlaneMigrations } from './control-plane.ts';
import { applyMigrations, type MigrationReport } from './runner.ts';
import { satelliteMigrations } from './tiers-migration.ts';

const DUPLICATE = new Set(['42710', '23505']);

async function createRoleIfMissing(client: ClientBase, name: string, attributes: string): Promise<void> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
  if (rowCount) return;
  try {
    await client.query(`CREATE ROLE ${quoteIdent(name)} ${attributes}`);
  } catch (error) {
    // Another process (or database on the same server) created it first: fine.
    if (!DUPLICATE.has((error as { code?: string }).code ?? '')) throw error;
  }
}

/**
 * Creates what Tenantry needs in a database, idempotently, on the admin connection:
 * the owner role (owns tables, runs DDL), the runtime role (LOGIN, NOSUPERUSER,
 * NOBYPASSRLS, owns nothing, cannot read the control plane), the `tenantry` and
 * `tenantry_context` schemas, the control-plane migrations, and the context HMAC key.
 *
 * `kind: 'satellite'` sets up a database that holds tenant rows but not the control
 * plane (a tenant database, a template, a database of tenant schemas): the same roles,
 * schemas, context functions and key, plus a mirror of its tenants' rows.
 */
export async function setupDatabase(
  client: ClientBase,
  config: ResolvedConfig,
  keys: KeyRing,
  kind: 'main' | 'satellite' = 'main',
): Promise<MigrationReport> {
  const { owner, runtime } = config.roles;
  const o = quoteIdent(owner);
  const r = quoteIdent(runtime);
  const { rows } = await client.query<{ su: boolean; createrole: boolean; db: string }>(
    'SELECT rolsuper AS su, rolcreaterole AS createrole, current_database() AS db FROM pg_roles WHERE rolname = current_user',
  );
  const me = rows[0];
  if (!me?.su && !me?.createrole) {
    throw new TenantryError(
      'CONFIG_INVALID',
      'the DATABASE_URL role needs SUPERUSER or CREATEROLE to create the owner and runtime roles',
    );
  }
  await createRoleIfMissing(client, owner, 'NOLOGIN NOSUPERUSER NOBYPASSRLS');
  await createRoleIfMissing(client, runtime, 'LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE');
  // On a Citus cluster the coordinator opens connections to the workers as the role that
  // runs the DDL: the owner must be able to log in there (docs/citus.md says how to limit it).
  if (isCitus(config.dialect)) await client.query(`ALTER ROLE ${o} WITH LOGIN`);
  // Re-assert the runtime role's attributes every time: a role someone widened is narrowed again.
  await client.query(
    `ALTER ROLE ${r} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD ${quoteLiteral(
      keys.runtimePassword(runtime),
    )}`,
  );
  if (!me.su) await client.query(`GRANT ${o} TO CURRENT_USER`);
  const db = quoteIdent(me.db);
  // No temporary objects for the runtime role: a temp table survives the transaction on a
  // pooled connection and could shadow or collect the next tenant's rows. TEMPORARY is a
  // PUBLIC default, so it is revoked from PUBLIC. The owner keeps it: enter() creates the
  // session's context registers (temporary sequences) as the owner.
  await client.query(`REVOKE TEMPORARY ON DATABASE ${db} FROM PUBLIC`);
  await client.query(`REVOKE TEMPORARY ON DATABASE ${db} FROM ${r}`);
  await client.query(`GRANT CONNECT ON DATABASE ${db} TO ${r}`);
  await client.query(`GRANT TEMPORARY ON DATABASE ${db} TO ${o}`);
  await client.query(`GRANT CREATE ON DATABASE ${db} TO ${o}`);
  for (const schema of ['tenantry', CONTEXT_SCHEMA]) {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)} AUTHORIZATION ${o}`);
    await client.query(`REVOKE ALL ON SCHEMA ${quoteIdent(schema)} FROM PUBLIC`);
  }
  await client.query(`GRANT USAGE ON SCHEMA ${quoteIdent(CONTEXT_SCHEMA)} TO ${r}`);
  const tenantSchema = quoteIdent(config.tenantSchema);
  // The search_path every pool- and database-tier transaction runs with, as the runtime
  // role's default: enter() then leaves it alone instead of setting it in each transaction
  // (it still sets it whenever the session's differs, so a session-level SET changes nothing).
  await client.query(`ALTER ROLE ${r} SET search_path = ${tenantSchema}, pg_temp`);
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${tenantSchema} AUTHORIZATION ${o}`);
  await client.query(`GRANT USAGE, CREATE ON SCHEMA ${tenantSchema} TO ${o}`);
  await client.query(`GRANT USAGE ON SCHEMA ${tenantSchema} TO ${r}`);
  await client.query(`
    CREATE TABLE IF NOT EXISTS tenantry.migrations (
      chain text NOT NULL,
      target text NOT NULL,
      id text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (chain, target, id)
    )`);
  await client.query(`ALTER TABLE tenantry.migrations OWNER TO ${o}`);
  const report = await applyMigrations(client, {
    chain: kind === 'main' ? 'control' : 'satellite',
    target: 'main',
    schema: 'tenantry',
    ownerRole: owner,
    runtimeRole: runtime,
    dialect: config.dialect,
    migrations: kind === 'main' ? controlPlaneMigrations(runtime) : satelliteMigrations(runtime),
  });
  if (config.leakproofFullTextSearch) {
    if (!me.su) {
      throw new TenantryError(
        'CONFIG_INVALID',
        'leakproofFullTextSearch needs a superuser DATABASE_URL (only a superuser can mark a function LEAKPROOF)',
      );
    }
    // Per database (pg_proc is per database). The equality and containment functions Tenantry
    // relies on are leakproof already; this adds the full-text match operator's function.
    await client.query('ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF');
  }
  const { ipad, opad } = hmacPads(keys.key('context-hmac'));
  await client.query(
    `INSERT INTO tenantry.context_key (id, ipad, opad, allow_unbound) VALUES (1, $1, $2, $3)
     ON CONFLICT (id) DO UPDATE
       SET ipad = EXCLUDED.ipad, opad = EXCLUDED.opad, allow_unbound = EXCLUDED.allow_unbound, updated_at = now()
     WHERE (tenantry.context_key.ipad, tenantry.context_key.opad, tenantry.context_key.allow_unbound)
       IS DISTINCT FROM (EXCLUDED.ipad, EXCLUDED.opad, EXCLUDED.allow_unbound)`,
    [ipad, opad, config.contextBinding === 'pooler'],
  );
  if (kind === 'main' && isCitus(config.dialect)) {
    await setupCitus(client, {
      owner,
      runtime,
      ipad,
      opad,
      peer: { dn: config.citus.peerCertificateDn, binding: config.citus.peerBinding },
    });
  }
  return report;
}
