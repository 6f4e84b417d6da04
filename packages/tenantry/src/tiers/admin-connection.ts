import pg, { type ClientBase, type Pool } from 'pg';
import { connectionConfig } from '../control/connection-url.ts';
import type { ResolvedPlacement } from '../control/placements.ts';

/** An admin connection to one database; `release()` closes or returns it. */
export interface AdminConnection {
  readonly client: ClientBase;
  release(): Promise<void>;
}

/**
 * Opens an admin (owner-capable) connection to `database` on `placement`'s server, or to
 * the placement's own database when `database` is `null`.
 */
export type AdminConnector = (placement: ResolvedPlacement, database: string | null) => Promise<AdminConnection>;

/**
 * The {@link AdminConnector} of an installation: the main pool for the main database, a
 * dedicated client (closed on release) for any other database or server.
 *
 * @example
 * ```ts
 * const connect = adminConnector(tenantry.adminPool, tenantry.config.databaseUrl);
 * const conn = await connect(placement, 'acme_t_1a2b3c');
 * try {
 *   await conn.client.query('SELECT 1');
 * } finally {
 *   await conn.release();
 * }
 * ```
 */
export function adminConnector(admin: Pool, mainUrl: string): AdminConnector {
  return async (placement, database) => {
    if (placement.url === undefined && database === null) {
      const client = await admin.connect();
      return { client, release: async () => client.release() };
    }
    const client = new pg.Client(connectionConfig(placement.url ?? mainUrl, database ?? undefined));
    client.on('error', () => {}); // a dropped admin connection fails its query; it must not crash the process
    await client.connect();
    return { client, release: () => client.end() };
  };
}
