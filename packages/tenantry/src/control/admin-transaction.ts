import type { Pool, PoolClient } from 'pg';

/**
 * Runs `fn` inside `BEGIN … COMMIT` on a connection of `pool` (the admin pool: control
 * plane work, never tenant data), rolling back on any error. Control-plane changes and
 * their audit entries go through here, so they commit or vanish together.
 *
 * @example
 * ```ts
 * await inTransaction(tenantry.adminPool, async (client) => {
 *   await client.query('UPDATE tenantry.tenants SET plan = $2 WHERE id = $1', [id, 'pro']);
 *   await writeAudit(client, { actor, tenantId: id, action: 'tenant.updated' });
 * });
 * ```
 */
export async function inTransaction<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  options: { readonly begin?: string } = {},
): Promise<T> {
  const client = await pool.connect();
  try {
    // `begin`: statements without parameters sent with BEGIN, in its round trip.
    await client.query(options.begin ? `BEGIN; ${options.begin}` : 'BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
