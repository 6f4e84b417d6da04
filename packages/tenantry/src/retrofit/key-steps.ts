import { foreignKeyWithTenant, indexWithTenant, leadWith } from '../doctor/fix-sql.ts';
import type { ConstraintInfo, IndexInfo } from '../doctor/inspect.ts';
import { qualified, quoteIdent } from '../sql.ts';
import { formatBytes, formatRows, type StepDraft, shortName } from './plan-step.ts';
import type { SourceSchema, SourceTable } from './source-schema.ts';

const HEAD = /^CREATE (UNIQUE )?INDEX ("(?:[^"]|"")+"|\S+) ON (?:ONLY )?/;
const ONLINE = 'SHARE UPDATE EXCLUSIVE: reads and writes continue';
const LOCKED = 'ACCESS EXCLUSIVE for the whole build (a partitioned table has no concurrent build)';

/** Primary keys, unique constraints, foreign keys and indexes, rewritten to lead with the tenant column. */
export interface KeyPlan {
  readonly steps: StepDraft[];
  /** Extensions the rewritten GIN/GiST indexes need (btree_gin, btree_gist). */
  readonly extensions: ReadonlySet<string>;
}

/**
 * The key and index steps, in an order that keeps every constraint enforced throughout:
 * (1) unique indexes `(tenant_id, …)` built concurrently beside the old ones; (2) keys of
 * partitioned tables and exclusion constraints rebuilt in place, under a lock; (3) each
 * foreign key between tenant tables added composite `NOT VALID`, validated without
 * blocking writes, then swapped for the old one; (4) primary keys and unique constraints
 * switched to the new indexes; (5) the other indexes rebuilt concurrently with the tenant
 * column first; (6) an index on the tenant column where a table has none.
 */
export function keySteps(tables: readonly SourceTable[], source: SourceSchema, column: string): KeyPlan {
  const extensions = new Set<string>();
  const byOid = new Map(tables.map((t) => [t.oid, t]));
  const col = quoteIdent(column);
  const steps: StepDraft[][] = [[], [], [], [], [], []];
  const newIndex = new Map<string, string>(); // tableOid:old index name → new index name

  const rebuilt = (def: string, name: string, concurrently: boolean): string => {
    let out = indexWithTenant(def, column);
    const ext = /^CREATE EXTENSION IF NOT EXISTS (\w+); /.exec(out);
    if (ext) {
      extensions.add(ext[1] as string);
      out = out.slice(ext[0].length);
    }
    const how = concurrently ? 'CONCURRENTLY IF NOT EXISTS ' : '';
    return out.replace(HEAD, (_m, unique: string | undefined) => `CREATE ${unique ?? ''}INDEX ${how}${name} ON `);
  };
  const size = (t: SourceTable, i: IndexInfo) => {
    const old = source.indexBytes.get(`${t.oid}:${i.name}`) ?? 0;
    return `${formatRows(t.rows)}; ~${formatBytes(old + (t.rows ?? 0) * 16)} (was ${formatBytes(old)})`;
  };
  const fkDef = (c: ConstraintInfo) =>
    foreignKeyWithTenant(c.definition.replace(/\s+NOT VALID$/, ''), column, c.columns, c.refColumns);
  const tenantFks = source.constraints.filter(
    (c) => c.type === 'f' && byOid.has(c.tableOid) && c.refOid !== null && byOid.has(c.refOid),
  );

  for (const t of tables) {
    const mine = source.indexes.filter((i) => i.tableOid === t.oid);
    const keys = source.constraints.filter((c) => c.tableOid === t.oid && c.type !== 'f');
    const locked = t.kind === 'p';
    for (const c of keys) {
      if (!locked && c.type !== 'x') continue;
      // Foreign keys pointing at this key are dropped and re-added composite with it.
      const incoming = tenantFks.filter((f) => f.refOid === t.oid);
      const children = incoming.map((f) => ({ f, child: byOid.get(f.tableOid) as SourceTable }));
      const def = leadWith(c.definition, column, 0, c.type === 'x' ? `${col} WITH =` : undefined);
      if (c.type === 'x') extensions.add('btree_gist');
      steps[1]?.push({
        action: 'key-rebuild',
        target: `${t.label}.${c.name}`,
        mode: 'transaction',
        why: `${c.name} gets ${column} first (${locked ? 'partitioned table' : 'exclusion constraint'}: rebuilt in place, in one transaction).`,
        estimate: `${formatRows(t.rows)}; ${LOCKED}`,
        sql: [
          ...children.map(({ f, child }) => `ALTER TABLE ${child.sql} DROP CONSTRAINT ${quoteIdent(f.name)};`),
          `ALTER TABLE ${t.sql} DROP CONSTRAINT ${quoteIdent(c.name)};`,
          `ALTER TABLE ${t.sql} ADD CONSTRAINT ${quoteIdent(c.name)} ${def};`,
          ...children.map(
            ({ f, child }) => `ALTER TABLE ${child.sql} ADD CONSTRAINT ${quoteIdent(f.name)} ${fkDef(f)};`,
          ),
        ].join('\n'),
        rollback: null,
        weight: Math.max(t.rows ?? 0, 1),
      });
      for (const f of incoming) newIndex.set(`fk:${f.tableOid}:${f.name}`, 'done');
    }
    for (const i of mine) {
      if (i.method === 'brin') continue;
      const backing = keys.find((c) => c.name === i.constraint);
      if (backing && (locked || backing.type === 'x')) continue; // rebuilt with its constraint above
      const name = shortName(i.name, '_tenant');
      const newSql = qualified(source.schema, name);
      if (locked) {
        steps[4]?.push({
          action: 'index-rebuild',
          target: `${t.label}.${i.name}`,
          mode: 'transaction',
          why: `${i.name} gets ${column} first; a partitioned table cannot build indexes concurrently.`,
          estimate: `${size(t, i)}; ${LOCKED}`,
          sql: `DROP INDEX ${i.sql};\n${rebuilt(i.definition, quoteIdent(i.name), false)};`,
          rollback: `DROP INDEX ${i.sql};\n${i.definition};`,
          weight: Math.max(t.rows ?? 0, 1),
        });
        continue;
      }
      newIndex.set(`${t.oid}:${i.name}`, name);
      steps[i.unique ? 0 : 4]?.push({
        action: i.unique ? 'unique-index' : 'index',
        target: `${t.label}.${name}`,
        mode: 'concurrent',
        why: i.unique
          ? `The per-tenant twin of ${i.name}, built beside it so uniqueness is enforced throughout; composite foreign keys need it.`
          : `${i.name} rebuilt with ${column} first, so a tenant's scans stay inside its own entries.`,
        estimate: `${size(t, i)}; ${ONLINE}`,
        sql: `${rebuilt(i.definition, quoteIdent(name), true)};`,
        rollback: `DROP INDEX CONCURRENTLY IF EXISTS ${newSql};`,
        relation: newSql,
        weight: Math.max(t.rows ?? 0, 1),
      });
      if (backing) {
        const kind = backing.type === 'p' ? 'PRIMARY KEY' : 'UNIQUE';
        const deferrable = /\bDEFERRABLE\b/.test(backing.definition)
          ? ` DEFERRABLE${/INITIALLY DEFERRED/.test(backing.definition) ? ' INITIALLY DEFERRED' : ''}`
          : '';
        steps[3]?.push({
          action: 'key-swap',
          target: `${t.label}.${backing.name}`,
          mode: 'transaction',
          why: `${backing.name} switches to the index built with ${column} first (no scan); the foreign keys that used the old one were swapped already.`,
          estimate: `no scan; ACCESS EXCLUSIVE for a catalog change only`,
          sql: `ALTER TABLE ${t.sql} DROP CONSTRAINT ${quoteIdent(backing.name)};\nALTER TABLE ${t.sql} ADD CONSTRAINT ${quoteIdent(backing.name)} ${kind} USING INDEX ${quoteIdent(name)}${deferrable};`,
          rollback: null,
          weight: 1,
        });
      } else {
        steps[i.unique ? 3 : 4]?.push(
          {
            action: 'index-drop',
            target: `${t.label}.${i.name}`,
            mode: 'concurrent',
            why: `The old ${i.name} is superseded by ${name}.`,
            estimate: `frees ${formatBytes(source.indexBytes.get(`${t.oid}:${i.name}`) ?? 0)}; ${ONLINE}`,
            sql: `DROP INDEX CONCURRENTLY IF EXISTS ${i.sql};`,
            rollback: `${i.definition.replace(HEAD, (m) => m.replace(' INDEX ', ' INDEX CONCURRENTLY '))};`,
            weight: 1,
          },
          {
            action: 'index-rename',
            target: `${t.label}.${name}`,
            mode: 'transaction',
            why: `${name} takes the old name, so the application's hints and scripts keep working.`,
            estimate: 'catalog only; SHARE UPDATE EXCLUSIVE',
            sql: `ALTER INDEX ${newSql} RENAME TO ${quoteIdent(i.name)};`,
            rollback: `ALTER INDEX ${i.sql} RENAME TO ${quoteIdent(name)};`,
            weight: 1,
          },
        );
      }
    }
    if (!mine.some((i) => i.method !== 'brin')) {
      const name = shortName(t.name, `_${column}_idx`);
      steps[5]?.push({
        action: 'tenant-index',
        target: `${t.label}.${name}`,
        mode: locked ? 'transaction' : 'concurrent',
        why: `${t.label} has no key or index to lead with ${column}: every tenant statement would scan the table.`,
        estimate: `${formatRows(t.rows)}; ~${formatBytes((t.rows ?? 0) * 30)}; ${locked ? LOCKED : ONLINE}`,
        sql: `CREATE INDEX ${locked ? '' : 'CONCURRENTLY IF NOT EXISTS '}${quoteIdent(name)} ON ${t.sql} (${col});`,
        rollback: `DROP INDEX IF EXISTS ${qualified(source.schema, name)};`,
        ...(locked ? {} : { relation: qualified(source.schema, name) }),
        weight: Math.max(t.rows ?? 0, 1),
      });
    }
  }

  for (const f of tenantFks) {
    if (newIndex.has(`fk:${f.tableOid}:${f.name}`)) continue;
    const child = byOid.get(f.tableOid) as SourceTable;
    const parent = byOid.get(f.refOid as number) as SourceTable;
    const def = fkDef(f);
    const what = `${child.label}.${f.name}`;
    if (child.kind === 'p') {
      steps[2]?.push({
        action: 'fk-rebuild',
        target: what,
        mode: 'transaction',
        why: `${f.name} becomes composite, so a row can only point at a row of its own tenant; NOT VALID is not available on a partitioned table.`,
        estimate: `checks ${formatRows(child.rows)}; SHARE ROW EXCLUSIVE on ${child.label} and ${parent.label} while it checks`,
        sql: `ALTER TABLE ${child.sql} DROP CONSTRAINT ${quoteIdent(f.name)};\nALTER TABLE ${child.sql} ADD CONSTRAINT ${quoteIdent(f.name)} ${def};`,
        rollback: `ALTER TABLE ${child.sql} DROP CONSTRAINT ${quoteIdent(f.name)};\nALTER TABLE ${child.sql} ADD CONSTRAINT ${quoteIdent(f.name)} ${f.definition};`,
        weight: Math.max(child.rows ?? 0, 1),
      });
      continue;
    }
    const tmp = quoteIdent(shortName(f.name, '_tenant'));
    steps[2]?.push(
      {
        action: 'fk-add',
        target: what,
        mode: 'transaction',
        why: `The composite twin of ${f.name} (${column} paired with ${parent.label}.${column}), NOT VALID: checks new writes from now on, no scan.`,
        estimate: 'no scan; SHARE ROW EXCLUSIVE on both tables for a catalog change only',
        sql: `ALTER TABLE ${child.sql} ADD CONSTRAINT ${tmp} ${def} NOT VALID;`,
        rollback: `ALTER TABLE ${child.sql} DROP CONSTRAINT IF EXISTS ${tmp};`,
        weight: 1,
      },
      {
        action: 'fk-validate',
        target: what,
        mode: 'transaction',
        why: `Checks the existing rows while reads and writes continue.`,
        estimate: `checks ${formatRows(child.rows)}; SHARE UPDATE EXCLUSIVE on ${child.label}, ROW SHARE on ${parent.label}`,
        sql: `ALTER TABLE ${child.sql} VALIDATE CONSTRAINT ${tmp};`,
        rollback: null,
        weight: Math.max(child.rows ?? 0, 1),
      },
      {
        action: 'fk-swap',
        target: what,
        mode: 'transaction',
        why: `The single-column ${f.name} goes; the composite one takes its name.`,
        estimate: 'catalog only; SHARE ROW EXCLUSIVE on both tables',
        sql: `ALTER TABLE ${child.sql} DROP CONSTRAINT ${quoteIdent(f.name)};\nALTER TABLE ${child.sql} RENAME CONSTRAINT ${tmp} TO ${quoteIdent(f.name)};`,
        rollback: `ALTER TABLE ${child.sql} ADD CONSTRAINT ${quoteIdent(shortName(f.name, '_single'))} ${f.definition} NOT VALID;`,
        weight: 1,
      },
    );
  }
  return { steps: steps.flat(), extensions };
}
