import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { MaintenanceOperation } from '../../dbops/maintenance.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems } from '../schemas.ts';

const NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const Name = z.string().regex(NAME, 'a table or index name (letters, digits, _ and $)');

const Session = z.object({
  pid: z.number().int(),
  state: z.string(),
  applicationName: z.string(),
  database: z.string().nullable(),
  transactionSeconds: z.number(),
  query: z.string(),
});

const HealthJson = z
  .object({
    status: z.enum(['ok', 'warning', 'critical']),
    problems: z.array(z.string()),
    connected: z.boolean(),
    serverVersion: z.string(),
    connections: z.object({ used: z.number(), max: z.number(), ratio: z.number() }),
    poolMap: z.record(z.string(), z.number()).nullable(),
    longRunning: z.array(Session),
    idleInTransaction: z.array(Session),
    blocked: z.array(
      z.object({ pid: z.number(), blockedBy: z.array(z.number()), waitingSeconds: z.number(), query: z.string() }),
    ),
    replication: z.array(
      z.object({
        name: z.string(),
        state: z.string(),
        lagSeconds: z.number().nullable(),
        lagBytes: z.number().nullable(),
      }),
    ),
    inRecovery: z.boolean(),
    replicaLagSeconds: z.number().nullable(),
    wraparound: z.object({ database: z.string(), xidAge: z.number(), ratio: z.number() }),
    checkpoints: z.object({ timed: z.number(), requested: z.number(), requestedRatio: z.number() }),
  })
  .meta({ id: 'DatabaseHealth' });

const TableStatsJson = z.object({
  table: z.string(),
  liveRows: z.number(),
  deadRows: z.number(),
  deadRatio: z.number(),
  totalBytes: z.number(),
  tableBytes: z.number(),
  indexBytes: z.number(),
  bloatBytes: z.number(),
  seqScans: z.number(),
  seqRowsRead: z.number(),
  indexScans: z.number(),
  lastVacuum: z.string().nullable(),
  lastAutovacuum: z.string().nullable(),
  lastAnalyze: z.string().nullable(),
  lastAutoanalyze: z.string().nullable(),
});

const IndexStatsJson = z.object({
  index: z.string(),
  table: z.string(),
  bytes: z.number(),
  scans: z.number(),
  unique: z.boolean(),
  valid: z.boolean(),
  definition: z.string(),
});

const StatsJson = z
  .object({
    database: z.string(),
    tables: z.array(TableStatsJson),
    indexes: z.array(IndexStatsJson),
    unusedIndexes: z.array(IndexStatsJson),
    duplicateIndexes: z.array(z.array(z.string())),
    seqScanHeavy: z.array(TableStatsJson),
    deadTupleHeavy: z.array(TableStatsJson),
    cacheHitRatio: z.number().nullable(),
    invalidIndexes: z.array(IndexStatsJson),
  })
  .meta({ id: 'DatabaseStats' });

const StatementJson = z.object({
  queryId: z.string(),
  query: z.string(),
  calls: z.number(),
  totalMs: z.number(),
  meanMs: z.number(),
  rows: z.number(),
  cacheHitRatio: z.number().nullable(),
});

const SlowJson = z
  .object({ available: z.boolean(), reason: z.string().optional(), statements: z.array(StatementJson) })
  .meta({ id: 'SlowQueries' });

const AdviceJson = z
  .object({
    available: z.boolean(),
    reason: z.string().optional(),
    hypopg: z.boolean(),
    suggestions: z.array(
      z.object({
        table: z.string(),
        columns: z.array(z.string()),
        sql: z.string(),
        reason: z.string(),
        statement: z.object({ queryId: z.string(), query: z.string(), calls: z.number(), meanMs: z.number() }),
        costBefore: z.number(),
        hypothetical: z.object({ costAfter: z.number(), used: z.boolean() }).nullable(),
      }),
    ),
    skipped: z.array(z.object({ query: z.string(), reason: z.string() })),
  })
  .meta({ id: 'IndexAdvice' });

const StatementsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(20),
  minMeanMs: z.coerce.number().min(0).max(86_400_000).default(0),
});

const MaintenanceBase = {
  /** Tables of the target's schema; default all of them. */
  tables: z.array(Name).min(1).max(100).optional(),
  /** A tenant (id or slug) whose own schema or database is the target; default the shared tables. */
  tenant: z.string().min(1).max(100).optional(),
  /** Every tenant schema and database instead of one target. */
  fleet: z.boolean().optional(),
  concurrency: z.number().int().min(1).max(64).optional(),
};

const ReportJson = z
  .object({
    target: z.string(),
    operation: z.string(),
    statements: z.array(z.string()),
    durationMs: z.number(),
  })
  .meta({ id: 'MaintenanceReport' });

const MaintenanceResult = z
  .object({
    reports: z.array(ReportJson),
    failed: z.array(z.object({ target: z.string(), error: z.string() })),
    skipped: z.number().int(),
    durationMs: z.number(),
  })
  .meta({ id: 'MaintenanceResult' });

const actorOf = (requestId: string) => `admin-api:${requestId}`;

/** The reports are frozen, read-only values; as JSON they are plain data. */
type Json<T> = T extends readonly (infer U)[]
  ? Json<U>[]
  : T extends object
    ? { -readonly [K in keyof T]: Json<T[K]> }
    : T;
const json = <T>(value: T) => value as Json<T>;

/**
 * The database's health, statistics, slow statements and index advice, and maintenance
 * (`ANALYZE`, `VACUUM`, `REINDEX … CONCURRENTLY`), on the control plane: admin token
 * only. Maintenance is audited (`db.<operation>`), one run per target at a time
 * (`MAINTENANCE_IN_PROGRESS`, 409), and cancelled when the client disconnects.
 * `createServer` registers them; register them on a server of your own that has the
 * Tenantry plugin (`config.tenantry.admin` needs its admin token check).
 *
 * @example
 * ```ts
 * await app.register(tenantryPlugin, { tenantry, adminToken, ... });
 * await app.register(dbAdminRoutes, { tenantry });
 * ```
 */
export async function dbAdminRoutes(app: FastifyInstance, opts: { tenantry: Tenantry<unknown> }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { dbops } = opts.tenantry;
  const admin = { tenantry: { admin: true } };
  const tags = ['control plane'];

  r.get(
    '/v1/admin/db/health',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Database health: connections, pool map, long and blocked sessions, replication, wraparound',
        response: { 200: HealthJson, ...problems(401) },
      },
    },
    async () => {
      const health = await dbops.health();
      return json({ ...health, poolMap: health.poolMap ? { ...health.poolMap } : null });
    },
  );

  r.get(
    '/v1/admin/db/stats',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Table and index statistics: sizes, bloat, dead tuples, vacuum, unused and duplicate indexes',
        querystring: z.object({ schema: Name.optional() }),
        response: { 200: StatsJson, ...problems(400, 401) },
      },
    },
    async (req) => json(await dbops.stats(req.query.schema ? { schemas: [req.query.schema] } : {})),
  );

  r.get(
    '/v1/admin/db/slow-queries',
    {
      config: admin,
      schema: {
        tags,
        summary: 'The slowest statements (pg_stat_statements), or why they are not available',
        querystring: StatementsQuery,
        response: { 200: SlowJson, ...problems(400, 401) },
      },
    },
    async (req) => json(await dbops.slowQueries(req.query)),
  );

  r.get(
    '/v1/admin/db/index-advice',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Indexes led by tenant_id for the slowest statements, checked with hypopg when installed',
        querystring: StatementsQuery,
        response: { 200: AdviceJson, ...problems(400, 401) },
      },
    },
    async (req) => json(await dbops.adviseIndexes(req.query)),
  );

  const maintenance = (operation: MaintenanceOperation, body: z.ZodObject, summary: string) =>
    r.post(
      `/v1/admin/db/${operation}`,
      {
        config: admin,
        schema: { tags, summary, body, response: { 200: MaintenanceResult, ...problems(400, 401, 404, 409) } },
      },
      async (req, reply) => {
        const input = req.body as z.infer<z.ZodObject<typeof MaintenanceBase>> & { full?: boolean; index?: string };
        const signal = disconnectSignal(reply);
        const request = {
          operation,
          actor: actorOf(req.id),
          signal,
          ...(input.tables ? { tables: input.tables } : {}),
          ...(input.full ? { full: true } : {}),
          ...(input.index ? { index: input.index } : {}),
        };
        if (input.fleet) {
          const fleet = await dbops.maintainFleet(request, input.concurrency ? { concurrency: input.concurrency } : {});
          return json({
            reports: fleet.completed,
            failed: fleet.failed,
            skipped: fleet.skipped,
            durationMs: fleet.durationMs,
          });
        }
        const report = await dbops.maintain({ ...request, ...(input.tenant ? { tenant: input.tenant } : {}) });
        return json({ reports: [report], failed: [], skipped: 0, durationMs: report.durationMs });
      },
    );

  maintenance('analyze', z.object(MaintenanceBase), 'ANALYZE the shared tables, one tenant’s, or the fleet’s');
  maintenance(
    'vacuum',
    z.object({ ...MaintenanceBase, full: z.boolean().optional() }),
    'VACUUM (ANALYZE); FULL only when asked (it locks the table)',
  );
  maintenance(
    'reindex',
    z.object({ ...MaintenanceBase, index: Name.optional() }),
    'REINDEX … CONCURRENTLY: rebuild tables’ indexes (or one) without blocking writes',
  );
}

/** Aborts when the client goes away before the answer is sent: the maintenance is cancelled. */
function disconnectSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
