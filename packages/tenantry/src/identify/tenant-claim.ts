import type { CredentialHeaders } from './credential.ts';

/** Where a request may name its tenant, besides its credential. */
export type TenantClaim = 'header' | 'subdomain' | 'path';

/** What claim parsing reads of a request. */
export interface ClaimSource {
  readonly headers: CredentialHeaders;
  /** Host name of the request, for the `subdomain` claim. */
  readonly hostname?: string | undefined;
  /** Request path (with query), for the `path` claim (`/t/<slug>/…`). */
  readonly url: string;
}

/**
 * The tenant a request names besides its credential, by the first of `claims` that names
 * one: the `X-Tenant-ID` header, a subdomain of `subdomainBase`, or a `/t/<slug>/` path
 * prefix. It is only a claim: identification checks it against the credential's tenant.
 *
 * @example
 * ```ts
 * claimedTenant({ headers: {}, hostname: 'acme.example.com', url: '/' }, ['subdomain'], 'example.com'); // 'acme'
 * ```
 */
export function claimedTenant(
  request: ClaimSource,
  claims: readonly TenantClaim[],
  subdomainBase?: string,
): string | undefined {
  for (const claim of claims) {
    if (claim === 'header') {
      const v = request.headers['x-tenant-id'];
      if (typeof v === 'string' && v.length > 0) return v;
    } else if (claim === 'subdomain' && subdomainBase) {
      const host = (request.hostname ?? '').toLowerCase().split(':')[0] ?? '';
      if (host.endsWith(`.${subdomainBase}`)) return host.slice(0, -subdomainBase.length - 1);
    } else if (claim === 'path') {
      const m = /^\/t\/([a-z0-9-]{1,63})(?:\/|$)/.exec(request.url);
      if (m) return m[1];
    }
  }
  return undefined;
}
