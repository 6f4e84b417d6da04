import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';

/** The baseline's one statement: the SELECT Tenantry's route runs, with the tenant predicate spelled out. */
export const BARE_SQL =
  'SELECT id, title, description, created_at, updated_at FROM items WHERE tenant_id = $1 AND id = $2';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Row {
  id: string;
  title: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

/**
 * The baseline: what a team without Tenantry would write for `GET /v1/items/:id`. Plain
 * Fastify (no plugins, no schemas: JSON.stringify), the tenant taken on trust from an
 * `X-Tenant-ID` header (no authentication, no admission), one autocommit SELECT on a plain
 * pg.Pool logged in as `databaseUrl`'s role (the superuser: no RLS), and the same JSON body
 * as Tenantry's route.
 */
export function createBareServer(options: {
  databaseUrl: string;
  poolMax: number;
  idleTimeoutMs: number;
  /** Name the statement (`--bare-prepared`): pg then prepares it once per connection. */
  prepared?: boolean;
}): {
  app: FastifyInstance;
  pool: pg.Pool;
} {
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.poolMax,
    idleTimeoutMillis: options.idleTimeoutMs,
  });
  pool.on('error', () => {});
  const app = Fastify({ logger: false });
  const notFound = { status: 404, code: 'NOT_FOUND' };
  app.get<{ Params: { id: string } }>('/v1/items/:id', async (req, reply) => {
    const tenantId = req.headers['x-tenant-id'];
    const { id } = req.params;
    if (typeof tenantId !== 'string' || !UUID.test(tenantId) || !UUID.test(id)) return reply.code(404).send(notFound);
    const { rows } = await pool.query<Row>(
      options.prepared
        ? { name: 'bare_item', text: BARE_SQL, values: [tenantId, id] }
        : { text: BARE_SQL, values: [tenantId, id] },
    );
    const row = rows[0];
    if (!row) return reply.code(404).send(notFound);
    return {
      id: row.id,
      title: row.title,
      description: row.description,
      createdAt: row.created_at.toISOString(),
      updatedAt: row.updated_at.toISOString(),
    };
  });
  app.addHook('onClose', async () => pool.end());
  return { app, pool };
}
