import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';
import ts from 'typescript';

/** Where the generated types of `tenantry/client` live (committed; CI checks they match a fresh generation). */
export const CLIENT_TYPES = new URL('../packages/tenantry/src/client/openapi.ts', import.meta.url);

/**
 * The TypeScript types of the reference server's OpenAPI document (`GET /openapi.json`), as
 * openapi-typescript prints them, with a header saying how to regenerate them. Deterministic:
 * the same document gives the same text, so a diff means the routes changed.
 */
export async function clientTypesSource(document: object): Promise<string> {
  const ast = await openapiTS(document as Parameters<typeof openapiTS>[0], {
    alphabetize: true,
    // A recursive schema printed as an interface member refers to itself, which TypeScript
    // refuses (TS2502); a type alias may recurse, so the JSON value schemas point at one.
    transform: (_schema, { path }) =>
      /\/components\/schemas\/JsonValue(Input)?$/.test(path ?? '')
        ? ts.factory.createTypeReferenceNode('JsonValue')
        : undefined,
  });
  return `${COMMENT_HEADER}// Generated from the reference server's GET /openapi.json by \`npm run generate:client\`.
// Do not edit: packages/tenantry/test/client.test.ts fails when this file differs from a fresh generation.

/** Any JSON value (the \`JsonValue\` schemas). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

${astToString(ast)}`;
}
