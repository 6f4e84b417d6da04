import { contextFunctionsSql } from '../context/context-functions.ts';
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
