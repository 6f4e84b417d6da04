import { CONTEXT_SETTING } from '../../packages/tenantry/src/context/context-dialect.ts';
import { UNICODE_EDGES } from '../fuzz.ts';
import type { Rng } from './rng.ts';

/** The text the fuzzer writes, and the markers that tell whose text it is. */

/** What an attacker types into a text field. None contains a marker (see {@link marker}). */
const INJECTIONS = [
  "'; DROP TABLE items; --",
  "' OR 1=1 --",
  "' OR '1'='1",
  '" OR ""="',
  "'); DELETE FROM items; --",
  `'; SET ${CONTEXT_SETTING} = ''; --`,
  `'); SELECT set_config('${CONTEXT_SETTING}', 'x', false); --`,
  '$$; DROP TABLE items; $$',
  "\\'; SELECT pg_sleep(10); --",
  '1; UPDATE items SET tenant_id = NULL --',
  "%' OR tenant_id IS NOT NULL --",
  "') UNION SELECT tenant_id::text, id::text, title FROM items --",
  "''''",
  '\\',
  '`backtick`',
  "E'\\\\x41'",
  '/* comment',
  '-- line comment',
  ':1 $1 ? %s',
  '<script>alert(1)</script>',
  '{"tenant_id":"00000000-0000-4000-8000-000000000000"}',
  'Robert\u2019); DROP TABLE items;--',
] as const;

const WORDS = ['alpha', 'ledger', 'invoice', 'quarterly', 'roadmap', 'secret', 'plan', 'draft', 'payroll', 'merger'];

/** Some text: words, injection strings and Unicode edge cases (NUL-free, no lone surrogates). */
export function text(rng: Rng, pieces: number): string {
  const out: string[] = [];
  for (let i = 0; i < pieces; i++) {
    const r = rng.next();
    out.push(r < 0.4 ? rng.pick(INJECTIONS) : r < 0.7 ? rng.pick(UNICODE_EDGES) : rng.pick(WORDS));
  }
  return out.join(' ');
}

/**
 * The word that names a tenant and the operation that wrote a text: `fz<tenant>x<op>`.
 * Every title carries its writer's, so any text of another tenant is recognisable in any
 * answer (a full-text search for it must find nothing), even a row the model forgot.
 */
export const marker = (tenant: number, op: number) => `fz${String(tenant).padStart(2, '0')}x${op.toString(36)}`;
export const MARKER = /fz(\d\d)x[0-9a-z]+/g;
export const markerOf = (s: string) => /fz\d\dx[0-9a-z]+$/.exec(s)?.[0];

export const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
