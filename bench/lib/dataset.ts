import type { Generated, GeneratedAlways } from 'kysely';
import type pg from 'pg';
import {
  contextOf,
  type TenantContext,
  type TenantMigration,
  type Tenantry,
} from '../../packages/tenantry/src/index.ts';
import type { TenantIdColumn } from '../../packages/tenantry/src/kysely/index.ts';

/** The benchmark's one tenant table: seed 001's Item, as in `test-support/fixture.ts`. */
export interface BenchDB {
  items: {
    tenant_id: TenantIdColumn;
    id: Generated<string>;
    title: string;
    description: string | null;
    created_at: Generated<Date>;
    search: GeneratedAlways<string>;
  };
}

export const benchMigrations: TenantMigration[] = [
  {
    id: '001_items',
    up: (m) =>
      m.tenantTable({
        name: 'items',
        columns: {
          id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
          title: 'text NOT NULL',
          description: 'text',
          created_at: 'timestamptz NOT NULL DEFAULT now()',
          search:
            "tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || coalesce(description, ''))) STORED",
        },
        primaryKey: ['id'],
        // (tenant_id, created_at DESC) and GIN (tenant_id, search) through btree_gin.
        indexes: [{ columns: ['created_at DESC'] }, { columns: ['search'], using: 'gin' }],
      }),
  },
];

/** A seeded PRNG (mulberry32), so every run loads the same vocabulary. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * 500 made-up three-syllable words (`kamodu`, …): never English stop words, so every
 * word of a row is a lexeme. A row has 11–21 of them, so a word is in ~3% of a
 * tenant's rows: a search for one fills LIMIT 20 from a tenant of ~700+ rows.
 */
export function vocabulary(size = 500): string[] {
  const consonants = 'bdfgklmnprstvz';
  const vowels = 'aeiou';
  const random = prng(42);
  const pick = (s: string) => s[Math.floor(random() * s.length)] as string;
  const words = new Set<string>();
  while (words.size < size) {
    words.add(`${pick(consonants)}${pick(vowels)}${pick(consonants)}${pick(vowels)}${pick(consonants)}${pick(vowels)}`);
  }
  return [...words];
}

/** Creates `count` tenants through the public API (`tenants.create`), `parallel` at a time. */
export async function createTenants(
  tenantry: Tenantry<BenchDB>,
  count: number,
  parallel = 4,
): Promise<TenantContext[]> {
  const out: TenantContext[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const slug = `bench-${String(i).padStart(6, '0')}`;
      out[i] = contextOf(await tenantry.tenants.create({ slug, name: `Bench tenant ${i}` }));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return out;
}

function randomWord(optional: boolean): string {
  const word = '($1::text[])[1 + floor(random() * $2)::int]';
  return optional ? `CASE WHEN random() < 0.5 THEN ${word} END` : word;
}

/** Title of 3–5 words, description of 8–16 (concat_ws skips the NULLs of the optional ones). */
const LOAD_SQL = `
INSERT INTO items (tenant_id, title, description, created_at)
SELECT ($3::uuid[])[1 + g % $4],
       concat_ws(' ', ${[false, false, false, true, true].map(randomWord).join(', ')}),
       concat_ws(' ', ${Array.from({ length: 16 }, (_, i) => randomWord(i >= 8)).join(', ')}),
       now() - random() * interval '365 days'
  FROM generate_series($5::int, $6::int) AS g`;

/**
 * Bulk-loads `rows` items round-robin over the tenants (so a tenant's rows are spread
 * over the heap, as years of interleaved inserts would leave them), on the superuser
 * pool: `tenant_id` is set explicitly and row-level security does not apply. The two
 * secondary indexes are dropped first and rebuilt after (much faster than maintaining
 * the GIN index row by row), then the table is vacuumed, analyzed and checkpointed.
 */
export async function loadItems(
  admin: pg.Pool,
  tenants: readonly TenantContext[],
  rows: number,
  words: readonly string[],
  progress: (done: number) => void,
): Promise<void> {
  const { rows: indexes } = await admin.query<{ name: string; def: string }>(
    `SELECT indexname AS name, indexdef AS def FROM pg_indexes
      WHERE schemaname = 'public' AND tablename = 'items' AND indexname <> 'items_pkey'`,
  );
  for (const index of indexes) await admin.query(`DROP INDEX "${index.name}"`);
  const ids = tenants.map((t) => t.id);
  const chunk = 50_000;
  let start = 0;
  let done = 0;
  const worker = async () => {
    while (start < rows) {
      const from = start;
      const to = Math.min(rows, from + chunk) - 1;
      start = to + 1;
      await admin.query(LOAD_SQL, [words, words.length, ids, ids.length, from, to]);
      done += to - from + 1;
      progress(done);
    }
  };
  // Two loaders: the machine this was written for has two cores.
  await Promise.all([worker(), worker()]);
  const client = await admin.connect();
  try {
    await client.query(`SET maintenance_work_mem = '512MB'`);
    // One index build per connection, in parallel.
    await Promise.all(
      indexes.map(async (index, i) => {
        if (i === 0) return client.query(index.def);
        const other = await admin.connect();
        try {
          await other.query(`SET maintenance_work_mem = '512MB'`);
          return await other.query(index.def);
        } finally {
          other.release();
        }
      }),
    );
  } finally {
    client.release();
  }
  await admin.query('VACUUM (ANALYZE) items');
  await admin.query('CHECKPOINT');
}

/** A random sample of existing rows (tenant index, row id), for point lookups. */
export async function sampleRows(
  admin: pg.Pool,
  tenants: readonly TenantContext[],
  rows: number,
  wanted = 50_000,
): Promise<{ tenant: number; id: string }[]> {
  const index = new Map(tenants.map((t, i) => [t.id, i]));
  const percent = Math.min(100, (100 * wanted) / rows);
  const { rows: sample } = await admin.query<{ tenant_id: string; id: string }>(
    `SELECT tenant_id, id FROM items TABLESAMPLE BERNOULLI (${percent}) REPEATABLE (7)`,
  );
  return sample.map((r) => ({ tenant: index.get(r.tenant_id) as number, id: r.id }));
}

/** Table and index sizes, for the report. */
export async function relationSizes(admin: pg.Pool): Promise<{ name: string; size: string }[]> {
  const { rows } = await admin.query<{ name: string; size: string }>(
    `SELECT c.relname AS name, pg_size_pretty(pg_relation_size(c.oid)) AS size
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND (c.relname = 'items' OR c.oid IN (SELECT indexrelid FROM pg_index i
            JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = 'items'))
      ORDER BY c.relname`,
  );
  return rows;
}
