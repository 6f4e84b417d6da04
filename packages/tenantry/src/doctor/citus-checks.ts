import type { ClientBase, Pool } from 'pg';
import { NODE_KEY_TABLE } from '../context/cluster-context-functions.ts';
import { CALLER_SQL_FUNCTIONS } from '../migrate/citus-setup.ts';
import { quoteIdent } from '../sql.ts';
import { type Finding, finding } from './finding.ts';

/**
 * The Citus peer binding as the coordinator's database holds it (docs/citus.md, "Peer
 * binding"): the peer identity `setup()` wrote next to the node key, and whether the runtime
 * role may call a Citus function that sends SQL of its choosing over Citus's own connections.
 * Read on the database doctor runs on (the coordinator); `setup()` writes and checks every node.
 */
export async function checkCitusPeer(client: Pool | ClientBase, runtimeRole: string): Promise<Finding[]> {
  const findings: Finding[] = [];
  const { rows } = await client.query<{ key: Record<string, unknown> | null; open: string[] | null }>(
    `SELECT (SELECT pg_catalog.row_to_json(k) FROM ${NODE_KEY_TABLE} k WHERE k.id = 1) AS key,
            (SELECT pg_catalog.array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY ($1)
                AND pg_catalog.has_function_privilege($2, p.oid, 'EXECUTE')) AS open
      WHERE pg_catalog.to_regclass($3) IS NOT NULL`,
    [[...CALLER_SQL_FUNCTIONS], runtimeRole, NODE_KEY_TABLE],
  );
  const row = rows[0];
  // No node key: setup() has not run with dialect 'citus' here; nothing to read yet.
  if (!row?.key) return findings;
  if (row.key.peer_binding === 'network') {
    findings.push(
      finding('CITUS_PEER_BINDING_NETWORK', {
        message:
          "citus.peerBinding is 'network': a node accepts a tenant context with a matching MAC from any connection, so SQL running as the runtime role on a connection of its own straight to a node can replay a context copied with its distributed transaction id. Only pg_hba.conf (the runtime role logging in to the workers from the coordinator alone) stands in the way.",
        fix: "Give Citus's connections a client certificate (citus.node_conninfo sslcert/sslkey, ssl_ca_file on every node), set citus: { peerCertificateDn } (TENANTRY_CITUS_PEER_DN) instead of peerBinding: 'network', and run tenantry setup (docs/citus.md).",
      }),
    );
  } else if (typeof row.key.peer_dn !== 'string') {
    findings.push(
      finding('CITUS_PEER_IDENTITY_MISSING', {
        message:
          'No Citus peer identity is configured: every node but the coordinator backend that entered a context refuses it (TN001), so tenant work on shards outside the coordinator fails.',
        fix: "Set citus: { peerCertificateDn: '<client_dn of Citus's connections>' } (TENANTRY_CITUS_PEER_DN), or peerBinding: 'network' to rely on pg_hba.conf, and run tenantry setup (docs/citus.md).",
      }),
    );
  }
  if (row.open && row.open.length > 0) {
    findings.push(
      finding('CITUS_RUNTIME_ROLE_SENDS_SQL', {
        message: `The runtime role may call ${row.open.join(', ')}: Citus would carry its SQL to the nodes over connections that present the cluster's client certificate, where a replayed context is accepted.`,
        fix: row.open.map((f) => `REVOKE ALL ON FUNCTION ${f} FROM PUBLIC, ${quoteIdent(runtimeRole)};`).join(' '),
      }),
    );
  }
  return findings;
}
