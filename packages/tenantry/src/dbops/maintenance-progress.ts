import type { AdminConnection } from '../tiers/admin-connection.ts';

/**
 * Progress of a running maintenance statement, as PostgreSQL reports it in
 * `pg_stat_progress_vacuum`, `pg_stat_progress_analyze` and `pg_stat_progress_create_index`
 * (which also covers `REINDEX … CONCURRENTLY`).
 */
export interface MaintenanceProgress {
  readonly command: 'vacuum' | 'analyze' | 'create index' | 'reindex';
  /** PostgreSQL's phase name, e.g. `scanning heap`, `building index`. */
  readonly phase: string;
  readonly relation: string | null;
  /** Blocks done and total of the current phase (0 when the phase does not count blocks). */
  readonly blocksDone: number;
  readonly blocksTotal: number;
}

const PROGRESS_SQL = `
SELECT 'vacuum' AS command, phase, relid::regclass::text AS relation, heap_blks_scanned AS done, heap_blks_total AS total
  FROM pg_stat_progress_vacuum WHERE pid = $1
UNION ALL
SELECT 'analyze', phase, relid::regclass::text, sample_blks_scanned, sample_blks_total
  FROM pg_stat_progress_analyze WHERE pid = $1
UNION ALL
SELECT CASE WHEN command LIKE 'REINDEX%' THEN 'reindex' ELSE 'create index' END, phase,
       relid::regclass::text, blocks_done, blocks_total
  FROM pg_stat_progress_create_index WHERE pid = $1`;

/**
 * Polls the progress views for backend `pid` every `intervalMs` (default 1 s) on a
 * connection of its own, and calls `report` when something is running; returns the
 * function that stops it (and closes the connection).
 *
 * @example
 * ```ts
 * const stop = watchProgress({ connect }, pid, (p) => console.error(`${p.command} ${p.phase} ${p.blocksDone}/${p.blocksTotal}`));
 * ```
 */
export function watchProgress(
  deps: { connect: () => Promise<AdminConnection> },
  pid: number,
  report: (progress: MaintenanceProgress) => void,
  intervalMs = 1000,
): () => void {
  let stopped = false;
  let conn: AdminConnection | undefined;
  let busy = false;
  const tick = async () => {
    if (busy || stopped) return;
    busy = true;
    try {
      if (!conn) {
        const opened = await deps.connect();
        conn = opened;
      }
      if (stopped) return;
      const { rows } = await conn.client.query<{
        command: MaintenanceProgress['command'];
        phase: string;
        relation: string | null;
        done: string | null;
        total: string | null;
      }>(PROGRESS_SQL, [pid]);
      for (const r of rows) {
        report(
          Object.freeze({
            command: r.command,
            phase: r.phase,
            relation: r.relation,
            blocksDone: Number(r.done ?? 0),
            blocksTotal: Number(r.total ?? 0),
          }),
        );
      }
    } catch {
      // progress is best effort: the run goes on without it
    } finally {
      busy = false;
      if (stopped) close();
    }
  };
  const close = () => {
    const c = conn;
    conn = undefined;
    if (c) void c.release();
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
    if (!busy) close(); // else the tick in flight closes it when its query is done
  };
}
