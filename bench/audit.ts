/**
 * The audit entry's cost: a tenant transaction that inserts an item, with and without an
 * audit entry (`audit(tx, …)`, sent with `COMMIT`), and the same entry written as its own
 * statement before `COMMIT` (what it would cost without the deferral). Same run,
 * alternating rounds; ratios to the transaction without an entry. The clients write
 * `--tenants` tenants in turn (default 1: concurrent clients contend for one chain, the
 * worst case).
 *
 *   node bench/audit.ts [--seconds 12] [--rounds 6] [--warmup 1] [--clients 1,8] [--tenants 1] [--quick]
 *
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser.
 * The benchmark works in a database of its own and removes it.
 */
import { itemsMigrations } from '../packages/tenantry/src/example/items.ts';
import { audit, contextOf, type TenantContext, Tenantry } from '../packages/tenantry/src/index.ts';
import type { TenantTransaction } from '../packages/tenantry/src/transaction/tenant-transaction.ts';
import { benchDatabaseUrl } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { measureSides, ServerCpu } from './lib/measure.ts';
import { log } from './lib/print.ts';
import { costTable } from './lib/ratio-table.ts';
import { describeMachine } from './lib/report.ts';
import { parseRoundOptions } from './lib/rounds.ts';
import type { Side } from './lib/workloads.ts';

const INSERT = 'INSERT INTO items (title) VALUES ($1) RETURNING id';

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseRoundOptions(argv, '1,8', { tenants: [1, 1] });
  const db = await createBenchDatabase(benchDatabaseUrl());
  const tenantry = await Tenantry.connect({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: itemsMigrations,
    pool: { max: Math.max(...options.clients) },
  });
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const tenants: TenantContext[] = [];
    for (let i = 0; i < options.tenants; i++) {
      tenants.push(contextOf(await tenantry.tenants.create({ slug: `bench-${i}`, name: `Bench ${i}` })));
    }
    let turn = 0;
    const next = () => tenants[turn++ % tenants.length] as TenantContext;
    const pg = (await tenantry.adminPool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]
      ?.v;
    const machine = await describeMachine(pg ?? 'unknown');
    log(`machine: ${JSON.stringify(machine)}`);
    log(`options: ${JSON.stringify(options)}`);

    let n = 0;
    const insert = async (tx: TenantTransaction<unknown>) => {
      const { rows } = await tx.query<{ id: string }>(INSERT, [`item ${++n}`]);
      return rows[0]?.id as string;
    };
    const sides: Side[] = [
      {
        key: 'plain',
        label: 'insert, no audit entry',
        run: () => tenantry.transaction(next(), insert),
      },
      {
        key: 'audit',
        label: 'insert + audit(tx, …), sent with COMMIT',
        run: () =>
          tenantry.transaction(next(), async (tx) => {
            const id = await insert(tx);
            audit(tx, 'item.created', `item:${id}`, { title: `item ${n}` });
          }),
      },
      {
        key: 'eager',
        label: 'insert + the same entry as its own statement',
        run: () =>
          tenantry.transaction(next(), async (tx) => {
            const id = await insert(tx);
            await tx.query('SELECT tenantry_context.audit_append($1, $2, $3::jsonb, NULL, NULL)', [
              'item.created',
              `item:${id}`,
              JSON.stringify({ title: `item ${n}` }),
            ]);
          }),
      },
    ];
    const cpu = new ServerCpu(tenantry.adminPool);
    for (const clients of options.clients) {
      const results = await measureSides(sides, { ...options, clients, cpu });
      log(costTable(`${clients} client(s), ${options.tenants} tenant(s)`, results, 'plain'));
      log();
    }
    const report = await tenantry.audit.verify();
    const entries = report.chains.reduce((sum, c) => sum + c.entries, 0);
    log(`chains after the run: ${report.chains.length}, ${entries} entries, ${report.ok ? 'valid' : 'BROKEN'}`);
    log(`load average at the end: ${(await describeMachine(machine.postgres)).loadAverage.join(', ')}`);
    return report.ok ? 0 : 1;
  } finally {
    await tenantry.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
