import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { TenantryError } from '../errors/catalog.ts';

/**
 * The text format of an API key, with no I/O: `<prefix>_<env>_<body>`, e.g.
 * `tnt_live_4GxQ0bTz9LwA` + 32 secret characters + 6 checksum characters.
 *
 * The body is base62 (`0-9A-Za-z`, so a double click selects the whole key) and made of
 * - a **lookup id** (12 characters, ~71 bits): public, stored in clear inside
 *   `display_prefix`, so verification is one lookup through a unique index;
 * - the **secret** (32 characters, ~190 bits): stored nowhere, only inside a keyed hash;
 * - a **checksum** (6 characters): CRC32 of everything before it, in base62, as GitHub
 *   tokens do. It is no security measure (anyone can compute a CRC); it lets a secret
 *   scanner recognise a leaked key with few false positives, and lets a server reject a
 *   mistyped or truncated key without asking the database.
 */

/** Environments a key can belong to; part of the key text, so a test key is visibly one. */
export const API_KEY_ENVIRONMENTS = ['live', 'test', 'dev'] as const;

/** An API key's environment. */
export type ApiKeyEnvironment = (typeof API_KEY_ENVIRONMENTS)[number];

/** The prefix keys start with unless configured otherwise. */
export const DEFAULT_API_KEY_PREFIX = 'tnt';

/** Length of the public lookup id at the start of the body. */
export const API_KEY_LOOKUP_LENGTH = 12;
/** Length of the secret part: 32 base62 characters are log2(62^32) ≈ 190.5 bits. */
export const API_KEY_SECRET_LENGTH = 32;
/** Length of the checksum: 62^6 > 2^32, so every CRC32 fits. */
export const API_KEY_CHECKSUM_LENGTH = 6;

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LENGTH = API_KEY_LOOKUP_LENGTH + API_KEY_SECRET_LENGTH + API_KEY_CHECKSUM_LENGTH;
const PREFIX = /^[a-z]{2,8}$/;
const SHAPE = new RegExp(`^([a-z]{2,8})_(live|test|dev)_([0-9A-Za-z]{${BODY_LENGTH}})$`);
/** Longest well-formed key: 8-letter prefix, `live`/`test`, body. Longer input is rejected before any regex. */
const MAX_LENGTH = 8 + 1 + 4 + 1 + BODY_LENGTH;
/** 62 × 4: bytes at or above it are dropped, so `byte % 62` is uniform (no modulo bias). */
const UNBIASED_LIMIT = 248;

/** The public parts of a well-formed key: safe to log, store and show. */
export interface ParsedApiKey {
  readonly prefix: string;
  readonly environment: ApiKeyEnvironment;
  /** The public lookup id (first characters of the body). */
  readonly lookupId: string;
  /** `<prefix>_<env>_<lookupId>`: what a UI shows and what the store looks the key up by. */
  readonly displayPrefix: string;
}

/** True for a valid key prefix: 2–8 lower-case ASCII letters. */
export function isApiKeyPrefix(value: unknown): value is string {
  return typeof value === 'string' && PREFIX.test(value);
}

/** `length` characters of base62 from `crypto.randomBytes`, by rejection sampling. */
function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    // ~3% of bytes are rejected; ask for a little more than needed so one call usually suffices.
    for (const byte of randomBytes(length - out.length + 8)) {
      if (byte >= UNBIASED_LIMIT) continue;
      out += ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

/**
 * The checksum of `text`: its CRC32 in base62, left-padded to 6 characters.
 *
 * @example
 * ```ts
 * apiKeyChecksum('tnt_live_…') // e.g. '2hW9qA'
 * ```
 */
export function apiKeyChecksum(text: string): string {
  let value = crc32(text);
  let out = '';
  for (let i = 0; i < API_KEY_CHECKSUM_LENGTH; i++) {
    out = ALPHABET[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

/**
 * Generates a new key. The returned `key` is the only copy of the secret: store a hash.
 *
 * @example
 * ```ts
 * const { key, parsed } = generateApiKey({ prefix: 'frt', environment: 'live' });
 * // key: 'frt_live_<12 lookup><32 secret><6 checksum>'; parsed.displayPrefix: 'frt_live_<12 lookup>'
 * ```
 */
export function generateApiKey(options: { prefix?: string; environment: ApiKeyEnvironment }): {
  key: string;
  parsed: ParsedApiKey;
} {
  const prefix = options.prefix ?? DEFAULT_API_KEY_PREFIX;
  if (!isApiKeyPrefix(prefix)) {
    throw new TenantryError(
      'CONFIG_INVALID',
      `API key prefix must be 2-8 lower-case letters, got ${JSON.stringify(prefix)}`,
    );
  }
  if (!API_KEY_ENVIRONMENTS.includes(options.environment)) {
    throw new TenantryError('INVALID_INPUT', `environment must be one of ${API_KEY_ENVIRONMENTS.join(', ')}`);
  }
  const lookupId = randomBase62(API_KEY_LOOKUP_LENGTH);
  const displayPrefix = `${prefix}_${options.environment}_${lookupId}`;
  const unchecked = `${displayPrefix}${randomBase62(API_KEY_SECRET_LENGTH)}`;
  return {
    key: `${unchecked}${apiKeyChecksum(unchecked)}`,
    parsed: Object.freeze({ prefix, environment: options.environment, lookupId, displayPrefix }),
  };
}

/**
 * Checks a presented key offline: shape, environment, checksum and (when given) prefix.
 * Returns its public parts, or `undefined` for anything else; never throws, whatever the
 * input, because it runs on untrusted header values before any other work.
 *
 * @example
 * ```ts
 * parseApiKey(req.headers['x-api-key'], { prefix: 'frt' })?.displayPrefix // 'frt_live_…' or undefined
 * ```
 */
export function parseApiKey(presented: unknown, options: { prefix?: string } = {}): ParsedApiKey | undefined {
  if (typeof presented !== 'string' || presented.length > MAX_LENGTH) return undefined;
  const match = SHAPE.exec(presented);
  if (!match) return undefined;
  const [, prefix, environment, body] = match as unknown as [string, string, ApiKeyEnvironment, string];
  if (options.prefix !== undefined && prefix !== options.prefix) return undefined;
  const cut = presented.length - API_KEY_CHECKSUM_LENGTH;
  // The checksum is public arithmetic, not a secret: a plain comparison is fine here.
  if (apiKeyChecksum(presented.slice(0, cut)) !== presented.slice(cut)) return undefined;
  const lookupId = body.slice(0, API_KEY_LOOKUP_LENGTH);
  return Object.freeze({ prefix, environment, lookupId, displayPrefix: `${prefix}_${environment}_${lookupId}` });
}
