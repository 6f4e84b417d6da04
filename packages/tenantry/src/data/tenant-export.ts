import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { ClientBase } from 'pg';
import type { TenantRecord } from '../control/tenant-record.ts';
import { listTenantTables, type TenantTableRef } from '../control/tenant-tables.ts';
import { qualified, quoteIdent } from '../sql.ts';
import type { AdminConnection } from '../tiers/admin-connection.ts';
import { copyableColumns, primaryKey, tableChecksum } from '../tiers/tenant-copy.ts';
import { EXPORT_FORMAT_VERSION, type ExportFile, type ExportManifest, filePath } from './archive-format.ts';
import { writeArchive } from './archive-writer.ts';
import { type ControlTable, controlTables } from './control-plane-rows.ts';
import { SpoolFile, withTempDir } from './spool-file.ts';
import { type DataDeps, openTenantTransaction, placeOf, type TenantPlace } from './tenant-place.ts';

/** Options of `tenantry.exportTenant()`. */
export interface ExportOptions {
  /** Rows fetched from the cursor at a time (default 1,000). */
  readonly batchSize?: number;
}

/**
 * Exports one tenant: its rows of every tenant table where it lives (found in the catalog,
 * parents first) and its control-plane rows (the tenant row, its members' accounts and
 * memberships, API keys, roles, sessions, audit entries; no hash, secret or credential).
 *
 * - **One snapshot per database**: a read-only `REPEATABLE READ` transaction in the
 *   tenant's maintenance context where its rows are; for the pool and schema tiers it also
 *   reads the control plane, so the whole export is one instant. A database-tier tenant's
 *   control-plane rows come from a second snapshot of the main database.
 * - **Flat memory**: each table is read through a cursor, `batchSize` rows at a time, into
 *   a spool file (a tar entry needs its size first), then the archive is streamed to `out`,
 *   waiting whenever `out` is slow.
 *
 * @example
 * ```ts
 * const exporter = new TenantExporter(deps);
 * const manifest = await exporter.export(await tenantry.tenants.get('acme'), createWriteStream('acme.tar'));
 * ```
 */
export class TenantExporter {
  readonly #deps: DataDeps;

  constructor(deps: DataDeps) {
    this.#deps = deps;
  }

  async export(tenant: TenantRecord, out: Writable, options: ExportOptions = {}): Promise<ExportManifest> {
    const batchSize = options.batchSize ?? 1000;
    const place = await placeOf(this.#deps, tenant);
    return withTempDir('tenantry-export-', async (dir) => {
      await mkdir(join(dir, 'tables'));
      await mkdir(join(dir, 'control'));
      const files = await this.#spool(tenant, place, dir, batchSize);
      const manifest: ExportManifest = {
        format: 'tenantry-export',
        formatVersion: EXPORT_FORMAT_VERSION,
        exportedAt: new Date().toISOString(),
        tenant: { id: tenant.id, slug: tenant.slug, tier: tenant.tier },
        schema: { migrations: place.migrations.count, version: place.migrations.version },
        snapshot: { isolation: 'repeatable read', databases: place.inMainDatabase ? 1 : 2 },
        files,
      };
      await writeArchive(out, manifest, dir);
      return manifest;
    });
  }

  async #spool(tenant: TenantRecord, place: TenantPlace, dir: string, batchSize: number): Promise<ExportFile[]> {
    const data = await openTenantTransaction(this.#deps, tenant.id, place, 'snapshot');
    let control: AdminConnection | undefined;
    try {
      control = place.inMainDatabase ? data : await this.#controlSnapshot();
      const files: ExportFile[] = [];
      // Children first in the listing: reversed, parents come first (an import's order).
      for (const table of (await listTenantTables(data.client, [place.schema])).reverse()) {
        files.push(await spoolTenantTable(data.client, tenant.id, table, dir, batchSize));
      }
      for (const table of await controlTables(control.client)) {
        files.push(await spoolRows(control.client, tenant.id, table, dir, batchSize));
      }
      await data.client.query('COMMIT');
      if (control !== data) await control.client.query('COMMIT');
      return files;
    } catch (error) {
      await data.client.query('ROLLBACK').catch(() => {});
      if (control && control !== data) await control.client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await data.release();
      if (control && control !== data) await control.release();
    }
  }

  async #controlSnapshot(): Promise<AdminConnection> {
    const client = await this.#deps.admin.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      return { client, release: async () => client.release() };
    } catch (error) {
      client.release();
      throw error;
    }
  }
}

/** One tenant table: its rows (every column but generated ones) and its checksum, in the same snapshot. */
async function spoolTenantTable(
  client: ClientBase,
  tenantId: string,
  table: TenantTableRef,
  dir: string,
  batchSize: number,
): Promise<ExportFile> {
  const columns = await copyableColumns(client, table);
  const key = await primaryKey(client, table);
  const from = qualified(table.schema, table.table);
  const list = columns.map(quoteIdent).join(', ');
  const select = `SELECT row_to_json(r)::text AS j FROM (SELECT ${list} FROM ${from} WHERE tenant_id = $1 ORDER BY ${key}) r`;
  const file = await spoolRows(client, tenantId, { table: table.table, columns, select }, dir, batchSize, 'tenant');
  const sum = await tableChecksum(
    client,
    from,
    columns.filter((c) => c !== 'tenant_id'),
    key,
    tenantId,
  );
  return { ...file, checksum: sum.checksum };
}

/** Streams `table.select` through a cursor into its NDJSON spool file. */
async function spoolRows(
  client: ClientBase,
  tenantId: string,
  table: ControlTable,
  dir: string,
  batchSize: number,
  kind: ExportFile['kind'] = 'control',
): Promise<ExportFile> {
  const path = filePath(kind, table.table);
  const file = new SpoolFile(join(dir, path));
  try {
    // row_to_json keeps every value exact (microseconds, numerics, bytea as hex).
    await client.query(`DECLARE tenantry_export NO SCROLL CURSOR FOR ${table.select}`, [tenantId]);
    for (;;) {
      const { rows } = await client.query<{ j: string }>(`FETCH ${batchSize} FROM tenantry_export`);
      if (rows.length === 0) break;
      await file.write(`${rows.map((r) => r.j).join('\n')}\n`, rows.length);
    }
    await client.query('CLOSE tenantry_export');
  } catch (error) {
    file.abort();
    throw error;
  }
  const done = await file.close();
  return {
    path,
    kind,
    table: table.table,
    columns: [...table.columns],
    rows: done.lines,
    bytes: done.bytes,
    sha256: done.sha256,
  };
}
