import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { ClientBase } from 'pg';
import type { IsolationTier } from '../context/tenant-context.ts';
import { inTransaction } from '../control/admin-transaction.ts';
import type { TenantRecord, TenantRow } from '../control/tenant-record.ts';
import type { TenantRegistry } from '../control/tenant-registry.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { qualified, quoteIdent } from '../sql.ts';
import { copyableColumns, primaryKey, tableChecksum } from '../tiers/tenant-copy.ts';
import { type ExportFile, type ExportManifest, filePath } from './archive-format.ts';
import { readArchive } from './archive-reader.ts';
import { withTempDir } from './spool-file.ts';
import { type DataDeps, openTenantTransaction, placeOf } from './tenant-place.ts';

/** Options of `tenantry.importTenant()`. */
export interface ImportOptions {
  /** Slug of the new tenant (it must be free). */
  readonly slug: string;
  /** Display name; default the exported tenant's. */
  readonly name?: string;
  /** Tier of the new tenant; default the exported tenant's. */
  readonly tier?: IsolationTier;
  /** Placement name; default `shared`, `schemas` or `databases` by tier. */
  readonly placement?: string;
  /** Recorded in the audit log; default `system`. */
  readonly actor?: string;
  /** Rows inserted per statement (default 1,000). */
  readonly batchSize?: number;
  /**
   * Restore over the existing tenant `slug`: the archive is imported into a new tenant
   * first (tier and placement default to the existing tenant's) and verified; only then
   * the new tenant takes the slug and the old one is erased. Any failure before the swap
   * leaves the old tenant as it was. Its users, keys and sessions go with it (an archive
   * carries none), and the tenant's id changes.
   */
  readonly replace?: boolean;
}

/** What an import did. */
export interface ImportReport {
  readonly tenant: TenantRecord;
  /** The exported tenant's id (the rows now carry the new tenant's). */
  readonly sourceTenantId: string;
  /** Per tenant table: rows inserted and the checksum, equal to the export's. */
  readonly tables: readonly { readonly table: string; readonly rows: number; readonly checksum: string }[];
  /** Control-plane tables of the export deliberately not recreated (users, keys, sessions, audit). */
  readonly notImported: readonly string[];
  /** With `replace`: the tenant replaced, now erased (see its `tenant.erasure_verified` audit entry). */
  readonly replaced?: { readonly tenantId: string };
}

/** What an import needs: where rows go, the registry that creates the tenant, this installation's migrations. */
export interface ImporterDeps extends DataDeps {
  readonly tenants: TenantRegistry;
  /** To compare an export's schema version with. */
  readonly migrations: readonly { readonly id: string }[];
}

/**
 * Restores an export as a new tenant, in any tier. The archive is read and checked in full
 * first ({@link readArchive}: manifest, sizes, SHA-256), and its schema version must be one
 * this installation has (`EXPORT_SCHEMA_NEWER` otherwise): a bad file writes nothing. Then
 * the tenant is created (plan, limits, features, settings and custom roles come from the
 * export), and its rows are inserted parents first in **one transaction** in its maintenance
 * context, ids kept and `tenant_id` rewritten; each table's row count and checksum must equal
 * the export's. Any failure rolls the rows back and hard-deletes the new tenant.
 *
 * Users, memberships, API keys, sessions and audit entries are not recreated: an export
 * carries no credentials, and people are invited again on purpose.
 *
 * @example
 * ```ts
 * const importer = new TenantImporter({ ...deps, tenants: tenantry.tenants, migrations: tenantry.config.migrations });
 * const report = await importer.import(createReadStream('acme.tar'), { slug: 'acme-restored', tier: 'schema' });
 * ```
 */
export class TenantImporter {
  readonly #deps: ImporterDeps;

  constructor(deps: ImporterDeps) {
    this.#deps = deps;
  }

  import(input: Readable, options: ImportOptions): Promise<ImportReport> {
    return options.replace ? this.#replace(input, options) : this.#import(input, options);
  }

  async #replace(input: Readable, options: ImportOptions): Promise<ImportReport> {
    const { tenants } = this.#deps;
    const old = await tenants.get(options.slug);
    const actor = options.actor ?? 'system';
    const placement =
      options.placement ?? (options.tier ? undefined : (await this.#deps.placements.resolve(old.placementId)).name);
    const report = await this.#import(input, {
      ...options,
      slug: `${old.slug.slice(0, 40).replace(/-+$/, '')}-restore-${randomBytes(4).toString('hex')}`,
      tier: options.tier ?? old.tier,
      ...(placement ? { placement } : {}),
    });
    let tenant: TenantRecord;
    try {
      tenant = await tenants.replace(old.id, report.tenant.id, { actor });
    } catch (error) {
      await tenants.delete(report.tenant.id, { hard: true, actor }).catch(() => {});
      throw error;
    }
    // The new tenant is in place; erasing the old one failing is ERASURE_INCOMPLETE: rerun its hard delete.
    await tenants.delete(old.id, { hard: true, actor });
    return { ...report, tenant, replaced: { tenantId: old.id } };
  }

  #import(input: Readable, options: ImportOptions): Promise<ImportReport> {
    return withTempDir('tenantry-import-', async (dir) => {
      const manifest = await readArchive(input, dir);
      this.#checkSchema(manifest);
      const [source] = await readLines<SourceTenant>(dir, filePath('control', 'tenants'), manifest);
      if (!source) throw new TenantryError('EXPORT_INVALID', 'the export has no tenant row');
      const roles = await readLines<{ name: string; permissions: string[] }>(
        dir,
        filePath('control', 'roles'),
        manifest,
      );
      const actor = options.actor ?? 'system';
      const tenant = await this.#deps.tenants.create(
        {
          slug: options.slug,
          name: options.name ?? source.name,
          tier: options.tier ?? manifest.tenant.tier,
          ...(options.placement ? { placement: options.placement } : {}),
          plan: source.plan,
          limits: {
            maxUsers: source.max_users,
            maxStorageMb: source.max_storage_mb,
            statementTimeoutMs: source.statement_timeout_ms,
          },
          features: source.features,
          settings: source.settings,
        },
        { actor },
      );
      try {
        const tables = await this.#insert(tenant, manifest, dir, options.batchSize ?? 1000, async (client, tables) => {
          for (const role of roles) {
            await client.query('INSERT INTO tenantry.roles (tenant_id, name, permissions) VALUES ($1, $2, $3)', [
              tenant.id,
              role.name,
              role.permissions,
            ]);
          }
          await writeAudit(client, {
            actor,
            tenantId: tenant.id,
            action: 'tenant.imported',
            details: { sourceTenantId: manifest.tenant.id, tables: tables.map(({ table, rows }) => ({ table, rows })) },
          });
        });
        const notImported = manifest.files
          .filter((f) => f.kind === 'control' && !['tenants', 'roles'].includes(f.table))
          .map((f) => f.table);
        return { tenant, sourceTenantId: manifest.tenant.id, tables, notImported };
      } catch (error) {
        await this.#deps.tenants.delete(tenant.id, { hard: true, actor }).catch(() => {});
        throw error;
      }
    });
  }

  #checkSchema(manifest: ExportManifest): void {
    const { migrations, version } = manifest.schema;
    if (migrations > this.#deps.migrations.length) {
      throw new TenantryError(
        'EXPORT_SCHEMA_NEWER',
        `the export has ${migrations} tenant migrations applied, this installation ${this.#deps.migrations.length}`,
      );
    }
    if (migrations > 0 && this.#deps.migrations[migrations - 1]?.id !== version) {
      throw new TenantryError(
        'EXPORT_INVALID',
        `the export's schema version ${version} is not one of this installation`,
      );
    }
  }

  /** Inserts every tenant table's rows in one transaction; `control` runs in the control plane's. */
  async #insert(
    tenant: TenantRecord,
    manifest: ExportManifest,
    dir: string,
    batchSize: number,
    control: (client: ClientBase, tables: ImportReport['tables']) => Promise<void>,
  ): Promise<ImportReport['tables']> {
    const place = await placeOf(this.#deps, tenant);
    const conn = await openTenantTransaction(this.#deps, tenant.id, place, 'write');
    const tables: { table: string; rows: number; checksum: string }[] = [];
    try {
      await restoreWithoutTriggers(conn.client);
      const files = manifest.files.filter((f) => f.kind === 'tenant');
      for (const file of files) {
        tables.push(await insertTable(conn.client, tenant.id, place.schema, file, dir, batchSize));
      }
      // Checked again once every table is in: a trigger on a later table may have changed an earlier one.
      for (const file of files) await checkTable(conn.client, tenant.id, place.schema, file);
      // The control plane is in the main database: with the rows when they are there too,
      // with triggers on again (the audit log chains its entries in a trigger).
      if (place.inMainDatabase) {
        await setReplicationRole(conn.client, 'origin');
        await control(conn.client, tables);
      } else await inTransaction(this.#deps.admin, (client) => control(client, tables));
      await conn.client.query('COMMIT');
      return tables;
    } catch (error) {
      await conn.client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await conn.release();
    }
  }
}

/** The exported tenant row's fields an import reuses. */
type SourceTenant = Pick<
  TenantRow,
  'name' | 'plan' | 'max_users' | 'max_storage_mb' | 'statement_timeout_ms' | 'features' | 'settings'
>;

async function insertTable(
  client: ClientBase,
  tenantId: string,
  schema: string,
  file: ExportFile,
  dir: string,
  batchSize: number,
): Promise<{ table: string; rows: number; checksum: string }> {
  const table = { schema, table: file.table };
  const to = qualified(schema, file.table);
  const have = new Set(await copyableColumns(client, table));
  const missing = file.columns.filter((c) => !have.has(c));
  if (have.size === 0 || missing.length > 0) {
    throw new TenantryError('EXPORT_INVALID', `table ${file.table} of the export does not fit this installation`, {
      details: { table: file.table, missingColumns: missing },
    });
  }
  const list = file.columns.map(quoteIdent).join(', ');
  // tenant_id is the new tenant's; everything else, ids included, as exported.
  const values = file.columns.map((c) => (c === 'tenant_id' ? '$2::uuid' : quoteIdent(c))).join(', ');
  const insert = `INSERT INTO ${to} (${list}) OVERRIDING SYSTEM VALUE
    SELECT ${values} FROM json_populate_recordset(NULL::${to}, $1::json)`;
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length > 0) await client.query(insert, [`[${batch.join(',')}]`, tenantId]);
    batch = [];
  };
  for await (const line of createInterface({ input: createReadStream(join(dir, file.path)), crlfDelay: Infinity })) {
    if (line.length === 0) continue;
    batch.push(line);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  return checkTable(client, tenantId, schema, file);
}

/** The table's rows of the tenant must have the export's count and checksum. */
async function checkTable(
  client: ClientBase,
  tenantId: string,
  schema: string,
  file: ExportFile,
): Promise<{ table: string; rows: number; checksum: string }> {
  const table = { schema, table: file.table };
  const key = await primaryKey(client, table);
  const sum = await tableChecksum(
    client,
    qualified(schema, file.table),
    file.columns.filter((c) => c !== 'tenant_id'),
    key,
    tenantId,
  );
  if (sum.rows !== file.rows || sum.checksum !== file.checksum) {
    throw new TenantryError(
      'EXPORT_CHECKSUM_MISMATCH',
      `the rows of ${file.table} differ from the export after import (a trigger of the application may have changed them)`,
      { details: { table: file.table } },
    );
  }
  return { table: file.table, ...sum };
}

/**
 * The archive holds every table as it was, derived ones included (counters a trigger keeps):
 * firing the application's triggers again while restoring would count everything twice.
 * Like `pg_restore --disable-triggers`, the import's transaction runs with
 * `session_replication_role = replica` when the admin role may set it; the per-table
 * checksums (every table checked once all are in) stand for the foreign-key checks this
 * skips. A role that may not set it imports with triggers on, and a table a trigger changed
 * fails the final check (`EXPORT_CHECKSUM_MISMATCH`) instead of being kept wrong.
 */
async function restoreWithoutTriggers(client: ClientBase): Promise<void> {
  await setReplicationRole(client, 'replica');
}

/** Sets `session_replication_role` for the transaction where the role may; else leaves it. */
async function setReplicationRole(client: ClientBase, role: 'replica' | 'origin'): Promise<void> {
  await client.query('SAVEPOINT tenantry_replica');
  try {
    await client.query(`SET LOCAL session_replication_role = ${role}`);
    await client.query('RELEASE SAVEPOINT tenantry_replica');
  } catch {
    await client.query('ROLLBACK TO SAVEPOINT tenantry_replica');
  }
}

async function readLines<T>(dir: string, path: string, manifest: ExportManifest): Promise<T[]> {
  if (!manifest.files.some((f) => f.path === path)) return [];
  const out: T[] = [];
  for await (const line of createInterface({ input: createReadStream(join(dir, path)), crlfDelay: Infinity })) {
    if (line.length > 0) out.push(JSON.parse(line) as T);
  }
  return out;
}
