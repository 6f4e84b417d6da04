import { z } from 'zod';
import { API_KEY_ENVIRONMENTS, type ApiKeyEnvironment } from './api-key-format.ts';
import { isPermission, type Permission } from './permissions.ts';

/** An API key as `list()` shows it: never the full key, never its hash. */
export interface ApiKeyRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly environment: ApiKeyEnvironment;
  /** `<prefix>_<env>_<lookup id>`: public, enough to recognise the key in a list or a log. */
  readonly displayPrefix: string;
  readonly scopes: readonly Permission[];
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  /** Updated in batches (every `lastUsedFlushMs`), so it may lag by that much. */
  readonly lastUsedAt: Date | null;
  readonly createdAt: Date;
  readonly createdBy: string;
}

/** What `create()` returns: the key, shown this once, and its record. */
export interface CreatedApiKey {
  readonly key: string;
  readonly record: ApiKeyRecord;
}

/**
 * Input of `create()` (and of `POST /v1/tenants/:id/keys`).
 *
 * @example
 * ```ts
 * const input = CreateApiKeyInput.parse({ name: 'CI', environment: 'live', scopes: ['items:read'] });
 * ```
 */
export const CreateApiKeyInput = z
  .object({
    name: z.string().trim().min(1).max(100),
    environment: z.enum(API_KEY_ENVIRONMENTS),
    scopes: z
      .array(z.string().refine(isPermission, 'not a permission: expected lower-case resource:action'))
      .max(100)
      .default([])
      .transform((scopes) => [...new Set(scopes)]),
    expiresAt: z
      .union([z.date(), z.iso.datetime({ offset: true })])
      .transform((value) => new Date(value))
      .refine((date) => date.getTime() > Date.now(), 'must be in the future')
      .nullable()
      .optional(),
  })
  .strict();

export type CreateApiKeyInput = z.input<typeof CreateApiKeyInput>;

/** A row of `tenantry.api_keys` as {@link API_KEY_COLUMNS} reads it. */
export interface ApiKeyRow {
  id: string;
  tenant_id: string;
  name: string;
  environment: ApiKeyEnvironment;
  display_prefix: string;
  scopes: Permission[];
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_at: Date;
  created_by: string;
}

/** Every column but `hash`: what leaves the store. */
export const API_KEY_COLUMNS =
  'id, tenant_id, name, environment, display_prefix, scopes, expires_at, revoked_at, last_used_at, created_at, created_by';

/** The frozen record of a row. */
export function toApiKeyRecord(row: ApiKeyRow): ApiKeyRecord {
  return Object.freeze({
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    environment: row.environment,
    displayPrefix: row.display_prefix,
    scopes: Object.freeze([...row.scopes]),
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
    createdBy: row.created_by,
  });
}
