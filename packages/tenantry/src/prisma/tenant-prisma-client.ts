import { TenantryError } from '../errors/catalog.ts';

/** What an extension's query callback gets from Prisma (the part read here). */
interface OperationCall {
  model?: string;
  operation: string;
  args: unknown;
  query(args: unknown): Promise<unknown>;
  __internalParams?: { transaction?: { kind?: string } | undefined };
}

/** A Prisma client as far as this module uses it. */
interface ClientLike {
  // biome-ignore lint/suspicious/noExplicitAny: Prisma's extension API is typed per generated client.
  $extends(extension: any): any;
  $transaction(fn: (tx: Record<string, unknown>) => Promise<unknown>): Promise<unknown>;
}

/** What an operation of a batch `$transaction([...])` answers when asked what it is. */
const DESCRIBE = Object.freeze({ kind: 'tenantry.describe', id: 'tenantry.describe' });

interface Described {
  readonly [DESCRIBED]: true;
  readonly model: string | undefined;
  readonly operation: string;
  readonly args: unknown;
}
const DESCRIBED = Symbol('tenantry.described');

/** Prisma's name of a model on the client (`UserProfile` → `userProfile`). */
const clientProperty = (model: string) => model.charAt(0).toLowerCase() + model.slice(1);

/**
 * Whether a `findUnique` filter is only equalities of fields to values (`{ id: '…' }`), for
 * which `findFirst` finds the same row. Not a compound selector (`{ tenant_id_id: {…} }`,
 * an object) nor an undefined value (which `findFirst` would read as "no condition").
 */
function isEqualityWhere(where: unknown): boolean {
  if (typeof where !== 'object' || where === null) return false;
  const values = Object.values(where);
  return (
    values.length > 0 &&
    values.every((v) => ['string', 'number', 'bigint', 'boolean'].includes(typeof v) || v instanceof Date)
  );
}

/** Runs `call` on `tx` (an interactive transaction's client, or the client itself). */
function reissue(tx: Record<string, unknown>, call: { model?: string | undefined; operation: string; args: unknown }) {
  const target = (call.model ? tx[clientProperty(call.model)] : tx) as Record<string, (...a: unknown[]) => unknown>;
  const method = target?.[call.operation];
  if (typeof method !== 'function') {
    throw new TenantryError('USAGE_ERROR', `tenantPrisma: cannot run ${call.operation} in a transaction`);
  }
  return Array.isArray(call.args) && !call.model ? method.apply(target, call.args) : method.call(target, call.args);
}

/**
 * Binds a Prisma client's work to tenants safely (use it with `createTenantPrismaAdapter`).
 *
 * Prisma batches some requests and sends them from whichever async context came first in
 * that tick: two tenants' `findUnique` calls can be merged into one query, and a batch
 * `$transaction([...])` can start in another request's context. Both would run for the
 * wrong tenant (row-level security would then answer for that tenant). This extension
 * sends such requests through interactive transactions, which bind to the tenant when they
 * start, in the caller's context:
 *
 * - `findUnique` / `findUniqueOrThrow` outside a transaction run as `findFirst` /
 *   `findFirstOrThrow` (never batched) when their filter is field equalities, else in an
 *   interactive transaction of their own;
 * - `$transaction([...])` runs its operations, in order, in one interactive transaction
 *   (what Prisma's batch transaction promises: all or nothing, in order).
 *
 * Everything else already runs in the caller's context. The returned client has the type
 * of the one passed in.
 *
 * @example
 * ```ts
 * const prisma = tenantPrisma(new PrismaClient({ adapter: createTenantPrismaAdapter(tenantry) }));
 * await withTenant(acme, () => prisma.item.findMany());
 * ```
 */
export function tenantPrisma<C extends ClientLike>(client: C): C {
  return client.$extends((base: ClientLike) =>
    base.$extends({
      name: 'tenantry',
      client: {
        $transaction(this: ClientLike, input: unknown, options?: unknown) {
          if (!Array.isArray(input)) {
            return (base.$transaction as (i: unknown, o?: unknown) => Promise<unknown>).call(this, input, options);
          }
          // Ask each operation what it is (it does not run), then run them on one interactive
          // transaction, which binds to the tenant here, in the caller's context.
          const described = input.map((operation) => {
            const request = (operation as { requestTransaction?: (t: unknown) => PromiseLike<unknown> })
              .requestTransaction;
            if (typeof request !== 'function') {
              throw new TenantryError('USAGE_ERROR', 'tenantPrisma: $transaction([...]) takes Prisma operations');
            }
            return request.call(operation, DESCRIBE);
          });
          const interactive = base.$transaction as (
            fn: (tx: Record<string, unknown>) => Promise<unknown>,
          ) => Promise<unknown>;
          // `this`: inside an interactive transaction, the batch nests in it.
          return interactive.call(this, async (tx) => {
            const results: unknown[] = [];
            for (const pending of described) {
              const call = (await pending) as Described;
              if (!call?.[DESCRIBED]) throw new TenantryError('USAGE_ERROR', 'tenantPrisma: unknown batch operation');
              results.push(await reissue(tx, call));
            }
            return results;
          });
        },
      },
      query: {
        async $allOperations(call: OperationCall) {
          const transaction = call.__internalParams?.transaction;
          if ((transaction as unknown) === DESCRIBE) {
            return { [DESCRIBED]: true, model: call.model, operation: call.operation, args: call.args } as Described;
          }
          if (
            !transaction &&
            call.model &&
            (call.operation === 'findUnique' || call.operation === 'findUniqueOrThrow')
          ) {
            // The same lookup as findFirst, which Prisma never batches: no transaction needed.
            if (isEqualityWhere((call.args as { where?: unknown } | undefined)?.where)) {
              const operation = call.operation === 'findUnique' ? 'findFirst' : 'findFirstOrThrow';
              return reissue(base as unknown as Record<string, unknown>, { ...call, operation });
            }
            return base.$transaction((tx) => reissue(tx, call) as Promise<unknown>);
          }
          return call.query(call.args);
        },
      },
    }),
  ) as C;
}
