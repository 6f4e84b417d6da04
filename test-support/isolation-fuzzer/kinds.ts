import type { Rng } from './rng.ts';

/** Which operations a run draws from. `lib.*` go through `tenantry.withTenant`, `http.*` over a socket. */
export const OP_KINDS = [
  'lib.insert',
  'lib.get',
  'lib.list',
  'lib.search',
  'lib.update',
  'lib.delete',
  'lib.foreign-id',
  'lib.where-other-tenant',
  'lib.insert-other-tenant',
  'lib.move-to-other-tenant',
  'lib.clone-foreign-id',
  'lib.forge-context',
  'lib.other-schema-read',
  'lib.other-schema-write',
  'lib.session-state',
  'http.create',
  'http.get',
  'http.list',
  'http.search',
  'http.patch',
  'http.delete',
  'http.foreign-id',
  'http.tenant-header-mismatch',
  'http.body-tenant-id',
  'http.revoked-key',
  'ctl.rotate-key',
] as const;

export type OpKind = (typeof OP_KINDS)[number];

/**
 * Relative weights of what an operation starts as (reads then bring more reads along).
 * Cheap library reads dominate, so that 100,000 operations fit in a test file's time;
 * the rarest kind still runs over a hundred times per 100,000.
 */
export const LIB_WEIGHTS: Readonly<Partial<Record<OpKind, number>>> = {
  'lib.insert': 11,
  'lib.get': 13,
  'lib.list': 7,
  'lib.search': 9,
  'lib.update': 8,
  'lib.delete': 5,
  'lib.foreign-id': 9,
  'lib.where-other-tenant': 5,
  'lib.insert-other-tenant': 4,
  'lib.move-to-other-tenant': 3,
  'lib.clone-foreign-id': 2,
  'lib.forge-context': 6,
  'lib.other-schema-read': 3,
  'lib.other-schema-write': 1,
  'lib.session-state': 0.3,
};

export const HTTP_WEIGHTS: Readonly<Partial<Record<OpKind, number>>> = {
  'http.create': 5,
  'http.get': 4,
  'http.list': 2,
  'http.search': 3,
  'http.patch': 3,
  'http.delete': 2,
  'http.foreign-id': 4,
  'http.tenant-header-mismatch': 2,
  'http.body-tenant-id': 1,
  'http.revoked-key': 1.5,
  'ctl.rotate-key': 0.5,
};

/** Library reads that never fail (refusals of theirs are empty answers): several may share a transaction. */
export const READS: readonly OpKind[] = [
  'lib.get',
  'lib.list',
  'lib.search',
  'lib.foreign-id',
  'lib.where-other-tenant',
];
export const MAX_READS_PER_TRANSACTION = 6;

/**
 * Adversarial statements that are refused (or, if Tenantry were wrong, succeed): they run
 * last in a transaction after up to three reads, as injected SQL would, and a refusal
 * aborts the transaction (`TRANSACTION_ABORTED` at commit), which is then expected.
 */
export const REFUSALS: readonly OpKind[] = [
  'lib.insert-other-tenant',
  'lib.move-to-other-tenant',
  'lib.other-schema-read',
  'lib.other-schema-write',
];
export const MAX_READS_BEFORE_REFUSAL = 3;

/** Draws a kind from `kinds` in proportion to its weight. */
export function weighted(rng: Rng, kinds: readonly [OpKind, number][]): OpKind {
  const total = kinds.reduce((sum, [, w]) => sum + w, 0);
  let r = rng.next() * total;
  for (const [kind, w] of kinds) {
    r -= w;
    if (r < 0) return kind;
  }
  return (kinds.at(-1) as [OpKind, number])[0];
}
