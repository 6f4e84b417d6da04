/** Deepest JSON nesting a request may carry: `features` and `settings` are small configuration objects. */
export const MAX_INPUT_DEPTH = 32;

/** Where a request part holds what cannot be stored as sent. */
export interface InputProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * Finds, anywhere in a parsed request part (keys included), NUL (PostgreSQL's text and
 * jsonb refuse it: a 500) and lone surrogates (stored as U+FFFD: silently altered), and
 * nesting past {@link MAX_INPUT_DEPTH} (validators recurse per level). Iterative, so the
 * check itself cannot overflow the stack.
 *
 * @example
 * ```ts
 * findUnstorableInput({ title: 'a\u0000b' }, 'body'); // { path: 'body.title', message: '…' }
 * ```
 */
export function findUnstorableInput(value: unknown, root: string): InputProblem | undefined {
  const bad = (s: string) => s.includes('\u0000') || !s.isWellFormed();
  const message = 'must not contain NUL or lone surrogates';
  const stack: [unknown, string, number][] = [[value, root, 0]];
  for (let top = stack.pop(); top; top = stack.pop()) {
    const [v, path, depth] = top;
    if (typeof v === 'string') {
      if (bad(v)) return { path, message };
    } else if (typeof v === 'object' && v !== null) {
      if (depth >= MAX_INPUT_DEPTH) return { path, message: `nested deeper than ${MAX_INPUT_DEPTH} levels` };
      for (const [key, child] of Object.entries(v)) {
        if (bad(key)) return { path, message: `a key ${message}` };
        stack.push([child, `${path}.${key}`, depth + 1]);
      }
    }
  }
  return undefined;
}
