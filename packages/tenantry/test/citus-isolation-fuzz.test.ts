import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  CITUS_URL,
  type ClusterNode,
  citusPeerOptions,
  createCitusDatabase,
  NO_CITUS,
} from '../../../test-support/citus.ts';
import type { TestDatabase } from '../../../test-support/database.ts';
import { startServer, type TestServer } from '../../../test-support/http.ts';
import {
  formatIsolationReport,
  fuzzPlans,
  OP_KINDS,
  runIsolationFuzz,
} from '../../../test-support/isolation-fuzzer/index.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { Tenantry } from '../src/index.ts';

/**
 * The isolation fuzzer's pool tier on a Citus cluster (`CITUS_URL`): twelve pool-tier
 * tenants whose shards are spread over the coordinator and the workers, 100,000 random
 * operations (library and HTTP, honest and adversarial: forged, stolen and replayed
 * contexts, both the server's setting and the one propagated to the workers), then a
 * superuser sweep of the distributed `items`. Not one leak. `CITUS_FUZZ_OPS` changes the
 * number of operations, `FUZZ_SEED` replays a run. Without `CITUS_URL` it skips.
 */

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : randomInt(0, 2 ** 32);
const OPS = Number(process.env.CITUS_FUZZ_OPS ?? 100_000);
const REPLAY = `CITUS_URL=… FUZZ_SEED=${SEED} npx vitest run packages/tenantry/test/citus-isolation-fuzz.test.ts`;

if (!CITUS_URL) {
  console.info(`skipped: ${NO_CITUS}`);
  it.skip(NO_CITUS, () => {});
} else {
  let db: TestDatabase & { nodes: ClusterNode[] };
  let tenantry: Tenantry<unknown>;
  let server: TestServer;

  beforeAll(async () => {
    db = await createCitusDatabase('fuzz');
    tenantry = await Tenantry.connect({
      databaseUrl: db.url,
      secret: db.secret,
      roles: db.roles,
      migrations: itemsMigrations,
      dialect: 'citus',
      citus: citusPeerOptions(),
    });
    await tenantry.setup();
    await tenantry.migrate();
    server = await startServer(tenantry, { plans: fuzzPlans() });
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await tenantry?.close();
    await db?.drop();
  });

  it(`${OPS.toLocaleString('en-US')} random operations on pool-tier tenants of a Citus cluster: no leak (seed ${SEED})`, {
    timeout: 3_600_000,
  }, async () => {
    console.log(`citus isolation fuzz: seed ${SEED}; replay with ${REPLAY}`);
    const started = Date.now();
    const report = await runIsolationFuzz({
      tenantry,
      baseUrl: server.url,
      ops: OPS,
      seed: SEED,
      concurrency: 16,
      tenants: { pool: 12, schema: 0, database: 0 },
    });
    const summary = formatIsolationReport(report, REPLAY);
    console.log(`${summary}\n(${Math.round((Date.now() - started) / 1000)} s)`);
    expect(report.ops).toBe(OPS);
    // Every kind ran, but those that need schema-tier tenants (there are none here).
    for (const kind of OP_KINDS) {
      if (OPS >= 20_000 && !kind.includes('other-schema')) {
        expect(report.opsByKind[kind] ?? 0, `${kind} ran`).toBeGreaterThan(0);
      }
    }
    expect(report.opsByTier.pool).toBe(OPS);
    expect(report.sweep.copies).toBe(1);
    expect(report.checks).toBeGreaterThan(OPS);
    expect(report.leaks, `leaks found:\n${summary}`).toBe(0);
    expect(report.anomalies, `anomalies found:\n${summary}`).toBe(0);
  });
}
