/**
 * The isolation fuzzer: many tenants on all three tiers, one seeded stream of random
 * operations run concurrently against them — through the library (raw SQL and Kysely)
 * and over real sockets through the reference server — many of them adversarial, and a
 * model of who owns what that every answer is checked against. At the end a superuser
 * reads every copy of `items` (the shared table, each tenant schema, each tenant
 * database) and compares it with the model.
 *
 * It is what `npm run fuzz:isolation` and `packages/tenantry/test/isolation-fuzz.test.ts`
 * run. Multi-tenancy bugs are silent: a query that forgot its tenant still answers 200.
 * So the verdict is not "no error" but "no row, id or text of another tenant ever
 * reached a caller, every acknowledged write is where the model says, and nothing else is".
 *
 * An operation is one library statement or one HTTP request, checked on its own. Each
 * runs in a tenant transaction of its own, except that up to six plain reads, or up to
 * three reads followed by a statement that should be refused, share one (as application
 * code and injected SQL do): that halves the cost of a run.
 *
 * Reproducibility: operation `i` draws everything it does (kind, tenant, variant, text,
 * explicit ids) from a PRNG seeded by `(seed, i)`; which item it targets is then read from
 * the model, which depends on what finished before it. The same seed therefore replays
 * the same stream of operations, and with `concurrency: 1` the same targets too (bar the
 * choice of a revoked key, which depends on the clock).
 *
 * Memory is bounded whatever the number of operations: each tenant keeps at most
 * `maxItemsPerTenant` live items (inserts turn into deletes above it), a short ring of
 * deleted ids and a few earlier versions per item; findings are grouped by kind.
 *
 * The parts, one file each: `kinds.ts` (what a run draws from), `rng.ts`, `text.ts`,
 * `model.ts` (who owns what), `checks.ts` (findings), `tenants.ts`, the operations
 * (`library-own-items.ts`, `library-other-tenants.ts`, `library-context.ts`,
 * `http-operations.ts`), `sweep.ts`, `fuzzer.ts` (the engine) and `report.ts`.
 */

export { runIsolationFuzz } from './fuzzer.ts';
export { OP_KINDS } from './kinds.ts';
export { formatIsolationReport } from './report.ts';
export { fuzzPlans } from './tenants.ts';
