import { z } from 'zod';
import type { TenantRecord } from '../control/tenant-record.ts';

/** RFC 9457 problem details, as every error response carries them. */
export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    code: z.string(),
    requestId: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: 'Problem' });

/** The error responses every route may give, by status. */
export const problems = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, Problem.describe('RFC 9457 problem details')]));

/** A tenant as the control-plane API shows it. */
export const TenantJson = z
  .object({
    id: z.uuid(),
    slug: z.string(),
    name: z.string(),
    status: z.enum(['active', 'suspended', 'offboarding', 'deleted']),
    tier: z.enum(['pool', 'schema', 'database']),
    plan: z.string(),
    limits: z.object({
      maxUsers: z.number().int().nullable(),
      maxStorageMb: z.number().int().nullable(),
      statementTimeoutMs: z.number().int(),
    }),
    features: z.record(z.string(), z.unknown()),
    settings: z.record(z.string(), z.unknown()),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Tenant' });

/** {@link TenantRecord} → {@link TenantJson}. */
export function tenantJson(t: TenantRecord): z.infer<typeof TenantJson> {
  return {
    id: t.id,
    slug: t.slug,
    name: t.name,
    status: t.status,
    tier: t.tier,
    plan: t.plan,
    limits: { ...t.limits },
    features: { ...t.features },
    settings: { ...t.settings },
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
  };
}

/** Path parameter naming a tenant by id or slug. */
export const TenantParam = z.object({ tenant: z.string().min(1).max(100) });
