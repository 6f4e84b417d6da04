import { contextFunctionsSql, tenantStateVersionSql } from '../context/context-functions.ts';
import type { TenantMigration } from '../schema/migration.ts';

/**
 * Control-plane migration 0006 and satellite migration s0002: the verified context moves
 * from a signed session value checked by PL/pgSQL in every statement to per-session
 * registers that `enter()` writes once per transaction and policies compare once per statement (see
 * `contextFunctionsSql` and docs/security-model.md). Policies and column defaults keep
 * calling `current_tenant_id_in()` / `current_tenant_id()` by name, so every tenant table,
 * old or new, gets the new check without being touched.
 */
export function contextRegistersMigration(runtimeRole: string, chain: 'control' | 'satellite'): TenantMigration {
  return {
    id: chain === 'control' ? '0006_context_registers' : 's0002_context_registers',
    up: (m) => m.query(contextFunctionsSql(runtimeRole)),
  };
}

/**
 * Control-plane migration 0007 and satellite migration s0003: the tenant's id and the
 * transaction's start, four registers (`x`, `h`, `l` and the place), become one voucher
 * register beside the place: two `setval()` per transaction instead of four, and two
 * register reads per statement instead of four (see `contextFunctionsSql`). Sessions that
 * still hold the old registers get new ones at their next `enter()`.
 */
export function contextVoucherMigration(runtimeRole: string, chain: 'control' | 'satellite'): TenantMigration {
  return {
    id: chain === 'control' ? '0007_context_voucher' : 's0003_context_voucher',
    up: (m) => m.query(contextFunctionsSql(runtimeRole)),
  };
}

/**
 * Control-plane migration 0018 and satellite migration s0009: `enter()` and the policy
 * check rewritten for the cost of their common path, measured in instructions per
 * transaction (BENCHMARKS.md): refusing branches are prepared only when taken, the tenant
 * row is one plain index lookup, the voucher hashes the id seeded with the transaction's
 * start instead of building a string, and the per-statement check is one expression.
 * Same registers, same guarantees; a transaction that straddles the upgrade is refused
 * once (TN001: its voucher was written by the old formula).
 */
export function contextCommonPathMigration(runtimeRole: string, chain: 'control' | 'satellite'): TenantMigration {
  return {
    id: chain === 'control' ? '0018_context_common_path' : 's0009_context_common_path',
    up: (m) => m.query(contextFunctionsSql(runtimeRole)),
  };
}

/**
 * Control-plane migration 0023 and satellite migration s0013: `enter(token, next_secret,
 * shared)`, which the dialect's statement now calls, places `search_path` itself (only when
 * the session's differs) and runs a third fewer expressions on the common call (a session
 * secret, tenant work); the voucher's seed names two functions instead of four. Measured in
 * instructions per transaction (BENCHMARKS.md). A transaction that straddles the upgrade is
 * refused once (TN001), as in 0018.
 */
export function contextFewExpressionsMigration(runtimeRole: string, chain: 'control' | 'satellite'): TenantMigration {
  return {
    id: chain === 'control' ? '0023_context_few_expressions' : 's0013_context_few_expressions',
    up: (m) => m.query(contextFunctionsSql(runtimeRole)),
  };
}

/**
 * Control-plane migration 0027 and satellite migration s0014: `enter(token, next_secret,
 * shared, tenant_id, secret, known_version, known_timeout, known_place)`, which the dialect's
 * statement now calls. The common call (a session secret, tenant work) passes the tenant's
 * uuid and the secret as they are instead of inside a token, so PostgreSQL parses nothing out
 * of text on it, and the caller's copy of the tenant's row with the tenant state version it
 * was read at, so the row is read again only after a tenant's state changed (the version and
 * its triggers, `tenantStateVersionSql`). BENCHMARKS.md: instructions per transaction. The
 * older forms stay, for processes of the previous version during an upgrade.
 */
export function contextParametersMigration(runtimeRole: string, chain: 'control' | 'satellite'): TenantMigration {
  return {
    id: chain === 'control' ? '0027_context_parameters' : 's0014_context_parameters',
    up: async (m) => {
      await m.query(tenantStateVersionSql());
      await m.query(contextFunctionsSql(runtimeRole));
    },
  };
}
