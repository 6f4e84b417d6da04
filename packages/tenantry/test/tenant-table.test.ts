import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { type TenantRecord, Tenantry } from '../src/index.ts';
import { type TenantTableDefinition, tenantTableSql } from '../src/schema/tenant-table.ts';

/** Parent: surrogate key, a unique code, a partial index, GIN full-text, INCLUDE. */
const projects: TenantTableDefinition = {
  name: 'projects',
  columns: {
    id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
    code: 'text NOT NULL',
    title: 'text NOT NULL',
    archived: 'boolean NOT NULL DEFAULT false',
    created_at: 'timestamptz NOT NULL DEFAULT now()',
    search: "tsvector GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED",
  },
  primaryKey: ['id'],
  unique: [['code']],
  indexes: [
    { columns: ['title'], where: 'NOT archived', name: 'projects_live_title' },
    { columns: ['search'], using: 'gin' },
    { columns: ['created_at DESC'], include: ['title', 'code'] },
    { columns: ['lower(code)'], unique: true, name: 'projects_code_ci' },
  ],
};

/** Child with a composite primary key and a foreign key to the parent. */
const tasks: TenantTableDefinition = {
  name: 'tasks',
  columns: { project_id: 'uuid NOT NULL', seq: 'integer NOT NULL', title: 'text NOT NULL' },
  primaryKey: ['project_id', 'seq'],
  foreignKeys: [{ columns: ['project_id'], references: { table: 'projects', columns: ['id'] }, onDelete: 'cascade' }],
};

/** Composite foreign key to the child's composite key, ON DELETE SET NULL. */
const links: TenantTableDefinition = {
  name: 'task_links',
  columns: {
    id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
    project_id: 'uuid',
    seq: 'integer',
    note: 'text NOT NULL',
  },
  primaryKey: ['id'],
  foreignKeys: [
    {
      columns: ['project_id', 'seq'],
      references: { table: 'tasks', columns: ['project_id', 'seq'] },
      onDelete: 'set null',
    },
  ],
};

const TENANT = '"tenant_id" = (SELECT tenantry_context.current_tenant_id())';

describe('tenantTableSql: the SQL text', () => {
  it('a minimal table: tenant_id first and defaulted, leading the key; RLS enabled, forced, one policy; grants', () => {
    expect(
      tenantTableSql(
        { name: 'notes', columns: { id: 'bigint NOT NULL', body: 'text' }, primaryKey: ['id'] },
        { runtimeRole: 'app_rt' },
      ),
    ).toEqual([
      `CREATE TABLE "notes" (
  "tenant_id" uuid NOT NULL DEFAULT tenantry_context.current_tenant_id(),
  "id" bigint NOT NULL,
  "body" text,
  CONSTRAINT "notes_pkey" PRIMARY KEY ("tenant_id", "id")
)`,
      'ALTER TABLE "notes" ENABLE ROW LEVEL SECURITY',
      'ALTER TABLE "notes" FORCE ROW LEVEL SECURITY',
      `CREATE POLICY "tenant_isolation" ON "notes" USING (${TENANT}) WITH CHECK (${TENANT})`,
      'GRANT SELECT, INSERT, UPDATE, DELETE ON "notes" TO "app_rt"',
    ]);
  });

  it('unique, partial, GIN, INCLUDE and expression indexes all lead with tenant_id', () => {
    const sql = tenantTableSql(projects, { runtimeRole: 'app_rt' });
    expect(sql[0]).toBe('CREATE EXTENSION IF NOT EXISTS btree_gin');
    expect(sql[1]).toContain('CONSTRAINT "projects_pkey" PRIMARY KEY ("tenant_id", "id")');
    expect(sql[1]).toContain('CONSTRAINT "projects_code_key" UNIQUE ("tenant_id", "code")');
    expect(sql).toContain(
      'CREATE INDEX "projects_live_title" ON "projects" USING btree ("tenant_id", "title") WHERE NOT archived',
    );
    expect(sql).toContain('CREATE INDEX "projects_1_idx" ON "projects" USING gin ("tenant_id", "search")');
    expect(sql).toContain(
      'CREATE INDEX "projects_2_idx" ON "projects" USING btree ("tenant_id", "created_at" DESC) INCLUDE ("title", "code")',
    );
    expect(sql).toContain(
      'CREATE UNIQUE INDEX "projects_code_ci" ON "projects" USING btree ("tenant_id", (lower(code)))',
    );
    // Indexes come after the table, RLS after the indexes.
    expect(sql.findIndex((s) => s.startsWith('CREATE TABLE'))).toBe(1);
    expect(sql.findIndex((s) => s.includes('ENABLE ROW LEVEL SECURITY'))).toBe(6);
  });

  it('composite primary and foreign keys carry tenant_id; SET NULL spares it', () => {
    const [taskTable] = tenantTableSql(tasks, { runtimeRole: 'app_rt' });
    expect(taskTable).toContain('CONSTRAINT "tasks_pkey" PRIMARY KEY ("tenant_id", "project_id", "seq")');
    expect(taskTable).toContain(
      'CONSTRAINT "tasks_project_id_fkey" FOREIGN KEY ("tenant_id", "project_id") REFERENCES "projects" ("tenant_id", "id") ON DELETE CASCADE',
    );
    const [linkTable] = tenantTableSql(links, { runtimeRole: 'app_rt' });
    expect(linkTable).toContain(
      'CONSTRAINT "task_links_project_id_seq_fkey" FOREIGN KEY ("tenant_id", "project_id", "seq") REFERENCES "tasks" ("tenant_id", "project_id", "seq") ON DELETE SET NULL ("project_id", "seq")',
    );
  });

  it('a key to a global table stays as written; schemas are qualified', () => {
    const [sql] = tenantTableSql(
      {
        name: 'orders',
        schema: 'app',
        columns: { id: 'bigint NOT NULL', currency: 'text NOT NULL' },
        primaryKey: ['id'],
        foreignKeys: [
          {
            columns: ['currency'],
            references: { schema: 'ref', table: 'currencies', columns: ['code'], global: true },
          },
        ],
      },
      { runtimeRole: 'app_rt' },
    );
    expect(sql).toContain('CREATE TABLE "app"."orders"');
    expect(sql).toContain('FOREIGN KEY ("currency") REFERENCES "ref"."currencies" ("code")');
  });
});

describe('tenantTableSql: invalid definitions are SCHEMA_DEFINITION_INVALID', () => {
  const base = { name: 'things', columns: { id: 'bigint NOT NULL', label: 'text' }, primaryKey: ['id'] };
  const cases: [string, TenantTableDefinition][] = [
    ['no primary key', { ...base, primaryKey: [] }],
    ['a missing primary key', { name: 'things', columns: base.columns } as unknown as TenantTableDefinition],
    ['no columns', { ...base, columns: {} }],
    ['declaring tenant_id', { ...base, columns: { ...base.columns, tenant_id: 'uuid' } }],
    ['tenant_id in the primary key', { ...base, primaryKey: ['tenant_id', 'id'] }],
    ['an unknown column in the primary key', { ...base, primaryKey: ['nope'] }],
    ['an unknown column in a unique constraint', { ...base, unique: [['nope']] }],
    ['an unknown column in an index', { ...base, indexes: [{ columns: ['nope'] }] }],
    ['an unknown column in an index (with a direction)', { ...base, indexes: [{ columns: ['nope DESC'] }] }],
    ['tenant_id listed in an index', { ...base, indexes: [{ columns: ['tenant_id', 'label'] }] }],
    ['an unknown column in INCLUDE', { ...base, indexes: [{ columns: ['label'], include: ['nope'] }] }],
    ['an index without columns', { ...base, indexes: [{ columns: [] }] }],
    [
      'an unknown column in a foreign key',
      { ...base, foreignKeys: [{ columns: ['nope'], references: { table: 'x', columns: ['id'] } }] },
    ],
    [
      'a foreign key with differing column counts',
      { ...base, foreignKeys: [{ columns: ['id'], references: { table: 'x', columns: ['a', 'b'] } }] },
    ],
    ['a table name with SQL in it', { ...base, name: 'things; DROP TABLE items' }],
    ['a quoted table name', { ...base, name: 'th"ings' }],
    ['a column name with a hyphen', { ...base, columns: { ...base.columns, 'bad-name': 'text' } }],
    ['a bad schema name', { ...base, schema: 'public.x' }],
    [
      'a bad referenced table name',
      { ...base, foreignKeys: [{ columns: ['id'], references: { table: 'x y', columns: ['id'] } }] },
    ],
    ['a 64-character table name', { ...base, name: 't'.repeat(64) }],
  ];
  for (const [what, def] of cases) {
    it(what, () => {
      expect(() => tenantTableSql(def, { runtimeRole: 'app_rt' })).toThrow(
        expect.objectContaining({ code: 'SCHEMA_DEFINITION_INVALID' }),
      );
    });
  }
});

describe('executed in a migration', () => {
  let database: TestDatabase;
  let tenantry: Tenantry;
  let a: TenantRecord;
  let b: TenantRecord;

  beforeAll(async () => {
    database = await createTestDatabase('tenant_table');
    tenantry = await Tenantry.connect({
      databaseUrl: database.url,
      secret: database.secret,
      roles: database.roles,
      migrations: [
        { id: '001_projects', up: (m) => m.tenantTable(projects) },
        {
          id: '002_tasks_links',
          // The exact statements checked above, run as written.
          up: async (m) => {
            for (const def of [tasks, links]) {
              for (const s of tenantTableSql(def, { runtimeRole: database.roles.runtime })) await m.query(s);
            }
          },
        },
      ],
    });
    await tenantry.setup();
    await tenantry.migrate();
    a = await tenantry.tenants.create({ slug: 'tt-a', name: 'A' });
    b = await tenantry.tenants.create({ slug: 'tt-b', name: 'B' });
  });

  afterAll(async () => {
    await tenantry?.close();
    await database?.drop();
  });

  const catalog = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) =>
    tenantry.adminPool.query<R>(text, values).then((r) => r.rows);

  it('tenant_id is NOT NULL, defaults to the verified context, and is the first column of every key and index', async () => {
    for (const table of ['projects', 'tasks', 'task_links']) {
      const [col] = await catalog<{ notnull: boolean; def: string }>(
        `SELECT a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS def
           FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attrelid = $1::regclass AND a.attname = 'tenant_id'`,
        [table],
      );
      expect(col).toEqual({ notnull: true, def: 'tenantry_context.current_tenant_id()' });
      const indexes = await catalog<{ name: string; lead: string }>(
        `SELECT c.relname AS name, a.attname AS lead FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid
           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
          WHERE i.indrelid = $1::regclass`,
        [table],
      );
      expect(indexes.length).toBeGreaterThan(0);
      for (const index of indexes) expect(index, table).toMatchObject({ lead: 'tenant_id' });
      const constraints = await catalog<{ name: string; type: string; own: string; theirs: string | null }>(
        `SELECT con.conname AS name, con.contype AS type,
                (SELECT attname FROM pg_attribute WHERE attrelid = con.conrelid AND attnum = con.conkey[1]) AS own,
                (SELECT attname FROM pg_attribute WHERE attrelid = con.confrelid AND attnum = con.confkey[1]) AS theirs
           FROM pg_constraint con WHERE con.conrelid = $1::regclass AND con.contype IN ('p', 'u', 'f')`,
        [table],
      );
      for (const c of constraints) {
        expect(c.own, c.name).toBe('tenant_id');
        if (c.type === 'f') expect(c.theirs, c.name).toBe('tenant_id');
      }
    }
    const projectIndexes = await catalog<{ name: string; def: string; keys: number; all: number; partial: boolean }>(
      `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indnkeyatts AS keys, i.indnatts AS all,
              i.indpred IS NOT NULL AS partial
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'projects'::regclass`,
    );
    const byName = new Map(projectIndexes.map((i) => [i.name, i]));
    expect(byName.get('projects_live_title')).toMatchObject({ partial: true });
    expect(byName.get('projects_1_idx')?.def).toContain('USING gin (tenant_id, search)');
    expect(byName.get('projects_2_idx')).toMatchObject({ keys: 2, all: 4 });
    expect(byName.get('projects_2_idx')?.def).toContain('INCLUDE (title, code)');
    expect(byName.get('projects_code_ci')?.def).toContain('(tenant_id, lower(code))');
    expect([...byName.keys()].sort()).toEqual([
      'projects_1_idx',
      'projects_2_idx',
      'projects_code_ci',
      'projects_code_key',
      'projects_live_title',
      'projects_pkey',
    ]);
  });

  it('the SET NULL foreign key nulls only its own columns', async () => {
    const [fk] = await catalog<{ deltype: string; setcols: string[] }>(
      `SELECT confdeltype AS deltype,
              ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = conrelid AND attnum = ANY(confdelsetcols) ORDER BY attnum)::text[] AS setcols
         FROM pg_constraint WHERE conname = 'task_links_project_id_seq_fkey'`,
    );
    expect(fk).toEqual({ deltype: 'n', setcols: ['project_id', 'seq'] });
  });

  it('RLS is enabled and forced, with one policy for all commands with USING and WITH CHECK; runtime grants only', async () => {
    for (const table of ['projects', 'tasks', 'task_links']) {
      const [rel] = await catalog<{ rls: boolean; force: boolean; owner: string }>(
        `SELECT relrowsecurity AS rls, relforcerowsecurity AS force, pg_get_userbyid(relowner) AS owner
           FROM pg_class WHERE oid = $1::regclass`,
        [table],
      );
      expect(rel).toEqual({ rls: true, force: true, owner: database.roles.owner });
      const policies = await catalog<{ name: string; cmd: string; permissive: boolean; using: string; check: string }>(
        `SELECT polname AS name, polcmd AS cmd, polpermissive AS permissive,
                pg_get_expr(polqual, polrelid) AS using, pg_get_expr(polwithcheck, polrelid) AS check
           FROM pg_policy WHERE polrelid = $1::regclass`,
        [table],
      );
      expect(policies).toHaveLength(1);
      expect(policies[0]).toMatchObject({ name: 'tenant_isolation', cmd: '*', permissive: true });
      // m.tenantTable() binds the policy to the shared copy; tenantTableSql() alone does not.
      expect(policies[0]?.using).toMatch(/tenantry_context\.current_tenant_id(_in\(''::text\))?\(?/);
      expect(policies[0]?.check).toBe(policies[0]?.using);
      const [grants] = await catalog<Record<string, boolean>>(
        `SELECT has_table_privilege($1, $2, 'SELECT') AS s, has_table_privilege($1, $2, 'INSERT') AS i,
                has_table_privilege($1, $2, 'UPDATE') AS u, has_table_privilege($1, $2, 'DELETE') AS d,
                has_table_privilege($1, $2, 'TRUNCATE') AS t, has_table_privilege($1, $2, 'REFERENCES') AS r`,
        [database.roles.runtime, table],
      );
      expect(grants).toEqual({ s: true, i: true, u: true, d: true, t: false, r: false });
    }
  });

  it('works for tenant work: cascades, SET NULL keeps tenant_id, keys are per tenant, full-text search uses RLS', async () => {
    const seed = (t: TenantRecord) =>
      tenantry.transaction(t, async (tx) => {
        const { rows } = await tx.query<{ id: string }>(
          "INSERT INTO projects (code, title) VALUES ('P1', 'alpha launch') RETURNING id",
        );
        const id = rows[0]?.id as string;
        await tx.query("INSERT INTO tasks (project_id, seq, title) VALUES ($1, 1, 'one'), ($1, 2, 'two')", [id]);
        await tx.query("INSERT INTO task_links (project_id, seq, note) VALUES ($1, 1, 'to one'), ($1, 2, 'to two')", [
          id,
        ]);
        return id;
      });
    const aProject = await seed(a);
    // The same code (and the same case-insensitive code) is fine in another tenant.
    const bProject = await seed(b);
    await expect(
      tenantry.transaction(a, (tx) => tx.query("INSERT INTO projects (code, title) VALUES ('p1', 'dup')")),
    ).rejects.toMatchObject({ code: '23505' });
    // A's link cannot point at B's task.
    await expect(
      tenantry.transaction(a, (tx) =>
        tx.query("INSERT INTO task_links (project_id, seq, note) VALUES ($1, 1, 'cross')", [bProject]),
      ),
    ).rejects.toMatchObject({ code: '23503' });

    const links = await tenantry.transaction(a, async (tx) => {
      await tx.query('DELETE FROM tasks WHERE project_id = $1 AND seq = 1', [aProject]);
      return (
        await tx.query<{ tenant_id: string; project_id: string | null; seq: number | null; note: string }>(
          'SELECT tenant_id, project_id, seq, note FROM task_links ORDER BY note',
        )
      ).rows;
    });
    expect(links).toEqual([
      { tenant_id: a.id, project_id: null, seq: null, note: 'to one' },
      { tenant_id: a.id, project_id: aProject, seq: 2, note: 'to two' },
    ]);
    const found = await tenantry.transaction(a, (tx) =>
      tx.query("SELECT title FROM projects WHERE search @@ to_tsquery('simple', 'alpha')"),
    );
    expect(found.rows).toEqual([{ title: 'alpha launch' }]);
    await tenantry.transaction(a, (tx) => tx.query('DELETE FROM projects WHERE id = $1', [aProject]));
    const left = await catalog<{ table: string; tenant: string; n: number }>(
      `SELECT 'tasks' AS table, tenant_id::text AS tenant, count(*)::int AS n FROM tasks GROUP BY tenant_id
       ORDER BY 2`,
    );
    expect(left).toEqual([{ table: 'tasks', tenant: b.id, n: 2 }]);
  });
});

describe('generated names', () => {
  it('refuses a generated name longer than 63 bytes instead of letting PostgreSQL truncate it', () => {
    const long = `t${'x'.repeat(55)}`;
    expect(() =>
      tenantTableSql(
        {
          name: long,
          columns: { id: 'uuid NOT NULL', a_long_column_name: 'text' },
          primaryKey: ['id'],
          unique: [['a_long_column_name']],
        },
        { runtimeRole: 'r' },
      ),
    ).toThrow(expect.objectContaining({ code: 'SCHEMA_DEFINITION_INVALID' }));
  });
});
