import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { TestDatabase } from './database.ts';

/**
 * The Citus cluster the Citus suites run on: `CITUS_URL`, a superuser URL of the
 * coordinator's database in which the worker nodes are registered (`pg_dist_node`). Without
 * it those suites skip, with one line saying why (CI has no Citus: it is in neither Debian
 * nor npm, and it builds from source; docs/citus.md).
 */
export const CITUS_URL = process.env.CITUS_URL;

/**
 * The cluster's peer identity, configured as a user would (the `citus` option): the subject
 * of the client certificate the coordinator's Citus connections present
 * (`citus.node_conninfo`), as `pg_stat_ssl.client_dn` shows it, from `CITUS_PEER_DN`
 * (docs/citus.md builds such a cluster). Unset, the suites run with the `'network'`
 * opt-out and say so: the replay case then fails, as it should.
 */
export const CITUS_PEER_DN = process.env.CITUS_PEER_DN;

/** The `citus` option of the suites' Tenantry, from {@link CITUS_PEER_DN}. */
export function citusPeerOptions(): { peerCertificateDn: string } | { peerBinding: 'network' } {
  if (CITUS_PEER_DN) return { peerCertificateDn: CITUS_PEER_DN };
  console.info('CITUS_PEER_DN is not set: running with citus.peerBinding = network (docs/citus.md)');
  return { peerBinding: 'network' };
}

/**
 * Client certificates an attacker might hold, from `CITUS_TLS_DIR` (optional): one signed by
 * the cluster's CA for another subject (`other-cn.crt`/`.key`) and one with the coordinator's
 * subject from another CA (`other-ca.crt`/`.key`). The cases that use them skip without it.
 */
export const CITUS_TLS_DIR = process.env.CITUS_TLS_DIR;

/** The reason printed when there is no cluster. */
export const NO_CITUS = 'CITUS_URL is not set: the Citus suites need a coordinator with a worker (docs/citus.md)';

/** A node of the test cluster. */
export interface ClusterNode {
  readonly host: string;
  readonly port: number;
  readonly coordinator: boolean;
}

function urlOf(base: string, node: { host: string; port: number } | undefined, database: string): string {
  const u = new URL(base);
  if (node) {
    u.hostname = node.host;
    u.port = String(node.port);
  }
  u.pathname = `/${database}`;
  return u.toString();
}

async function run(url: string, statements: readonly string[]): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const s of statements) await c.query(s);
  } finally {
    await c.end();
  }
}

/** The nodes registered in `CITUS_URL`'s database: the coordinator and its workers. */
export async function clusterNodes(base = CITUS_URL as string): Promise<ClusterNode[]> {
  const c = new pg.Client({ connectionString: base });
  await c.connect();
  try {
    const { rows } = await c.query<{ host: string; port: number; coordinator: boolean }>(
      `SELECT nodename AS host, nodeport AS port, groupid = 0 AS coordinator FROM pg_dist_node
        WHERE noderole = 'primary' ORDER BY groupid`,
    );
    return rows;
  } finally {
    await c.end();
  }
}

/**
 * A database of the test file's own on every node of the cluster, with Citus created in
 * each and the nodes registered on the coordinator's (Citus keeps its metadata per
 * database and does not propagate `CREATE DATABASE`), every node holding shards. `url` is
 * the coordinator's.
 */
export async function createCitusDatabase(label: string): Promise<TestDatabase & { nodes: ClusterNode[] }> {
  const base = CITUS_URL as string;
  const nodes = await clusterNodes(base);
  const coordinator = nodes.find((n) => n.coordinator);
  if (!coordinator || nodes.length < 2) throw new Error(`${base}: a coordinator and at least one worker are needed`);
  const suffix = randomBytes(4).toString('hex');
  const name = `tenantry_citus_${label.replace(/[^a-z0-9]/g, '_').slice(0, 20)}_${suffix}`;
  for (const node of nodes) {
    await run(urlOf(base, node, 'postgres'), [`CREATE DATABASE "${name}"`]);
    await run(urlOf(base, node, name), ['CREATE EXTENSION citus']);
  }
  const workers = nodes.filter((n) => !n.coordinator);
  await run(urlOf(base, coordinator, name), [
    `SELECT citus_set_coordinator_host('${coordinator.host}', ${coordinator.port})`,
    ...workers.map((w) => `SELECT citus_add_node('${w.host}', ${w.port})`),
    // Shards on every node, the coordinator's included, so each check meets both kinds.
    ...nodes.map((n) => `SELECT citus_set_node_property('${n.host}', ${n.port}, 'shouldhaveshards', true)`),
  ]);
  const roles = { owner: `tc_${suffix}_owner`, runtime: `tc_${suffix}_runtime` };
  return {
    url: urlOf(base, coordinator, name),
    name,
    roles,
    nodes,
    secret: randomBytes(32).toString('hex'),
    async drop() {
      for (const node of nodes) {
        await run(urlOf(base, node, 'postgres'), [`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`]);
      }
      // Roles are per node too (Citus propagated them); drop them everywhere.
      for (const node of nodes) {
        await run(
          urlOf(base, node, 'postgres'),
          [roles.runtime, roles.owner].map((r) => `DROP ROLE IF EXISTS "${r}"`),
        ).catch(() => {});
      }
    },
  };
}

/** A superuser client on one node's copy of `database` (what tests check behind Tenantry's back). */
export async function nodeClient(node: ClusterNode, database: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: urlOf(CITUS_URL as string, node, database) });
  await c.connect();
  return c;
}

/**
 * A runtime-role client on one node's copy of `database` (what injected SQL could reach).
 * `certificate`: TLS with that client certificate of {@link CITUS_TLS_DIR} (`other-cn`,
 * `other-ca`); none by default (and no TLS).
 */
export async function nodeRuntimeClient(
  base: string,
  node: ClusterNode,
  certificate?: 'other-cn' | 'other-ca',
): Promise<pg.Client> {
  const u = new URL(base);
  u.hostname = node.host;
  u.port = String(node.port);
  const ssl = certificate
    ? {
        rejectUnauthorized: false,
        cert: readFileSync(join(CITUS_TLS_DIR as string, `${certificate}.crt`), 'utf8'),
        key: readFileSync(join(CITUS_TLS_DIR as string, `${certificate}.key`), 'utf8'),
      }
    : undefined;
  const c = new pg.Client({ connectionString: u.toString(), ...(ssl ? { ssl } : {}) });
  await c.connect();
  return c;
}
