import { createHash } from 'node:crypto';

/**
 * The Lua scripts of the Redis backend. Each runs atomically on the one slot of its tenant
 * (every key it touches carries the tenant's hash tag and is passed in `KEYS`), so a get is
 * one round trip and no interleaving of instances can store a value under versions that
 * changed while it was computed.
 *
 * Shared conventions: the version keys (namespace, then tags) come last in `KEYS`; an
 * absent version is created with the caller's nonce (a value never used before), so an
 * evicted or expired version key turns the entries made under it into misses, never into
 * hits; a snapshot is the versions joined by `,`; an entry is `<snapshot>\n<payload>` and a
 * lease `<snapshot>|<token>`.
 */
export interface RedisScript {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): RedisScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/** Reads (creating absent ones) the version keys from KEYS[first], and returns the snapshot. */
const SNAPSHOT = `
local function snapshot(first, nonce, ttl)
  local versions = {}
  for i = first, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if not v then
      v = nonce
      redis.call('SET', KEYS[i], v, 'PX', ttl)
    end
    versions[#versions + 1] = v
  end
  return table.concat(versions, ',')
end
`;

/** Bytes written per tenant and window, and extends the versions to outlive the entry. */
const ACCOUNT = `
local function account(usage, bytes, usageTtl, versionsFrom, ttl)
  redis.call('HINCRBY', usage, 'bytes', bytes)
  redis.call('HINCRBY', usage, 'entries', 1)
  redis.call('PEXPIRE', usage, usageTtl, 'NX')
  for i = versionsFrom, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl, 'GT') end
end
`;

/**
 * KEYS: entry, lease, versions…; ARGV: nonce, version TTL, acquire (1/0), token, lease TTL.
 * Returns {'hit', payload} | {'busy', holder} | {'lease', snapshot} | {'miss'}.
 */
export const LOOKUP = script(`${SNAPSHOT}
local current = snapshot(3, ARGV[1], ARGV[2])
local entry = redis.call('GET', KEYS[1])
if entry then
  local nl = string.find(entry, '\\n', 1, true)
  if nl and string.sub(entry, 1, nl - 1) == current then return {'hit', string.sub(entry, nl + 1)} end
end
local lease = redis.call('GET', KEYS[2])
if lease then
  local bar = string.find(lease, '|', 1, true)
  if bar and string.sub(lease, 1, bar - 1) == current then return {'busy', string.sub(lease, bar + 1)} end
end
if ARGV[3] ~= '1' then return {'miss'} end
redis.call('SET', KEYS[2], current .. '|' .. ARGV[4], 'PX', ARGV[5])
return {'lease', current}
`);

/**
 * KEYS: entry, lease, usage, versions…; ARGV: snapshot, token, payload, TTL, usage TTL.
 * Stores only while the lease is held and the versions are still the snapshot's; 1 or 0.
 */
export const STORE = script(`${ACCOUNT}
if redis.call('GET', KEYS[2]) ~= ARGV[1] .. '|' .. ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
local versions = {}
for i = 4, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then return 0 end
  versions[#versions + 1] = v
end
if table.concat(versions, ',') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '\\n' .. ARGV[3], 'PX', ARGV[4])
account(KEYS[3], #ARGV[3], ARGV[5], 4, ARGV[4])
return 1
`);

/** KEYS: entry, lease, usage, versions…; ARGV: nonce, version TTL, payload, TTL, usage TTL. */
export const SET = script(`${SNAPSHOT}${ACCOUNT}
local current = snapshot(4, ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], current .. '\\n' .. ARGV[3], 'PX', ARGV[4])
account(KEYS[3], #ARGV[3], ARGV[5], 4, ARGV[4])
return 1
`);

/** KEYS: lease; ARGV: `<snapshot>|<token>`. Deletes the lease if it is still this one. */
export const RELEASE = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/** KEYS: entry, lease. */
export const DELETE = script(`return redis.call('DEL', KEYS[1], KEYS[2])`);

/** KEYS: a version key; ARGV: nonce, TTL. Replaces the version: what was made under it is a miss. */
export const BUMP = script(`return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])`);

/** KEYS: usage of the current and the previous window. Returns {bytes, entries} summed. */
export const USAGE = script(`
local bytes, entries = 0, 0
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'bytes', 'entries')
  bytes = bytes + (tonumber(v[1]) or 0)
  entries = entries + (tonumber(v[2]) or 0)
end
return {bytes, entries}
`);

/**
 * ARGV: SCAN cursor, MATCH pattern (one tenant's keys), COUNT, and `unlink` or `count`.
 * One step of walking the tenant's keys for erasure: unlinks (or counts) what the step
 * finds and returns {next cursor, keys found}. The keys are not declared in KEYS: this runs
 * on a single Redis server (a Cluster node would walk only its own slots).
 */
export const SCAN_STEP = script(`
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys = r[2]
if ARGV[4] == 'unlink' and #keys > 0 then redis.call('UNLINK', unpack(keys)) end
return {r[1], #keys}
`);
