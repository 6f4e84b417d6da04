import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../../../test-support/fixture.ts';

let f: Fixture;

beforeAll(async () => {
  f = await createFixture('placements');
});

afterAll(async () => {
  await f?.close();
});

describe('placements', () => {
  const url = 'postgres://tenant_db_user:s3cr3t-p4ssw0rd@db-eu-1.internal:5432/acme';

  it('stores connection settings sealed, never in plaintext, and opens them again', async () => {
    const placement = await f.tenantry.placements.create({ name: 'eu-db-1', tier: 'database', connectionUrl: url });
    expect(placement).toMatchObject({ name: 'eu-db-1', tier: 'database', hasCredentials: true });
    expect(JSON.stringify(placement)).not.toContain('s3cr3t');
    const { rows } = await f.tenantry.adminPool.query<{ credentials: Buffer }>(
      'SELECT credentials FROM tenantry.placements WHERE id = $1',
      [placement.id],
    );
    const stored = rows[0]?.credentials as Buffer;
    expect(stored.toString('latin1')).not.toContain('s3cr3t');
    expect(stored.toString('latin1')).not.toContain('db-eu-1');
    expect(await f.tenantry.placements.connectionUrl('eu-db-1')).toBe(url);
    const audit = await f.tenantry.adminPool.query(
      "SELECT 1 FROM tenantry.audit_log WHERE action = 'placement.created'",
    );
    expect(audit.rowCount).toBe(1);
  });

  it('a ciphertext moved to another placement row does not open', async () => {
    await f.tenantry.placements.create({ name: 'eu-db-2', tier: 'database', connectionUrl: `${url}2` });
    await f.tenantry.adminPool.query(
      "UPDATE tenantry.placements SET credentials = (SELECT credentials FROM tenantry.placements WHERE name = 'eu-db-1') WHERE name = 'eu-db-2'",
    );
    await expect(f.tenantry.placements.connectionUrl('eu-db-2')).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
  });

  it('rejects bad input with INVALID_INPUT and writes nothing', async () => {
    const before = (await f.tenantry.placements.list()).length;
    for (const input of [
      { name: 'Bad Name', tier: 'database' },
      { name: 'x', tier: 'moon' },
      { name: 'y', tier: 'database', connectionUrl: 'mysql://nope' },
      { name: 'z', tier: 'pool', extra: 1 },
    ]) {
      await expect(f.tenantry.placements.create(input as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    }
    expect((await f.tenantry.placements.list()).length).toBe(before);
  });

  it('the runtime role cannot read placements', async () => {
    const c = new pg.Client({
      connectionString: (f.tenantry.runtimePool as unknown as { options: { connectionString: string } }).options
        .connectionString,
    });
    await c.connect();
    try {
      await expect(c.query('SELECT credentials FROM tenantry.placements')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
  });
});
