import { randomBytes } from 'node:crypto';
import type { Compilable, Kysely } from 'kysely';
import { currentTransaction, type TenantContext, tryGetTenant, withTenant } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import type { CompiledStatement } from '../transaction/tenant-transaction.ts';

/** Where each parameter of a compiled template comes from. */
type Slot =
  | { readonly kind: 'tenant' }
  | { readonly kind: 'value'; readonly name: string }
  | { readonly kind: 'fixed'; readonly value: unknown };

interface Template {
  readonly sql: string;
  readonly slots: readonly Slot[];
}

/**
 * Marks a value position of a prepared query: the placeholder stands in for `values[name]`
 * while the query is compiled once, and is replaced at each call.
 */
export type QueryParam<P> = <K extends keyof P & string>(name: K) => P[K];

/**
 * Builds and compiles a Kysely query once, and then only fills in its values: for the hot
 * path, where building and compiling (and the tenant filter's pass over the tree) cost more
 * than the rest of the query's JavaScript. The result goes to `tenantry.query()` or
 * `request.tenantQuery()` (one round trip).
 *
 * The template is compiled under a placeholder tenant; each call puts in the tenant of the
 * current context (the transaction's, else `withTenant`'s or the request's), so the tenant
 * filter's `tenant_id = …` always names the caller's tenant. Outside any tenant context a
 * call throws `NO_TENANT_CONTEXT`. Values may appear only where Kysely makes parameters
 * (`where('id', '=', p('id'))`, `values({ … })`); a placeholder that ends up in the SQL text
 * or not at all is a `USAGE_ERROR` at the first call.
 *
 * @example
 * ```ts
 * const itemById = prepareTenantQuery(tenantry.db, (db, p: QueryParam<{ id: string }>) =>
 *   db.selectFrom('items').selectAll().where('id', '=', p('id')));
 * const { rows } = await req.tenantQuery(itemById({ id: req.params.id }));
 * ```
 */
export function prepareTenantQuery<DB, P extends Record<string, unknown>>(
  db: Kysely<DB>,
  build: (db: Kysely<DB>, param: QueryParam<P>) => Compilable,
): (values: P) => CompiledStatement {
  let template: Template | undefined;
  return (values: P): CompiledStatement => {
    const tenant = currentTransaction()?.tenant ?? tryGetTenant();
    if (!tenant) throw new TenantryError('NO_TENANT_CONTEXT');
    template ??= compileTemplate(db, build);
    const parameters = template.slots.map((slot) =>
      slot.kind === 'tenant' ? tenant.id : slot.kind === 'value' ? values[slot.name] : slot.value,
    );
    return { sql: template.sql, parameters, prepare: true };
  };
}

function compileTemplate<DB, P>(db: Kysely<DB>, build: (db: Kysely<DB>, param: QueryParam<P>) => Compilable): Template {
  // NUL cannot occur in PostgreSQL text, so no real value can be mistaken for a placeholder.
  const marker = `\u0000tenantry:${randomBytes(6).toString('hex')}:`;
  const tenantMarker = `${marker}tenant`;
  const names = new Set<string>();
  const param = ((name: string) => {
    names.add(name);
    return `${marker}value:${name}`;
  }) as QueryParam<P>;
  const placeholder: TenantContext = { id: tenantMarker, slug: '', tier: 'pool', plan: '', status: 'active' };
  const compiled = withTenant(placeholder, () => build(db, param).compile());
  if (compiled.sql.includes(marker)) {
    throw new TenantryError(
      'USAGE_ERROR',
      'prepareTenantQuery: a placeholder ended up in the SQL text, not a parameter',
    );
  }
  const used = new Set<string>();
  const slots = compiled.parameters.map((value): Slot => {
    if (value === tenantMarker) return { kind: 'tenant' };
    if (typeof value === 'string' && value.startsWith(`${marker}value:`)) {
      const name = value.slice(marker.length + 'value:'.length);
      used.add(name);
      return { kind: 'value', name };
    }
    if (typeof value === 'string' && value.includes(marker)) {
      throw new TenantryError(
        'USAGE_ERROR',
        'prepareTenantQuery: a placeholder was changed by the query (use it as a whole value)',
      );
    }
    return { kind: 'fixed', value };
  });
  const unused = [...names].filter((name) => !used.has(name));
  if (unused.length > 0) {
    throw new TenantryError('USAGE_ERROR', `prepareTenantQuery: ${unused.join(', ')} did not become a parameter`);
  }
  return Object.freeze({ sql: compiled.sql, slots: Object.freeze(slots) });
}
