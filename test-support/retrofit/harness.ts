import { readFileSync } from 'node:fs';
import pg from 'pg';
import { Tenantry } from '../../packages/tenantry/src/index.ts';
import { createTestDatabase, type TestDatabase } from '../database.ts';

/** A database holding an application's own schema, as its own role created it, and a set-up Tenantry beside it. */
export interface LegacyApp {
  readonly database: TestDatabase;
  readonly schema: string;
  /** The role the old application logs in as; it owned every table before the retrofit. */
  readonly legacyRole: string;
  readonly tenantry: Tenantry;
  /** A connection of the old application (its role, its schema on the search path). */
  legacyClient(): Promise<pg.Client>;
  close(): Promise<void>;
}

/** Loads `test-support/retrofit/<file>` into `schema` as a fresh login role, then connects and sets up Tenantry. */
export async function createLegacyApp(label: string, file: string, schema: string): Promise<LegacyApp> {
  const database = await createTestDatabase(label);
  const legacyRole = database.roles.owner.replace(/_owner$/, '_app');
  const sql = readFileSync(new URL(file, import.meta.url), 'utf8');
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  try {
    await admin.query(`CREATE ROLE "${legacyRole}" LOGIN`);
    if (schema === 'public') await admin.query(`GRANT CREATE ON SCHEMA public TO "${legacyRole}"`);
    else await admin.query(`CREATE SCHEMA "${schema}" AUTHORIZATION "${legacyRole}"`);
    await admin.query(`SET ROLE "${legacyRole}"; SET search_path = "${schema}"`);
    await admin.query(sql);
    await admin.query('RESET ROLE; RESET search_path');
    await admin.query('ANALYZE');
  } finally {
    await admin.end();
  }
  const tenantry = await Tenantry.connect({
    databaseUrl: database.url,
    secret: database.secret,
    roles: database.roles,
    tenantSchema: schema,
    migrations: [],
  });
  await tenantry.setup();
  const legacyUrl = new URL(database.url);
  legacyUrl.username = legacyRole;
  legacyUrl.password = '';
  return {
    database,
    schema,
    legacyRole,
    tenantry,
    async legacyClient() {
      const client = new pg.Client({ connectionString: legacyUrl.toString(), options: `-c search_path=${schema}` });
      await client.connect();
      return client;
    },
    async close() {
      await tenantry.close();
      await database.drop();
      const c = new pg.Client({ connectionString: database.url.replace(/\/[^/]+$/, '/postgres') });
      await c.connect();
      await c.query(`DROP ROLE IF EXISTS "${legacyRole}"`).finally(() => c.end());
    },
  };
}

/** What a writer did: statements that succeeded, and the errors of those that failed. */
export interface WriterResult {
  readonly ok: number;
  readonly errors: readonly string[];
}

/**
 * The old application at work: runs `statement(i)` for i = 0, 1, 2… in autocommit on its
 * own connection until stopped, counting successes and failures (none expected).
 */
export async function startWriter(
  app: LegacyApp,
  statement: (i: number) => { text: string; values?: unknown[] },
): Promise<{ stop(): Promise<WriterResult> }> {
  const client = await app.legacyClient();
  let running = true;
  let ok = 0;
  const errors: string[] = [];
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const { text, values } = statement(i);
      try {
        await client.query(text, values);
        ok++;
      } catch (error) {
        errors.push(`${text}: ${(error as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 3));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await client.end();
      return { ok, errors };
    },
  };
}
