import { TenantryError } from '../errors/catalog.ts';

/**
 * Where one cache entry lives: a tenant, a name inside the tenant's namespace, and the tags
 * the entry was computed under. Built only by {@link entryRef}, which validates each part:
 * no API of the cache takes a raw key.
 */
export interface EntryRef {
  readonly tenantId: string;
  readonly name: string;
  /** Sorted and deduplicated; part of the entry's identity (see `docs/cache.md`). */
  readonly tags: readonly string[];
}

/** Default prefix of every Redis key of the cache. */
export const DEFAULT_KEY_PREFIX = 'tenantry:cache';

const TENANT_ID_MAX = 255;
const NAME_MAX = 1024;
const TAG_MAX = 200;
/** Control characters would make keys unreadable in `redis-cli` and logs; nothing needs them. */
const CONTROL = /\p{Cc}/u;

/** Throws `CONFIG_INVALID` unless `prefix` can start every key without moving the hash tag. */
export function checkKeyPrefix(prefix: string): string {
  // A brace in the prefix would become the hash tag and put every tenant in one slot.
  if (typeof prefix !== 'string' || prefix === '' || /[{}]/.test(prefix) || CONTROL.test(prefix)) {
    throw new TenantryError('CONFIG_INVALID', 'cache keyPrefix must be a non-empty string without {, } or controls');
  }
  return prefix;
}

function checkPart(what: string, value: unknown, max: number): string {
  if (typeof value !== 'string' || value === '' || value.length > max || CONTROL.test(value)) {
    throw new TenantryError('USAGE_ERROR', `cache ${what} must be a non-empty string of at most ${max} characters`);
  }
  return value;
}

/** Validates the parts of an entry's address; throws `USAGE_ERROR` on a malformed one. */
export function entryRef(tenantId: string, name: string, tags: readonly string[] = []): EntryRef {
  checkPart('tenant id', tenantId, TENANT_ID_MAX);
  // A brace in the id would move the hash tag: keep "{<tenantId>}" exactly the tenant's id.
  if (/[{}]/.test(tenantId)) throw new TenantryError('USAGE_ERROR', 'cache tenant id must not contain { or }');
  checkPart('name', name, NAME_MAX);
  if (!Array.isArray(tags)) throw new TenantryError('USAGE_ERROR', 'cache tags must be an array of strings');
  for (const tag of tags) checkPart('tag', tag, TAG_MAX);
  const sorted = tags.length < 2 ? tags : [...new Set(tags)].sort();
  return { tenantId, name, tags: sorted };
}

/**
 * The Redis keys of one entry. Every key of a tenant starts with `<prefix>:{<tenantId>}`,
 * so Redis Cluster keeps them in one slot and a script may touch them together. Entries
 * continue with `:` and the tenant's own keys with `#`, so no name can collide with them:
 *
 * - `<prefix>:{<tenantId>}:<name>` — the entry (`<versions>\n<json>`)
 * - `<prefix>:{<tenantId>}#lock:<name>` — the computation lease of the entry
 * - `<prefix>:{<tenantId>}#v` — the tenant namespace's version (a flush replaces it)
 * - `<prefix>:{<tenantId>}#t:<tag>` — a tag's version (invalidating the tag replaces it)
 * - `<prefix>:{<tenantId>}#b:<window>` — bytes written in one accounting window
 */
export class KeyLayout {
  readonly prefix: string;

  constructor(prefix: string = DEFAULT_KEY_PREFIX) {
    this.prefix = checkKeyPrefix(prefix);
  }

  /** `<prefix>:{<tenantId>}`: the part every key of the tenant starts with. */
  namespace(tenantId: string): string {
    return `${this.prefix}:{${tenantId}}`;
  }

  entry(ref: EntryRef): string {
    return `${this.namespace(ref.tenantId)}:${ref.name}`;
  }

  lock(ref: EntryRef): string {
    return `${this.namespace(ref.tenantId)}#lock:${ref.name}`;
  }

  /** The version keys an entry depends on: the namespace's first, then its tags'. */
  versions(ref: EntryRef): string[] {
    const ns = this.namespace(ref.tenantId);
    return [`${ns}#v`, ...ref.tags.map((tag) => `${ns}#t:${tag}`)];
  }

  namespaceVersion(tenantId: string): string {
    return `${this.namespace(tenantId)}#v`;
  }

  tagVersion(tenantId: string, tag: string): string {
    return `${this.namespace(tenantId)}#t:${tag}`;
  }

  usage(tenantId: string, window: number): string {
    return `${this.namespace(tenantId)}#b:${window}`;
  }
}
