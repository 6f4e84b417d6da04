import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { TenantryError } from '../errors/catalog.ts';

/** Parameters of a {@link PasswordHasher}; see {@link ARGON2ID_PARAMS} for the defaults. */
export interface Argon2idParams {
  /** KiB of memory per hash (`m=`). */
  readonly memoryCost: number;
  /** Passes over the memory (`t=`). */
  readonly timeCost: number;
  /** Lanes (`p=`); more lanes cost more threads per login, not more attacker work. */
  readonly parallelism: number;
  /** Raw hash length in bytes. */
  readonly outputLen: number;
}

/**
 * Argon2id parameters (RFC 9106), as OWASP's Password Storage Cheat Sheet recommends for
 * a server that hashes on request: 19 MiB of memory, 2 passes, 1 lane, 32-byte output.
 * One hash takes ~30–60 ms of one libuv thread; memory, not time, is what makes a GPU
 * or ASIC attack on a stolen table expensive. Raise `memoryCost` before `timeCost`.
 * Changing them leaves old hashes valid: {@link PasswordHasher.needsRehash} upgrades
 * each on its owner's next successful login.
 */
export const ARGON2ID_PARAMS: Argon2idParams = Object.freeze({
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
  outputLen: 32,
});

/** `$argon2id$` is the only variant we write or accept (`d` leaks through side channels, `i` is weaker to TMTO). */
const ARGON2ID = 2;

let argon2: Promise<typeof import('@node-rs/argon2')> | undefined;
/** The native argon2 module, loaded on the first hash: importing `tenantry` does not load it. */
function loadArgon2(): Promise<typeof import('@node-rs/argon2')> {
  argon2 ??= import('@node-rs/argon2');
  return argon2;
}

/**
 * A password as users may choose it: NIST SP 800-63B asks for at least 8 characters and no
 * composition rules; the upper bound only stops absurd request bodies.
 */
export const PasswordInput = z.string().min(8, 'at least 8 characters').max(1024, 'at most 1024 characters');

/**
 * Hashes and verifies passwords with argon2id. {@link verify} costs one full argon2id
 * verification whether or not there is a hash to check against, so a login for an email
 * that does not exist takes as long as one for a wrong password (no user enumeration by
 * timing).
 *
 * @example
 * ```ts
 * const passwords = new PasswordHasher();
 * const stored = await passwords.hash('correct horse battery staple');
 * await passwords.verify(stored, 'correct horse battery staple'); // true
 * await passwords.verify(undefined, 'anything');                  // false, same cost
 * ```
 */
export class PasswordHasher {
  readonly params: Argon2idParams;
  #dummy: Promise<string> | undefined;

  constructor(params: Partial<Argon2idParams> = {}) {
    const merged = { ...ARGON2ID_PARAMS, ...params };
    for (const [name, value] of Object.entries(merged)) {
      if (!Number.isInteger(value) || value < 1) {
        throw new TenantryError('CONFIG_INVALID', `argon2id ${name} must be a positive integer`);
      }
    }
    if (merged.memoryCost < 8 * merged.parallelism) {
      throw new TenantryError('CONFIG_INVALID', 'argon2id memoryCost must be at least 8 KiB per lane');
    }
    this.params = Object.freeze(merged);
  }

  /** An argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), with a fresh 16-byte salt. */
  async hash(password: string): Promise<string> {
    const { hash } = await loadArgon2();
    return hash(password, { ...this.params, algorithm: ARGON2ID });
  }

  /**
   * True when `password` matches `stored`. With no stored hash (unknown user, invited user
   * without a password) it verifies against a dummy hash of the same parameters and
   * returns false, so every call costs the same. A malformed stored hash is false too.
   */
  async verify(stored: string | null | undefined, password: string): Promise<boolean> {
    // Awaited on every path, so the first call after start-up is not faster for the
    // unknown-user case (which would otherwise pay for computing the dummy).
    const dummy = await this.#dummyHash();
    const candidate = stored?.startsWith('$argon2id$') ? stored : dummy;
    const { verify } = await loadArgon2();
    try {
      const ok = await verify(candidate, password);
      return ok && candidate === stored;
    } catch {
      return false;
    }
  }

  /** True when `stored` was made with other parameters than this hasher's (rehash it after a successful login). */
  async needsRehash(stored: string): Promise<boolean> {
    const { parseOptions } = await loadArgon2();
    try {
      const p = parseOptions(stored);
      return (
        p.algorithm !== ARGON2ID ||
        p.memoryCost !== this.params.memoryCost ||
        p.timeCost !== this.params.timeCost ||
        p.parallelism !== this.params.parallelism ||
        p.outputLen !== this.params.outputLen
      );
    } catch {
      return true;
    }
  }

  #dummyHash(): Promise<string> {
    // A hash of a random, forgotten password: nothing can ever verify against it.
    this.#dummy ??= this.hash(randomBytes(32).toString('base64url'));
    return this.#dummy;
  }
}
