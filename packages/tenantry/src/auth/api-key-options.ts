import { integerOption, type Logger } from '../config.ts';
import { TenantryError } from '../errors/catalog.ts';
import { DEFAULT_API_KEY_PREFIX, isApiKeyPrefix } from './api-key-format.ts';

/**
 * Options of {@link ApiKeyStore}.
 *
 * @example
 * ```ts
 * const keys = new ApiKeyStore(pool, keyRing.key('api-key-hash'), { prefix: 'frt', lastUsedFlushMs: 10_000 });
 * ```
 */
export interface ApiKeyStoreOptions {
  /** Prefix of new keys, and the only one `verify()` accepts: 2–8 lower-case letters. Default `tnt`. */
  prefix?: string;
  /**
   * How long a verified key may be answered from memory, in ms: 0–1000, default 1000. This
   * bounds how long a revocation can go unseen by an instance whose listener is down.
   */
  cacheTtlMs?: number;
  /** Most keys kept in the verification cache; the oldest go first. Default 10 000. */
  cacheMaxEntries?: number;
  /** How often `last_used_at` and usage audit rows are written, in ms. Default 5000. */
  lastUsedFlushMs?: number;
  /** Where a failed background flush or a lost listener is reported. */
  logger?: Logger;
}

/** {@link ApiKeyStoreOptions} validated, with defaults applied. */
export interface ResolvedApiKeyOptions {
  readonly prefix: string;
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
  readonly lastUsedFlushMs: number;
  readonly logger: Logger | undefined;
}

/** Validates and defaults {@link ApiKeyStoreOptions} once; `CONFIG_INVALID` on a bad value. */
export function resolveApiKeyOptions(options: ApiKeyStoreOptions): ResolvedApiKeyOptions {
  const prefix = options.prefix ?? DEFAULT_API_KEY_PREFIX;
  if (!isApiKeyPrefix(prefix)) {
    throw new TenantryError(
      'CONFIG_INVALID',
      `API key prefix must be 2-8 lower-case letters, got ${JSON.stringify(prefix)}`,
    );
  }
  return Object.freeze({
    prefix,
    // Above 1 s a revocation could outlive the guarantee when notifications are lost.
    cacheTtlMs: integerOption(options.cacheTtlMs, 1000, 0, 1000, 'cacheTtlMs'),
    cacheMaxEntries: integerOption(options.cacheMaxEntries, 10_000, 1, 10_000_000, 'cacheMaxEntries'),
    lastUsedFlushMs: integerOption(options.lastUsedFlushMs, 5000, 1, 3_600_000, 'lastUsedFlushMs'),
    logger: options.logger,
  });
}
