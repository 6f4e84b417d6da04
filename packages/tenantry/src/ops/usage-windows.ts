import type { Pool } from 'pg';

/**
 * Moves the running totals of every window to the current minute (the minutes that left
 * are subtracted); returns how many windows moved. The meter runs it after its first flush
 * of each minute and upkeep hourly, so a reader rarely has minutes to subtract.
 */
export async function advanceUsageWindows(pool: Pick<Pool, 'query'>): Promise<number> {
  const { rows } = await pool.query<{ moved: number }>('SELECT tenantry.usage_windows_advance() AS moved');
  return rows[0]?.moved ?? 0;
}
