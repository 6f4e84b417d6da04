import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { TenantryError } from '../errors/catalog.ts';

/**
 * Addresses a webhook must not reach: a tenant who registers `http://10.0.0.5/admin` or a
 * name that resolves to 169.254.169.254 (cloud metadata) would otherwise make the server
 * send requests into its own network (server-side request forgery).
 */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

/** True when `address` (an IP literal) is loopback, link-local, private or otherwise not public. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family !== 6) return true;
  // IPv4-mapped (::ffff:10.0.0.1) and NAT64 forms reach the IPv4 address they carry.
  const mapped = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return PRIVATE.check(mapped[1] as string, 'ipv4');
  return PRIVATE.check(address, 'ipv6');
}

/** A webhook target: the parsed URL and the addresses its host resolved to, all checked. */
export interface ResolvedTarget {
  readonly url: URL;
  readonly addresses: readonly { address: string; family: number }[];
}

/**
 * Parses `url`, resolves its host and throws `WEBHOOK_URL_REFUSED` unless it is http(s),
 * carries no credentials, and every address it resolves to is public (any address when
 * `allowPrivateAddresses`). Delivery connects to the addresses returned here, not to a
 * second resolution, so a name cannot pass the check and then resolve elsewhere.
 *
 * @example
 * ```ts
 * const target = await resolveWebhookTarget('https://hooks.example.com/in', { allowPrivateAddresses: false });
 * ```
 */
export async function resolveWebhookTarget(
  url: string,
  options: { allowPrivateAddresses: boolean },
): Promise<ResolvedTarget> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TenantryError('WEBHOOK_URL_REFUSED', 'not a URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new TenantryError('WEBHOOK_URL_REFUSED', 'only http and https URLs');
  }
  if (parsed.username || parsed.password) {
    throw new TenantryError('WEBHOOK_URL_REFUSED', 'no credentials in the URL');
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  let addresses: { address: string; family: number }[];
  if (isIP(host)) {
    addresses = [{ address: host, family: isIP(host) }];
  } else {
    try {
      addresses = await lookup(host, { all: true, verbatim: true });
    } catch {
      throw new TenantryError('WEBHOOK_URL_REFUSED', 'the host does not resolve');
    }
  }
  if (addresses.length === 0) throw new TenantryError('WEBHOOK_URL_REFUSED', 'the host does not resolve');
  if (!options.allowPrivateAddresses && addresses.some((a) => isPrivateAddress(a.address))) {
    throw new TenantryError('WEBHOOK_URL_REFUSED', 'the host resolves to a loopback, link-local or private address');
  }
  return { url: parsed, addresses };
}
