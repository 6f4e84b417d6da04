import { z } from 'zod';
import { TenantryError } from '../errors/catalog.ts';

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
/**
 * Any JSON value, registered as an OpenAPI component: zod's own `z.json()` leaves a
 * dangling `#/components/schemas/schema0` reference in the generated document.
 */
const JsonValue: z.ZodType<Json> = z
  .lazy(() =>
    z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(JsonValue), z.record(z.string(), JsonValue)]),
  )
  .meta({ id: 'JsonValue' });
const jsonObject = z.record(z.string(), JsonValue);

/** Limits of a tenant's plan; `null` means unlimited. */
export const LimitsInput = z
  .object({
    // PostgreSQL integer columns: a larger value is bad input, not a 500.
    maxUsers: z.number().int().positive().max(2_147_483_647).nullable(),
    maxStorageMb: z.number().int().positive().max(2_147_483_647).nullable(),
    statementTimeoutMs: z.number().int().min(1).max(86_400_000),
  })
  .partial()
  .strict();

/** Input of `tenants.create()` (and of `POST /v1/tenants`). */
export const CreateTenantInput = z
  .object({
    slug: z
      .string()
      .regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'lower-case letters, digits and inner hyphens, 1-63 characters'),
    name: z.string().trim().min(1).max(200),
    tier: z.enum(['pool', 'schema', 'database']).default('pool'),
    /** Placement name; default `shared`, `schemas` or `databases` by tier. */
    placement: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/)
      .optional(),
    plan: z.string().min(1).max(100).default('free'),
    limits: LimitsInput.default({}),
    features: jsonObject.default({}),
    settings: jsonObject.default({}),
  })
  .strict();

/** Input of `tenants.update()`. */
export const UpdateTenantInput = z
  .object({
    name: z.string().trim().min(1).max(200),
    plan: z.string().min(1).max(100),
    limits: LimitsInput,
    features: jsonObject,
    settings: jsonObject,
  })
  .partial()
  .strict();

export type CreateTenantInput = z.input<typeof CreateTenantInput>;
export type UpdateTenantInput = z.input<typeof UpdateTenantInput>;

/** Parses with `schema`, turning a failure into `INVALID_INPUT` listing each problem. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  throw new TenantryError('INVALID_INPUT', problems.map((p) => `${p.path || '(root)'}: ${p.message}`).join('; '), {
    details: { problems },
  });
}
