import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../src/index.ts';

describe('error catalog', () => {
  const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

  it.each(Object.keys(ERRORS))('%s is documented in docs/errors.md with its status', (code) => {
    const row = doc.split('\n').find((line) => new RegExp(`^\\| \`${code}\`\\s+\\|`).test(line));
    expect(row, `docs/errors.md has no row for ${code}`).toBeDefined();
    expect(row).toMatch(new RegExp(`\\|\\s+${ERRORS[code as keyof typeof ERRORS].status}\\s+\\|`));
  });

  it('documents no code that is not in the catalog', () => {
    const documented = [...doc.matchAll(/^\| `([A-Z_]+)`\s+\|\s+\d{3}\s+\|/gm)].map((m) => m[1]);
    expect(documented.filter((code) => !((code as string) in ERRORS))).toEqual([]);
  });
});
