import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { TenantryError } from '../errors/catalog.ts';

/** What each key derived from `TENANTRY_SECRET` is for; one purpose, one key. */
export type KeyPurpose =
  | 'context-hmac'
  | 'credential-encryption'
  | 'runtime-password'
  | 'api-key-hash'
  | 'jwt-signing'
  | 'refresh-token-hash'
  | 'webhook-secret-encryption';

/**
 * Keys derived from the master secret (`TENANTRY_SECRET`) with HKDF-SHA256, so that no
 * two mechanisms share key material and rotating the master secret rotates them all.
 */
export class KeyRing {
  readonly #master: Buffer;
  readonly #cache = new Map<KeyPurpose, Buffer>();

  constructor(masterSecret: string) {
    if (typeof masterSecret !== 'string' || masterSecret.length < 32) {
      throw new TenantryError('MISSING_SECRET', 'it must be at least 32 characters (e.g. `openssl rand -hex 32`)');
    }
    this.#master = Buffer.from(masterSecret, 'utf8');
  }

  /** The 32-byte key for `purpose`. */
  key(purpose: KeyPurpose): Buffer {
    let key = this.#cache.get(purpose);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', this.#master, 'tenantry', `tenantry:${purpose}`, 32));
      this.#cache.set(purpose, key);
    }
    return key;
  }

  /** A password for the runtime role, reproducible from the master secret (no extra env var). */
  runtimePassword(role: string): string {
    return createHmac('sha256', this.key('runtime-password')).update(role).digest('base64url');
  }
}

/** HMAC-SHA256 of `message` under `key`, lowercase hex (what PostgreSQL's `encode(…,'hex')` gives). */
export function hmacHex(key: Buffer, message: string): string {
  return createHmac('sha256', key).update(message, 'utf8').digest('hex');
}

/** Constant-time comparison of two hex strings. */
export function safeEqualHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The two padded keys of HMAC (RFC 2104) for a 32-byte key, so PostgreSQL can compute
 * HMAC-SHA256 with its built-in `sha256()` and no extension:
 * `sha256(opad || sha256(ipad || message))`.
 */
export function hmacPads(key: Buffer): { ipad: Buffer; opad: Buffer } {
  const block = Buffer.alloc(64);
  key.copy(block);
  const ipad = Buffer.alloc(64);
  const opad = Buffer.alloc(64);
  for (let i = 0; i < 64; i++) {
    ipad[i] = (block[i] as number) ^ 0x36;
    opad[i] = (block[i] as number) ^ 0x5c;
  }
  return { ipad, opad };
}
