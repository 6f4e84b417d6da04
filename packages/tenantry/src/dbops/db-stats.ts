import type { Pool } from 'pg';

/** One table of {@link DatabaseStats}. */
export interface TableStats {
  /** `schema.table`, unquoted. */
  readonly table: string;
  readonly liveRows: number;
  readonly deadRows: number;
  /** Dead rows over all rows (0–1). */
  readonly deadRatio: number;
  readonly totalBytes: number;
  readonly tableBytes: number;
  readonly indexBytes: number;
  /**
   * Estimated bloat: bytes beyond what the live rows need at their average width (from
   * `pg_stats`), plus the dead rows' share. An estimate — `pgstattuple` measures it exactly.
   */
  readonly bloatBytes: number;
  readonly seqScans: number;
  readonly seqRowsRead: number;
  readonly indexScans: number;
  readonly lastVacuum: string | null;
  readonly lastAutovacuum: string | null;
  readonly lastAnalyze: string | null;
  readonly lastAutoanalyze: string | null;
}

/** One index of {@link DatabaseStats}. */
export interface IndexStats {
  readonly index: string;
  readonly table: string;
  readonly bytes: number;
  readonly scans: number;
  readonly unique: boolean;
  readonly valid: boolean;
  readonly definition: string;
}

/** What {@link databaseStats} found in one database. */
export interface DatabaseStats {
  readonly database: string;
  readonly tables: readonly TableStats[];
  readonly indexes: readonly IndexStats[];
  /** Indexes never scanned since the statistics reset that enforce nothing (not unique, not a constraint). */
  readonly unusedIndexes: readonly IndexStats[];
  /** Groups of indexes with the same table, columns, expressions, predicate and method: all but one are dead weight. */
  readonly duplicateIndexes: readonly (readonly string[])[];
  /** Tables read mostly by sequential scans (more sequential than index scans, and over `seqScanRowsFloor` rows read). */
  readonly seqScanHeavy: readonly TableStats[];
  /** Tables with more than 10 % dead rows (and at least 1,000): vacuum is behind. */
  readonly deadTupleHeavy: readonly TableStats[];
  /** Share of block reads served from shared buffers (0–1; below 0.99 on an OLTP load deserves a look). */
  readonly cacheHitRatio: number | null;
  /** Indexes left INVALID by a failed `CREATE INDEX CONCURRENTLY`: drop them and create again. */
  readonly invalidIndexes: readonly IndexStats[];
}

/**
 * Table and index statistics of the database behind `pool`, limited to `schemas` (default:
 * every schema but the system ones): sizes, bloat estimate, dead tuples, last (auto)vacuum
 * and analyze, index usage, unused and duplicate indexes, sequential-scan-heavy tables
 * and the cache hit ratio. Statistics views and catalogs only: nothing is scanned.
 *
 * @example
 * ```ts
 * const stats = await databaseStats(tenantry.adminPool, { schemas: ['public'] });
 * for (const i of stats.unusedIndexes) console.log(`unused: ${i.index} (${i.bytes} bytes)`);
 * ```
 */
export async function databaseStats(
  pool: Pool,
  options: { schemas?: readonly string[]; seqScanRowsFloor?: number } = {},
): Promise<DatabaseStats> {
  const schemas = options.schemas ? [...options.schemas] : null;
  const floor = options.seqScanRowsFloor ?? 10_000;
  const [db, tables, indexes] = await Promise.all([
    pool.query<{ datname: string; ratio: string | null }>(
      `SELECT datname, CASE WHEN blks_hit + blks_read > 0 THEN round(blks_hit::numeric / (blks_hit + blks_read), 4) END AS ratio
         FROM pg_stat_database WHERE datname = current_database()`,
    ),
    pool.query<TableRow>(TABLES_SQL, [schemas]),
    pool.query<IndexRow>(INDEXES_SQL, [schemas]),
  ]);
  const tableStats = tables.rows.map(toTable);
  const indexStats = indexes.rows.map(toIndex);
  const groups = new Map<string, string[]>();
  for (const r of indexes.rows) {
    const list = groups.get(r.signature) ?? [];
    list.push(r.index);
    groups.set(r.signature, list);
  }
  const constraintBacked = new Set(indexes.rows.filter((r) => r.constraint_backed).map((r) => r.index));
  return Object.freeze({
    database: db.rows[0]?.datname ?? '',
    tables: Object.freeze(tableStats),
    indexes: Object.freeze(indexStats),
    unusedIndexes: Object.freeze(
      indexStats.filter((i) => i.scans === 0 && !i.unique && i.valid && !constraintBacked.has(i.index)),
    ),
    duplicateIndexes: Object.freeze([...groups.values()].filter((g) => g.length > 1).map((g) => Object.freeze(g))),
    seqScanHeavy: Object.freeze(tableStats.filter((t) => t.seqScans > t.indexScans && t.seqRowsRead >= floor)),
    deadTupleHeavy: Object.freeze(tableStats.filter((t) => t.deadRows >= 1000 && t.deadRatio > 0.1)),
    cacheHitRatio: db.rows[0]?.ratio == null ? null : Number(db.rows[0].ratio),
    invalidIndexes: Object.freeze(indexStats.filter((i) => !i.valid)),
  });
}

interface TableRow {
  table: string;
  live: string;
  dead: string;
  total_bytes: string;
  table_bytes: string;
  index_bytes: string;
  expected_bytes: string | null;
  seq_scan: string;
  seq_tup_read: string;
  idx_scan: string | null;
  last_vacuum: Date | null;
  last_autovacuum: Date | null;
  last_analyze: Date | null;
  last_autoanalyze: Date | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

function toTable(r: TableRow): TableStats {
  const live = Number(r.live);
  const dead = Number(r.dead);
  const tableBytes = Number(r.table_bytes);
  // Without statistics (never analyzed) there is no width to estimate from: count the dead share only.
  const expected =
    r.expected_bytes === null ? tableBytes * (live / Math.max(1, live + dead)) : Number(r.expected_bytes);
  return Object.freeze({
    table: r.table,
    liveRows: live,
    deadRows: dead,
    deadRatio: live + dead > 0 ? Math.round((dead / (live + dead)) * 10_000) / 10_000 : 0,
    totalBytes: Number(r.total_bytes),
    tableBytes,
    indexBytes: Number(r.index_bytes),
    bloatBytes: Math.max(0, Math.round(tableBytes - expected)),
    seqScans: Number(r.seq_scan),
    seqRowsRead: Number(r.seq_tup_read),
    indexScans: Number(r.idx_scan ?? 0),
    lastVacuum: iso(r.last_vacuum),
    lastAutovacuum: iso(r.last_autovacuum),
    lastAnalyze: iso(r.last_analyze),
    lastAutoanalyze: iso(r.last_autoanalyze),
  });
}

// Expected size: live rows × (average row width from pg_stats + 24 bytes of tuple header +
// 4 of line pointer), over the fill factor's 8 KiB pages. The classic estimate, simplified.
const TABLES_SQL = `
SELECT s.schemaname || '.' || s.relname AS table,
       s.n_live_tup AS live, s.n_dead_tup AS dead,
       pg_total_relation_size(s.relid) AS total_bytes,
       pg_relation_size(s.relid) AS table_bytes,
       pg_indexes_size(s.relid) AS index_bytes,
       (SELECT CASE WHEN count(*) > 0 THEN
                 ceil(s.n_live_tup * (sum(st.avg_width) + 28) / 8168.0) * 8192 END
          FROM pg_stats st WHERE st.schemaname = s.schemaname AND st.tablename = s.relname) AS expected_bytes,
       s.seq_scan, s.seq_tup_read, s.idx_scan,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze
  FROM pg_stat_user_tables s
 WHERE ($1::text[] IS NULL OR s.schemaname = ANY($1))
   AND s.schemaname NOT IN ('tenantry', 'tenantry_context')
 ORDER BY pg_total_relation_size(s.relid) DESC`;

interface IndexRow {
  index: string;
  table: string;
  bytes: string;
  scans: string;
  unique: boolean;
  valid: boolean;
  constraint_backed: boolean;
  definition: string;
  signature: string;
}

function toIndex(r: IndexRow): IndexStats {
  return Object.freeze({
    index: r.index,
    table: r.table,
    bytes: Number(r.bytes),
    scans: Number(r.scans),
    unique: r.unique,
    valid: r.valid,
    definition: r.definition,
  });
}

// Two indexes are duplicates when table, key columns, opclasses, expressions, predicate
// and access method are equal (a unique and a non-unique one on the same key count too:
// the unique one serves every read the other does).
const INDEXES_SQL = `
SELECT s.schemaname || '.' || s.indexrelname AS index,
       s.schemaname || '.' || s.relname AS table,
       pg_relation_size(s.indexrelid) AS bytes,
       s.idx_scan AS scans,
       i.indisunique AS unique, i.indisvalid AS valid,
       EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) AS constraint_backed,
       pg_get_indexdef(i.indexrelid) AS definition,
       concat_ws('|', i.indrelid, c.relam, i.indkey::text, i.indclass::text,
                 coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), '')) AS signature
  FROM pg_stat_user_indexes s
  JOIN pg_index i ON i.indexrelid = s.indexrelid
  JOIN pg_class c ON c.oid = s.indexrelid
 WHERE ($1::text[] IS NULL OR s.schemaname = ANY($1))
   AND s.schemaname NOT IN ('tenantry', 'tenantry_context')
 ORDER BY pg_relation_size(s.indexrelid) DESC`;
