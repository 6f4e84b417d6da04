import { z } from 'zod';
import { TenantryError } from '../errors/catalog.ts';

/** Version of the export format this code writes and reads. */
export const EXPORT_FORMAT_VERSION = 1;

/** The name of the manifest, the archive's first entry. */
export const MANIFEST_NAME = 'manifest.json';

/** Longest manifest accepted (a tenant with thousands of tables stays far below). */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

const FileEntry = z
  .object({
    /** Path inside the archive: `tables/<table>.ndjson` or `control/<table>.ndjson`. */
    path: z.string().regex(/^(tables|control)\/[a-z_][a-z0-9_]{0,62}\.ndjson$/),
    /** `tenant`: a tenant table; `control`: the tenant's rows of a control-plane table. */
    kind: z.enum(['tenant', 'control']),
    table: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/),
    /** The columns each line carries, in table order. */
    columns: z.array(z.string().min(1).max(63)).max(1600),
    rows: z.number().int().nonnegative(),
    bytes: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** Tenant tables: md5 over the rows in primary-key order, `tenant_id` left out (see `tableChecksum`). */
    checksum: z
      .string()
      .regex(/^[0-9a-f]{32}$/)
      .optional(),
  })
  .strict();

/** One file of an export, as the manifest lists it. */
export type ExportFile = z.infer<typeof FileEntry>;

const Manifest = z
  .object({
    format: z.literal('tenantry-export'),
    formatVersion: z.number().int().positive(),
    exportedAt: z.string(),
    tenant: z.object({ id: z.uuid(), slug: z.string(), tier: z.enum(['pool', 'schema', 'database']) }).strict(),
    /** How far the tenant tables were migrated: count applied and the last migration's id. */
    schema: z.object({ migrations: z.number().int().nonnegative(), version: z.string().nullable() }).strict(),
    /** One `REPEATABLE READ` snapshot per database read. */
    snapshot: z.object({ isolation: z.literal('repeatable read'), databases: z.number().int().positive() }).strict(),
    /** Tenant tables parents first (the order an import inserts in), then control-plane tables. */
    files: z.array(FileEntry),
  })
  .strict();

/**
 * The `manifest.json` of an export: format and schema version, the tenant's tier, and for
 * every file its row count, size and SHA-256.
 *
 * @example
 * ```ts
 * const manifest: ExportManifest = parseManifest(JSON.parse(text));
 * console.log(manifest.files.map((f) => `${f.table}: ${f.rows}`));
 * ```
 */
export type ExportManifest = z.infer<typeof Manifest>;

/**
 * Validates a manifest read from an archive: shape, format name, a format version this code
 * reads, and file paths that are unique and match their table. Throws `EXPORT_INVALID`.
 *
 * @example
 * ```ts
 * const manifest = parseManifest(JSON.parse(buffer.toString('utf8')));
 * ```
 */
export function parseManifest(value: unknown): ExportManifest {
  const parsed = Manifest.safeParse(value);
  if (!parsed.success) {
    throw new TenantryError('EXPORT_INVALID', 'manifest.json is not a Tenantry export manifest', {
      details: {
        problems: parsed.error.issues.slice(0, 5).map((i) => ({ path: i.path.join('.'), message: i.message })),
      },
    });
  }
  const manifest = parsed.data;
  if (manifest.formatVersion > EXPORT_FORMAT_VERSION) {
    throw new TenantryError(
      'EXPORT_INVALID',
      `export format ${manifest.formatVersion} is newer than this Tenantry reads (${EXPORT_FORMAT_VERSION})`,
    );
  }
  const seen = new Set<string>();
  for (const file of manifest.files) {
    if (seen.has(file.path) || file.path !== filePath(file.kind, file.table)) {
      throw new TenantryError('EXPORT_INVALID', `manifest.json lists ${file.path} twice or under the wrong name`);
    }
    seen.add(file.path);
  }
  return manifest;
}

/** Where a table's rows go in the archive. */
export function filePath(kind: ExportFile['kind'], table: string): string {
  return `${kind === 'tenant' ? 'tables' : 'control'}/${table}.ndjson`;
}
