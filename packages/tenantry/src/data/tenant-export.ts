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
  /**
   * Called after each batch and each table with what is done of the total (the totals are
   * counted first, in the export's snapshot). Keep it cheap: it runs between two fetches.
   */
  readonly onProgress?: (progress: ExportProgress) => void;
  /** Aborting stops the export at the next batch; it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** How far an export is: tables and rows written to the spool, of the totals of its snapshot. */
export interface ExportProgress {
  readonly tablesDone: number;
  readonly tablesTotal: number;
  readonly rowsDone: number;
  readonly rowsTotal: number;
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
      const files = await this.#spool(tenant, place, dir, batchSize, options);
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

  async #spool(
    tenant: TenantRecord,
    place: TenantPlace,
    dir: string,
    batchSize: number,
    options: ExportOptions,
  ): Promise<ExportFile[]> {
    const data = await openTenantTransaction(this.#deps, tenant.id, place, 'snapshot');
    let control: AdminConnection | undefined;
    try {
      control = place.inMainDatabase ? data : await this.#controlSnapshot();
      // Children first in the listing: reversed, parents come first (an import's order).
      const tenantTables = (await listTenantTables(data.client, [place.schema])).reverse();
      const controls = await controlTables(control.client);
      const progress = await this.#progress(data.client, control.client, tenant.id, tenantTables, controls, options);
      const files: ExportFile[] = [];
      for (const table of tenantTables) {
        files.push(await spoolTenantTable(data.client, tenant.id, table, dir, batchSize, progress));
      }
      for (const table of controls) {
        files.push(await spoolRows(control.client, tenant.id, table, dir, batchSize, progress));
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

  /** Counts the totals in the snapshot (only when someone listens) and returns the batch callback. */
  async #progress(
    data: ClientBase,
    control: ClientBase,
    tenantId: string,
    tenantTables: readonly TenantTableRef[],
    controls: readonly ControlTable[],
    options: ExportOptions,
  ): Promise<Progress> {
    const { onProgress, signal } = options;
    signal?.throwIfAborted();
    const state = { tablesDone: 0, tablesTotal: tenantTables.length + controls.length, rowsDone: 0, rowsTotal: 0 };
    if (onProgress) {
      for (const t of tenantTables) {
        const from = qualified(t.schema, t.table);
        state.rowsTotal += await countOf(data, `SELECT 1 FROM ${from} WHERE tenant_id = $1`, tenantId);
      }
      for (const t of controls) state.rowsTotal += await countOf(control, t.select, tenantId);
      onProgress({ ...state });
    }
    return (rows, tableDone) => {
      signal?.throwIfAborted();
      state.rowsDone += rows;
      if (tableDone) state.tablesDone += 1;
      onProgress?.({ ...state });
    };
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

/** Reports `rows` more rows spooled (and, with `tableDone`, one more table); throws once aborted. */
type Progress = (rows: number, tableDone: boolean) => void;

async function countOf(client: ClientBase, select: string, tenantId: string): Promise<number> {
  const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM (${select}) s`, [tenantId]);
  return Number(rows[0]?.n ?? 0);
}

/** One tenant table: its rows (every column but generated ones) and its checksum, in the same snapshot. */
async function spoolTenantTable(
  client: ClientBase,
  tenantId: string,
  table: TenantTableRef,
  dir: string,
  batchSize: number,
  progress: Progress,
): Promise<ExportFile> {
  const columns = await copyableColumns(client, table);
  const key = await primaryKey(client, table);
  const from = qualified(table.schema, table.table);
  const list = columns.map(quoteIdent).join(', ');
  const select = `SELECT row_to_json(r)::text AS j FROM (SELECT ${list} FROM ${from} WHERE tenant_id = $1 ORDER BY ${key}) r`;
  const file = await spoolRows(
    client,
    tenantId,
    { table: table.table, columns, select },
    dir,
    batchSize,
    progress,
    'tenant',
  );
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
  progress: Progress,
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
      progress(rows.length, false);
    }
    await client.query('CLOSE tenantry_export');
    progress(0, true);
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
