import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { USAGE_RANKINGS, type UsageRanking } from '../../ops/usage-service.ts';
import type { Tenantry } from '../../tenantry.ts';
import { problems, TenantParam } from '../schemas.ts';

const admin = { tenantry: { admin: true } } as const;
const Window = z
  .string()
  .regex(/^[1-9][0-9]{0,4}[mhd]$/)
  .describe('a window such as 15m, 1h or 7d (at most 7d)');
const Day = z.iso.date().describe('a UTC date, YYYY-MM-DD');

const Figures = z
  .object({
    transactions: z.number(),
    statements: z.number(),
    dbTimeMs: z.number(),
    rowsRead: z.number(),
    rowsWritten: z.number(),
    errors: z.number(),
    requests: z.number(),
    status2xx: z.number(),
    status3xx: z.number(),
    status4xx: z.number(),
    status5xx: z.number(),
    bytesIn: z.number(),
    bytesOut: z.number(),
    apiKeyRequests: z.number(),
  })
  .meta({ id: 'UsageFigures' });

const TopTenantJson = Figures.extend({ tenantId: z.string(), slug: z.string(), tier: z.string(), plan: z.string() });

const DailyUsageJson = Figures.extend({
  day: z.string(),
  tenantId: z.string(),
  storageBytes: z.number().nullable(),
  activeUsers: z.number(),
}).meta({ id: 'DailyUsage' });

const PerformanceJson = z
  .object({
    tenantId: z.string(),
    window: z.string(),
    usage: Figures,
    medianTenant: Figures,
    tenantsActive: z.number(),
    slowStatements: z.array(z.object({ sql: z.string(), maxMs: z.number(), minutes: z.number() })),
    slowStatementsSource: z.string(),
    storageTrend: z.array(z.object({ at: z.string(), storageBytes: z.number(), rows: z.number() })),
    medianStorageBytes: z.number().nullable(),
  })
  .meta({ id: 'TenantPerformance' });

/**
 * Usage and metering on the control plane (admin token): `GET /v1/admin/tenants/top`,
 * `GET /v1/tenants/{id}/usage?from&to[&format=csv]` and `GET /v1/tenants/{id}/performance`.
 * A tenant's own credentials reach none of them.
 */
export async function usageRoutes(app: FastifyInstance, opts: { tenantry: Tenantry<unknown> }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { tenantry } = opts;

  r.get(
    '/v1/admin/tenants/top',
    {
      config: admin,
      schema: {
        tags: ['control plane', 'operations'],
        summary: 'The busiest tenants over a window, across every instance',
        querystring: z.object({
          by: z.enum(USAGE_RANKINGS as [UsageRanking, ...UsageRanking[]]).default('time'),
          window: Window.default('15m'),
          limit: z.coerce.number().int().min(1).max(1000).default(10),
        }),
        response: {
          200: z.object({ by: z.string(), window: z.string(), tenants: z.array(TopTenantJson) }),
          ...problems(400, 401),
        },
      },
    },
    async (req) => ({ ...req.query, tenants: await tenantry.usage.top(req.query) }),
  );

  r.get(
    '/v1/tenants/:tenant/usage',
    {
      config: admin,
      schema: {
        tags: ['control plane', 'operations'],
        summary: "A tenant's daily metering rows (UTC days, inclusive), JSON or CSV",
        params: TenantParam,
        querystring: z.object({ from: Day, to: Day, format: z.enum(['json', 'csv']).default('json') }),
        response: {
          200: z.object({ tenantId: z.string(), from: z.string(), to: z.string(), days: z.array(DailyUsageJson) }),
          ...problems(400, 401, 404),
        },
      },
    },
    async (req, reply) => {
      const tenant = await tenantry.tenants.get(req.params.tenant);
      const days = await tenantry.usage.daily(tenant.id, req.query);
      if (req.query.format === 'csv') {
        // Bypasses the JSON response schema on purpose: the body is text.
        return reply
          .type('text/csv; charset=utf-8')
          .header(
            'content-disposition',
            `attachment; filename="usage-${tenant.slug}-${req.query.from}-${req.query.to}.csv"`,
          )
          .serializer((body: unknown) => String(body))
          .send(tenantry.usage.toCsv(days) as never);
      }
      return { tenantId: tenant.id, from: req.query.from, to: req.query.to, days };
    },
  );

  r.get(
    '/v1/tenants/:tenant/performance',
    {
      config: admin,
      schema: {
        tags: ['control plane', 'operations'],
        summary: "A tenant's usage, slowest statements and storage trend, against the median tenant",
        params: TenantParam,
        querystring: z.object({ window: Window.default('24h') }),
        response: { 200: PerformanceJson, ...problems(400, 401, 404) },
      },
    },
    async (req) => {
      const tenant = await tenantry.tenants.get(req.params.tenant);
      const report = await tenantry.usage.performance(tenant.id, req.query);
      return { ...report, slowStatements: [...report.slowStatements], storageTrend: [...report.storageTrend] };
    },
  );
}
