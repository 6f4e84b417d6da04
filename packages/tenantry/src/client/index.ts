/**
 * `tenantry/client`: a typed HTTP client of the reference server (`tenantry serve`), its
 * types generated from the server's OpenAPI document by openapi-typescript, its runtime
 * openapi-fetch (a thin `fetch` wrapper). Paths, parameters, bodies and responses are
 * checked by the compiler; problem details come back as `error`.
 *
 * @packageDocumentation
 */

import createClient, { type Client, type ClientOptions } from 'openapi-fetch';
import type { paths } from './openapi.ts';

export type { components, operations, paths } from './openapi.ts';

/** A client of the Tenantry HTTP API (openapi-fetch's `Client` over the generated `paths`). */
export type TenantryClient = Client<paths>;

/** Options of {@link createTenantryClient}. */
export interface TenantryClientOptions extends Omit<ClientOptions, 'baseUrl'> {
  /** The server's origin, e.g. `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …`: an API key or access token (data plane), or the admin token (control plane). */
  token?: string;
}

/**
 * A typed client of the reference server.
 *
 * @example
 * ```ts
 * const client = createTenantryClient({ baseUrl: 'http://127.0.0.1:3000', token: apiKey });
 * const { data, error } = await client.GET('/v1/items/{id}', { params: { path: { id } } });
 * if (error) console.log(error.code); // e.g. NOT_FOUND
 * ```
 */
export function createTenantryClient(options: TenantryClientOptions): TenantryClient {
  const { token, headers, ...rest } = options;
  return createClient<paths>({
    ...rest,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(headers as Record<string, string>) },
  });
}
