/**
 * What Tenantry adds to an ORM: a point lookup by id through `tenantry/prisma` and
 * `tenantry/drizzle` (in a tenant context: a one-statement tenant transaction, row-level
 * security filtering), against the same ORM call with a hand-written `tenant_id` condition on
 * a superuser connection (no transaction, no context, no RLS). Same run, alternating rounds;
 * ratios per ORM to its baseline. Target: ≤ 1.15.
 *
 *   node bench/orm.ts [--seconds 12] [--rounds 6] [--warmup 1] [--clients 1,8] [--tenants 100] [--rows 100] [--quick]
 *
 * Under `tenantPrisma`, `findUnique({ id })` runs as `findFirst` (Prisma batches findUnique
 * across async contexts; see docs/adapters/prisma.md): both are measured, each against the
 * same call on the superuser (whose concurrent findUnique calls Prisma does batch).
 * `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) must be a superuser.
 * The benchmark works in a database of its own and removes it.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PrismaPg } from '@prisma/adapter-pg';
import { and, eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { tenantDrizzleClient } from '../packages/tenantry/src/drizzle/index.ts';
import { contextOf, type TenantContext, Tenantry, withTenant } from '../packages/tenantry/src/index.ts';
import { createTenantPrismaAdapter, tenantPrisma } from '../packages/tenantry/src/prisma/index.ts';
import { drizzleSchema, items } from '../test-support/drizzle-schema.ts';
import { type AppDB, appMigrations } from '../test-support/fixture.ts';
import { benchDatabaseUrl } from './lib/argv.ts';
import { createBenchDatabase } from './lib/database.ts';
import { measureSides, ServerCpu } from './lib/measure.ts';
import { log } from './lib/print.ts';
import { costTable } from './lib/ratio-table.ts';
import { describeMachine } from './lib/report.ts';
import { parseRoundOptions } from './lib/rounds.ts';
import type { Side } from './lib/workloads.ts';

/** The test application's Prisma client (generated, not checked in). */
async function loadPrismaClient() {
  execFileSync(process.execPath, [fileURLToPath(new URL('../scripts/prisma-generate.mjs', import.meta.url))], {
    stdio: 'inherit',
  });
  return (await import('../test-support/prisma/generated/client.ts')).PrismaClient;
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseRoundOptions(argv, '1,8', { tenants: [100, 20], rows: [100, 50] });
  const PrismaClient = await loadPrismaClient();
  const db = await createBenchDatabase(benchDatabaseUrl());
  const poolSize = Math.max(...options.clients);
  const tenantry = await Tenantry.connect<AppDB>({
    databaseUrl: db.url,
    secret: db.secret,
    roles: db.roles,
    migrations: appMigrations,
    pool: { max: poolSize },
  });
  const superuser = new pg.Pool({ connectionString: db.url, max: poolSize });
  const prismaBase = new PrismaClient({ adapter: new PrismaPg(superuser) });
  const prisma = tenantPrisma(new PrismaClient({ adapter: createTenantPrismaAdapter(tenantry) }));
  try {
    await tenantry.setup();
    await tenantry.migrate();
    const tenants: TenantContext[] = [];
    for (let i = 0; i < options.tenants; i++) {
      tenants.push(contextOf(await tenantry.tenants.create({ slug: `bench-${i}`, name: `Bench ${i}` })));
    }
    // Rows loaded as the superuser: every tenant gets `rows` items.
    await superuser.query(
      `INSERT INTO items (tenant_id, title) SELECT t, 'item ' || n FROM unnest($1::uuid[]) t, generate_series(1, $2) n`,
      [tenants.map((t) => t.id), options.rows],
    );
    await superuser.query('ANALYZE items');
    const { rows } = await superuser.query<{ tenant_id: string; id: string }>('SELECT tenant_id, id FROM items');
    const pick = () => rows[Math.floor(Math.random() * rows.length)] as { tenant_id: string; id: string };
    const contexts = new Map(tenants.map((t) => [t.id, t]));
    const as = <T>(tenantId: string, fn: () => Promise<T>) => withTenant(contexts.get(tenantId) as TenantContext, fn);

    const drizzleBase = drizzle({ client: superuser, schema: drizzleSchema });
    const drizzleTenant = drizzle({ client: tenantDrizzleClient(tenantry), schema: drizzleSchema });
    /** Each side checks it found the row: a side that silently finds nothing would look fast. */
    const found = (row: unknown) => {
      if (!row) throw new Error('a lookup found nothing');
    };

    const machine = await describeMachine(
      (await superuser.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? 'unknown',
    );
    log(`machine: ${JSON.stringify(machine)}`);
    log(`options: ${JSON.stringify(options)}`);

    const prismaSides: Side[] = [
      {
        key: 'base',
        label: 'Prisma findUnique({ tenant_id_id }), superuser',
        run: async () => {
          const r = pick();
          found(await prismaBase.item.findUnique({ where: { tenant_id_id: { tenant_id: r.tenant_id, id: r.id } } }));
        },
      },
      {
        key: 'unique',
        label: 'tenantry/prisma findUnique({ id })',
        run: async () => {
          const r = pick();
          found(await as(r.tenant_id, () => prisma.item.findUnique({ where: { id: r.id } })));
        },
      },
      {
        key: 'base-first',
        label: 'Prisma findFirst({ tenant_id, id }), superuser',
        run: async () => {
          const r = pick();
          found(await prismaBase.item.findFirst({ where: { tenant_id: r.tenant_id, id: r.id } }));
        },
      },
      {
        key: 'first',
        label: 'tenantry/prisma findFirst({ id })',
        run: async () => {
          const r = pick();
          found(await as(r.tenant_id, () => prisma.item.findFirst({ where: { id: r.id } })));
        },
      },
    ];
    const drizzleSides: Side[] = [
      {
        key: 'base',
        label: 'Drizzle select … where tenant_id and id, superuser',
        run: async () => {
          const r = pick();
          const [row] = await drizzleBase
            .select()
            .from(items)
            .where(and(eq(items.tenantId, r.tenant_id), eq(items.id, r.id)));
          found(row);
        },
      },
      {
        key: 'tenantry',
        label: 'tenantry/drizzle select … where id',
        run: async () => {
          const r = pick();
          const [row] = await as(r.tenant_id, () => drizzleTenant.select().from(items).where(eq(items.id, r.id)));
          found(row);
        },
      },
    ];
    // The same point lookup as bare SQL: what Tenantry's core costs without any ORM, so the
    // adapters' own share shows (their ratio against this pair's).
    const LOOKUP = 'SELECT tenant_id, id, title, description, created_at FROM items WHERE id = $1';
    const coreSides: Side[] = [
      {
        key: 'base',
        label: 'pg: same SQL + tenant_id = $2, superuser',
        run: async () => {
          const r = pick();
          found((await superuser.query(`${LOOKUP} AND tenant_id = $2`, [r.id, r.tenant_id])).rows[0]);
        },
      },
      {
        key: 'tenantry',
        label: 'tenantry.query: same SQL, RLS only',
        run: async () => {
          const r = pick();
          found((await tenantry.query(contexts.get(r.tenant_id) as TenantContext, LOOKUP, [r.id])).rows[0]);
        },
      },
    ];
    const cpu = new ServerCpu(superuser);
    for (const clients of options.clients) {
      const prismaResults = await measureSides(prismaSides, { ...options, clients, cpu });
      log(costTable(`Prisma, ${clients} client(s): ratios to findUnique on the superuser`, prismaResults, 'base'));
      log();
      const drizzleResults = await measureSides(drizzleSides, { ...options, clients, cpu });
      log(costTable(`Drizzle, ${clients} client(s)`, drizzleResults, 'base'));
      log();
      const coreResults = await measureSides(coreSides, { ...options, clients, cpu });
      log(costTable(`No ORM (Tenantry's own cost), ${clients} client(s)`, coreResults, 'base'));
      log();
    }
    log(`load average at the end: ${(await describeMachine(machine.postgres)).loadAverage.join(', ')}`);
    return 0;
  } finally {
    await prisma.$disconnect();
    await prismaBase.$disconnect();
    await superuser.end();
    await tenantry.close();
    await db.drop();
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
