import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from '../embedded/embedded-postgres.ts';
import { TenantryError } from '../errors/catalog.ts';

/** What the CLI resolved from the environment (the stable contract in DESIGN.md). */
export interface CliEnvironment {
  readonly databaseUrl: string;
  readonly secret: string;
  /** Role names from `TENANTRY_OWNER_ROLE` / `TENANTRY_RUNTIME_ROLE` (defaults apply when unset). */
  readonly roles: { owner?: string; runtime?: string };
  /** Set when the CLI started (or joined) the embedded PostgreSQL under `./.tenantry/`. */
  readonly embedded: EmbeddedPostgresHandle | undefined;
  /**
   * `leakproofFullTextSearch` for setup: `TENANTRY_LEAKPROOF_FULL_TEXT_SEARCH` (`true` or
   * `false`), else on for the embedded server only, whose superuser is this development
   * setup's own. The example application searches its items, and passes its own `doctor`.
   */
  readonly leakproofFullTextSearch: boolean;
  /** `TENANTRY_RUNTIME_URL`: the runtime role's connection when it differs (e.g. through PgBouncer). */
  readonly runtimeUrl?: string | undefined;
  /** `TENANTRY_CONTEXT_BINDING`: `pooler` behind a transaction-mode pooler, else `session` (the default). */
  readonly contextBinding?: 'session' | 'pooler' | undefined;
  /** `TENANTRY_DIALECT`: `citus` when `DATABASE_URL` is a Citus coordinator, else `postgres` (the default). */
  readonly dialect?: 'postgres' | 'citus' | undefined;
  /**
   * The Citus peer binding (`citus` option): `TENANTRY_CITUS_PEER_DN`, the subject of the
   * coordinator's client certificate (e.g. `/CN=tenantry-coordinator`), or
   * `TENANTRY_CITUS_PEER_BINDING=network` for the pg_hba-only opt-out. See docs/citus.md.
   */
  readonly citus?: { peerCertificateDn?: string; peerBinding?: 'certificate' | 'network' } | undefined;
  readonly notes: readonly string[];
}

/** The local state directory: embedded PostgreSQL data and the development secret. */
export const STATE_DIR = '.tenantry';

/** The port of an embedded server already running on `dataDir`, read from its `postmaster.pid`. */
function runningEmbeddedPort(dataDir: string): number | undefined {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  try {
    process.kill(pid, 0);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined; // stale pid file: the server is not running
  }
}

/**
 * Resolves `DATABASE_URL` and `TENANTRY_SECRET`. Without `DATABASE_URL`, starts embedded
 * PostgreSQL with its data under `./.tenantry/pg` (or joins the one already running
 * there), and — for that local setup only — keeps a generated secret in
 * `./.tenantry/secret`. Against a real server the secret must be given. Also reads the role
 * names, `TENANTRY_RUNTIME_URL`, `TENANTRY_CONTEXT_BINDING` (tenant work through a
 * transaction-mode pooler such as PgBouncer), `TENANTRY_DIALECT` (a Citus cluster) and
 * `TENANTRY_CITUS_PEER_DN` / `TENANTRY_CITUS_PEER_BINDING` (its peer binding). Exported as `tenantry/environment`, so an
 * application starts the way `tenantry serve` does.
 *
 * @example
 * ```ts
 * const env = await resolveEnvironment();
 * const tenantry = await Tenantry.connect({ databaseUrl: env.databaseUrl, secret: env.secret, roles: env.roles });
 * // …
 * await env.embedded?.stop();
 * ```
 */
export async function resolveEnvironment(env: NodeJS.ProcessEnv = process.env): Promise<CliEnvironment> {
  const notes: string[] = [];
  let databaseUrl = env.DATABASE_URL;
  let embedded: EmbeddedPostgresHandle | undefined;
  const stateDir = resolve(STATE_DIR);
  if (!databaseUrl) {
    const dataDir = join(stateDir, 'pg');
    const port = runningEmbeddedPort(dataDir);
    if (port) {
      databaseUrl = `postgres://postgres:tenantry-embedded@127.0.0.1:${port}/postgres`;
      embedded = { url: databaseUrl, stop: async () => {} };
      notes.push(`DATABASE_URL is unset: using the embedded PostgreSQL already running on port ${port}`);
    } else {
      await mkdir(stateDir, { recursive: true });
      notes.push(`DATABASE_URL is unset: starting embedded PostgreSQL (data in ${dataDir})`);
      embedded = await startEmbeddedPostgres({ dataDir });
      databaseUrl = embedded.url;
    }
  }
  let secret = env.TENANTRY_SECRET;
  if (!secret) {
    if (!embedded) {
      throw new TenantryError(
        'MISSING_SECRET',
        'set TENANTRY_SECRET (e.g. `openssl rand -hex 32`) when DATABASE_URL is set',
      );
    }
    const file = join(stateDir, 'secret');
    if (existsSync(file)) {
      secret = readFileSync(file, 'utf8').trim();
    } else {
      secret = randomBytes(32).toString('hex');
      await writeFile(file, `${secret}\n`, { mode: 0o600 });
      notes.push(`TENANTRY_SECRET is unset: generated a development secret in ${file}`);
    }
  }
  const roles = {
    ...(env.TENANTRY_OWNER_ROLE ? { owner: env.TENANTRY_OWNER_ROLE } : {}),
    ...(env.TENANTRY_RUNTIME_ROLE ? { runtime: env.TENANTRY_RUNTIME_ROLE } : {}),
  };
  const leakproof = env.TENANTRY_LEAKPROOF_FULL_TEXT_SEARCH;
  if (leakproof !== undefined && leakproof !== 'true' && leakproof !== 'false') {
    throw new TenantryError('CONFIG_INVALID', `TENANTRY_LEAKPROOF_FULL_TEXT_SEARCH is "${leakproof}": true or false`);
  }
  const leakproofFullTextSearch = leakproof === undefined ? embedded !== undefined : leakproof === 'true';
  const binding = env.TENANTRY_CONTEXT_BINDING;
  if (binding !== undefined && binding !== 'session' && binding !== 'pooler') {
    throw new TenantryError('CONFIG_INVALID', `TENANTRY_CONTEXT_BINDING is "${binding}": session or pooler`);
  }
  const dialect = env.TENANTRY_DIALECT;
  if (dialect !== undefined && dialect !== 'postgres' && dialect !== 'citus') {
    throw new TenantryError('CONFIG_INVALID', `TENANTRY_DIALECT is "${dialect}": postgres or citus`);
  }
  const peerBinding = env.TENANTRY_CITUS_PEER_BINDING;
  if (peerBinding !== undefined && peerBinding !== 'certificate' && peerBinding !== 'network') {
    throw new TenantryError(
      'CONFIG_INVALID',
      `TENANTRY_CITUS_PEER_BINDING is "${peerBinding}": certificate or network`,
    );
  }
  const peerDn = env.TENANTRY_CITUS_PEER_DN;
  const citus: CliEnvironment['citus'] =
    peerBinding || peerDn
      ? { ...(peerDn ? { peerCertificateDn: peerDn } : {}), ...(peerBinding ? { peerBinding } : {}) }
      : undefined;
  return {
    databaseUrl,
    secret,
    roles,
    embedded,
    leakproofFullTextSearch,
    ...(env.TENANTRY_RUNTIME_URL ? { runtimeUrl: env.TENANTRY_RUNTIME_URL } : {}),
    ...(binding ? { contextBinding: binding } : {}),
    ...(dialect ? { dialect } : {}),
    ...(citus ? { citus } : {}),
    notes,
  };
}
