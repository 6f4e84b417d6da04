import http from 'node:http';
import fc from 'fast-check';

/**
 * Helpers of the HTTP fuzz test: a raw HTTP client (paths are sent byte for byte, unlike
 * `fetch`, which resolves `../` and re-encodes), the subset of JSON Schema that the
 * OpenAPI document uses (to tell a bad value from a good one), and fast-check arbitraries
 * of bad input derived from those schemas.
 */

// ---------------------------------------------------------------------------------------
// Raw HTTP

export interface RawRequest {
  readonly method: string;
  /** Sent as is: it may hold `../`, `%00` or broken percent-encodings on purpose. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** A string is sent as UTF-8; a Buffer as its bytes (e.g. invalid UTF-8). */
  readonly body?: string | Buffer;
}

export interface RawResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
}

/** A keep-alive HTTP/1.1 client that counts what it sends. */
export class RawHttp {
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  readonly #host: string;
  readonly #port: number;
  /** Requests sent, by label (the route), and in all. */
  readonly counts = new Map<string, number>();
  sent = 0;

  constructor(baseUrl: string) {
    const url = new URL(baseUrl);
    this.#host = url.hostname;
    this.#port = Number(url.port);
  }

  async send(request: RawRequest, label = 'other'): Promise<RawResponse> {
    this.sent++;
    this.counts.set(label, (this.counts.get(label) ?? 0) + 1);
    try {
      return await this.#once(request);
    } catch (error) {
      // A kept-alive socket the server closed after its previous answer (413, 431): the
      // request never reached it, so sending it again on a fresh socket is safe.
      if ((error as { reused?: boolean }).reused) return this.#once(request);
      throw error;
    }
  }

  #once(request: RawRequest): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...request.headers };
      if (request.body !== undefined) headers['content-length'] = String(Buffer.byteLength(request.body));
      const req = http.request(
        {
          host: this.#host,
          port: this.#port,
          method: request.method,
          path: request.path,
          headers,
          agent: this.#agent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
        },
      );
      req.setTimeout(15_000, () => req.destroy(new Error('no answer within 15 s')));
      req.on('error', (error) => reject(Object.assign(error, { reused: req.reusedSocket })));
      req.end(request.body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** `s` with raw control characters and lone surrogates shown as `\\uXXXX` (JSON escapes in it stay as sent). */
export function printable(s: string): string {
  return s.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this escapes
    /[\u0000-\u001f\u007f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** A request as a reader can replay it (bodies and header values shortened past 300 characters). */
export function describeRequest(request: RawRequest, secrets: Readonly<Record<string, string>>): string {
  const hide = (s: string) => Object.entries(secrets).reduce((acc, [name, value]) => acc.replaceAll(value, name), s);
  const short = (s: string) =>
    s.length > 300 ? `${s.slice(0, 200)}…[${s.length} chars, ends ${JSON.stringify(s.slice(-40))}]` : s;
  const headers = Object.entries(request.headers ?? {}).map(([k, v]) => `${k}: ${short(hide(v))}`);
  const text = typeof request.body === 'string' ? printable(request.body) : `bytes ${request.body?.toString('hex')}`;
  const body = request.body === undefined ? '' : `\n  body: ${short(hide(text))}`;
  return `${request.method} ${short(hide(request.path))}${headers.map((h) => `\n  ${h}`).join('')}${body}`;
}

// ---------------------------------------------------------------------------------------
// JSON Schema (the subset the OpenAPI document uses)

export interface Schema {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  items?: Schema;
  minItems?: number;
  maxItems?: number;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  propertyNames?: Schema;
}

/** `#/components/schemas/X` in `doc`, or `undefined` when it does not resolve. */
export function deref(doc: unknown, schema: Schema): Schema | undefined {
  let s: Schema | undefined = schema;
  for (let hops = 0; s?.$ref !== undefined && hops < 10; hops++) {
    let node: unknown = doc;
    for (const part of s.$ref.replace(/^#\//, '').split('/')) {
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    }
    s = node && typeof node === 'object' ? (node as Schema) : undefined;
  }
  return s;
}

const INT32 = 2 ** 31;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function hasType(type: string, v: unknown): boolean {
  switch (type) {
    case 'null':
      return v === null;
    case 'boolean':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return Number.isInteger(v);
    case 'array':
      return Array.isArray(v);
    case 'object':
      return isObject(v);
    default:
      return true;
  }
}

function matches(pattern: string, s: string): boolean {
  try {
    return new RegExp(pattern, 'u').test(s);
  } catch {
    return new RegExp(pattern).test(s);
  }
}

/**
 * True when `value` satisfies `schema`, as the OpenAPI document states it, plus one rule
 * of storage the document does not state: an `integer` without `format: int64` is a
 * PostgreSQL `integer`, so values outside 32 bits are not storable and count as bad.
 * An unresolvable `$ref` accepts anything (nothing can be said to violate it).
 */
export function accepts(doc: unknown, schema: Schema, value: unknown): boolean {
  const s = deref(doc, schema);
  if (!s) return true;
  if (s.anyOf && !s.anyOf.some((x) => accepts(doc, x, value))) return false;
  if (s.oneOf && s.oneOf.filter((x) => accepts(doc, x, value)).length !== 1) return false;
  if (s.allOf && !s.allOf.every((x) => accepts(doc, x, value))) return false;
  if (s.enum && !s.enum.includes(value)) return false;
  if ('const' in s && s.const !== value) return false;
  if (s.type !== undefined && ![s.type].flat().some((t) => hasType(t, value))) return false;
  if (typeof value === 'string') {
    const length = [...value].length; // JSON Schema counts code points
    if (s.minLength !== undefined && length < s.minLength) return false;
    if (s.maxLength !== undefined && length > s.maxLength) return false;
    if (s.pattern !== undefined && !matches(s.pattern, value)) return false;
  }
  if (typeof value === 'number') {
    if (s.minimum !== undefined && value < s.minimum) return false;
    if (s.maximum !== undefined && value > s.maximum) return false;
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) return false;
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) return false;
    if ([s.type].flat().includes('integer') && s.format !== 'int64' && (value >= INT32 || value < -INT32)) return false;
  }
  if (Array.isArray(value)) {
    if (s.minItems !== undefined && value.length < s.minItems) return false;
    if (s.maxItems !== undefined && value.length > s.maxItems) return false;
    if (s.items && !value.every((v) => accepts(doc, s.items as Schema, v))) return false;
  }
  if (isObject(value)) {
    if (s.required?.some((k) => !Object.hasOwn(value, k))) return false;
    for (const [k, v] of Object.entries(value)) {
      const own = s.properties?.[k];
      if (own) {
        if (!accepts(doc, own, v)) return false;
      } else if (s.additionalProperties === false) {
        return false;
      } else if (typeof s.additionalProperties === 'object' && !accepts(doc, s.additionalProperties, v)) {
        return false;
      }
      if (s.propertyNames && !accepts(doc, s.propertyNames, k)) return false;
    }
  }
  return true;
}

/** Every branch of `schema` (through `anyOf`/`oneOf`), dereferenced. */
function branches(doc: unknown, schema: Schema): Schema[] {
  const s = deref(doc, schema);
  if (!s) return [];
  const alternatives = s.anyOf ?? s.oneOf;
  return alternatives ? alternatives.flatMap((x) => branches(doc, x)) : [s];
}

const typesOf = (doc: unknown, schema: Schema) => new Set(branches(doc, schema).flatMap((b) => [b.type ?? []].flat()));

/** A value `schema` accepts, for building a valid body around one bad property (best effort). */
export function exampleFor(doc: unknown, schema: Schema): unknown {
  const s = branches(doc, schema)[0];
  if (!s) return null;
  if (s.enum?.length) return s.enum[0];
  const type = [s.type].flat()[0];
  if (type === 'string') return 'fuzz'.padEnd(s.minLength ?? 4, 'z');
  if (type === 'integer' || type === 'number') return Math.max(1, s.minimum ?? 1);
  if (type === 'boolean') return true;
  if (type === 'array') return [];
  if (type === 'null') return null;
  if (type === 'object') {
    return Object.fromEntries((s.required ?? []).map((k) => [k, exampleFor(doc, s.properties?.[k] ?? {})]));
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// Strings that break things

/** Right-to-left text and overrides, emoji sequences, combining marks, zero-width and look-alike characters. */
export const UNICODE_EDGES = [
  '\u202Eevil\u202C',
  '\u200F',
  'مرحبا',
  'שלום',
  '👩‍👩‍👧‍👦',
  '🏳️‍🌈',
  '😀',
  'e\u0301',
  'Z\u0351\u036B\u0343\u036A\u0302\u036B\u033D\u034F\u0334\u0319\u0324',
  '\u200B',
  '\u200D',
  'а', // Cyrillic a
  'ａ', // full-width a
  '\uFFFE',
  '\u{10FFFF}',
  '\u0001',
  '\u001F',
  '\u007F',
  'İ',
  'ß',
] as const;

/** What PostgreSQL cannot store in `text`/`jsonb` as sent: NUL, and lone UTF-16 surrogates (sent as JSON escapes). */
export const UNSTORABLE = ['\u0000', '\uD800', '\uDFFF', '\uDBFF\u0000', 'a\uDC00'] as const;

const asciiUnit = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 });
/** One piece of a bad string: mostly ASCII, often a Unicode edge case; never white space a `trim()` removes. */
export const edgeUnit: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 3, arbitrary: asciiUnit },
    { weight: 2, arbitrary: fc.constantFrom(...UNICODE_EDGES) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
  )
  .filter((u) => u.length > 0 && u.trim() === u);

export const HUGE_ASCII = 'x'.repeat(100 * 1024);
export const HUGE_UNICODE = '👩‍👩‍👧‍👦\u202Eא\u0301'.repeat(5 * 1024);

/**
 * Percent-encodes `s` for a URL path or query, one UTF-16 unit at a time: a lone surrogate
 * becomes its (invalid) three-byte CESU-8 form, as a careless client would send it.
 */
export function pct(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const next = s.charCodeAt(i + 1);
    if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      out += encodeURIComponent(s.slice(i, i + 2));
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      out += [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)]
        .map((b) => `%${b.toString(16).toUpperCase()}`)
        .join('');
    } else {
      out += encodeURIComponent(s[i] as string);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Bad values for a schema

const WRONG_TYPES: readonly unknown[] = [null, true, false, 0, -1, 1.5, 1e308, '', 'x', [], [null], {}, { x: 1 }];

/**
 * Values that `schema` rejects: wrong JSON types, strings past `maxLength` (Unicode edge
 * cases included) and 100 KB strings, empty strings, pattern and enum violations, numbers
 * out of range or not integers (32-bit overflow included), arrays past `maxItems` or with
 * bad items, objects with an extra or bad property. `undefined` when the schema accepts
 * every value these can be (nothing to violate).
 */
export function badValue(doc: unknown, schema: Schema, depth = 0): fc.Arbitrary<unknown> | undefined {
  const rejects = (v: unknown) => !accepts(doc, schema, v);
  const constants = [...WRONG_TYPES, HUGE_ASCII, HUGE_UNICODE].filter(rejects);
  if (constants.length === 0) return undefined;
  const arbs: fc.Arbitrary<unknown>[] = [fc.constantFrom(...constants)];
  const types = typesOf(doc, schema);
  for (const b of branches(doc, schema)) {
    if (b.maxLength !== undefined) {
      arbs.push(fc.string({ unit: edgeUnit, minLength: b.maxLength + 1, maxLength: b.maxLength + 8 }));
    }
    if (b.pattern !== undefined || b.format !== undefined) {
      arbs.push(fc.string({ unit: edgeUnit, minLength: 1, maxLength: 30 }));
      arbs.push(
        fc.constantFrom('2020-02-30T00:00:00Z', '1970-01-01T00:00:00Z', 'tomorrow', '2999-01-01', 'NOT-A-SLUG'),
      );
    }
    if (b.enum?.length) {
      const e = String(b.enum[0]);
      arbs.push(fc.constantFrom(e.toUpperCase(), ` ${e}`, `${e}\u200B`, e.replace(/a/g, 'а'), `${e}s`));
    }
    if (types.has('integer') || types.has('number')) {
      arbs.push(
        fc.constantFrom(
          (b.minimum ?? b.exclusiveMinimum ?? 1) - 1,
          (b.maximum ?? b.exclusiveMaximum ?? 0) + 1,
          INT32,
          2 ** 53,
          -(2 ** 53),
          0.5,
          -0.000001,
        ),
      );
    }
    if (b.maxItems !== undefined) arbs.push(fc.constant(Array.from({ length: b.maxItems + 1 }, () => 'items:read')));
    if (b.items && depth < 2) {
      const bad = badValue(doc, b.items, depth + 1);
      if (bad) arbs.push(fc.array(bad, { minLength: 1, maxLength: 3 }));
    }
    if (b.properties && depth < 2) {
      for (const [k, sub] of Object.entries(b.properties)) {
        const bad = badValue(doc, sub, depth + 1);
        if (bad) arbs.push(bad.map((v) => ({ [k]: v })));
      }
      if (b.additionalProperties === false) arbs.push(fc.constant({ notAProperty: 1 }));
    }
  }
  return fc.oneof(...arbs).filter(rejects);
}

/** A copy of `value` with one `UNSTORABLE` string put inside a string of it (or inside a record key). */
export function withUnstorable(value: unknown, poison: string, at: number): unknown {
  if (typeof value === 'string') {
    const i = at % (value.length + 1);
    return value.slice(0, i) + poison + value.slice(i);
  }
  if (Array.isArray(value)) return value.length ? [withUnstorable(value[0], poison, at), ...value.slice(1)] : [poison];
  if (isObject(value)) return { ...value, [`k${poison}`]: `v${poison}` };
  return poison;
}

/** The properties of `schema` that can hold a string somewhere (strings, string arrays, records). */
export function textProperties(doc: unknown, schema: Schema): string[] {
  const s = deref(doc, schema);
  return Object.entries(s?.properties ?? {})
    .filter(([, sub]) => {
      const t = typesOf(doc, sub);
      return t.has('string') || t.has('array') || t.has('object');
    })
    .map(([k]) => k);
}

/** Paths (up to two levels deep) of the integer properties of `schema`. */
export function integerPaths(doc: unknown, schema: Schema, depth = 0): string[][] {
  const s = deref(doc, schema);
  return Object.entries(s?.properties ?? {}).flatMap(([k, sub]) => {
    if (typesOf(doc, sub).has('integer')) return [[k]];
    const object = branches(doc, sub).find((b) => b.properties);
    return object && depth < 1 ? integerPaths(doc, object, depth + 1).map((p) => [k, ...p]) : [];
  });
}

/** The properties of `schema` that are free-form JSON objects (records): where nesting depth is up to the client. */
export function recordProperties(doc: unknown, schema: Schema): string[] {
  const s = deref(doc, schema);
  return Object.entries(s?.properties ?? {})
    .filter(([, sub]) => branches(doc, sub).some((b) => b.type === 'object' && !b.properties))
    .map(([k]) => k);
}

/** `value` with `path` set to `leaf`, copying the objects on the way. */
export function setPath(
  value: Record<string, unknown>,
  path: readonly string[],
  leaf: unknown,
): Record<string, unknown> {
  const [head, ...rest] = path as [string, ...string[]];
  if (rest.length === 0) return { ...value, [head]: leaf };
  const inner = isObject(value[head]) ? (value[head] as Record<string, unknown>) : {};
  return { ...value, [head]: setPath(inner, rest, leaf) };
}

// ---------------------------------------------------------------------------------------
// Odd path segments and query values

/** Path segments no tenant, key or item has: traversal, NUL, broken encodings, long, not UUIDs. */
export const oddSegment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '..',
    '.',
    '../',
    '..%2f',
    '..%2F..%2Fv1%2Ftenants',
    '%2e%2e',
    '%2e%2e%2f',
    '%2E%2E%5C',
    '..\\',
    '%00',
    'a%00b',
    '%00..%00',
    '%',
    '%zz',
    '%E0%A4%A',
    '%ED%A0%80',
    '%C0%AE%C0%AE',
    '%F0%9F%98',
    '%FF%FE',
    '%20',
    '%09',
    '%0D%0A',
    '~',
    '*',
    ';',
    '%3B',
    "'%20OR%201=1--",
    '%22',
    '%3Cscript%3E',
    'null',
    'undefined',
    'NaN',
    '0',
    '-1',
    '00000000-0000-0000-0000-000000000000',
    'ffffffff-ffff-ffff-ffff-ffffffffffff',
    '00000000-0000-4000-8000-00000000000g',
    '{00000000-0000-4000-8000-000000000000}',
    '__proto__',
    'constructor',
    '%7B%7D',
    '',
  ),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.string({ unit: edgeUnit, minLength: 1, maxLength: 20 }).map(pct),
  fc.constantFrom(...UNSTORABLE).map((p) => pct(`x${p}y`)),
  fc.integer({ min: 101, max: 14_000 }).map((n) => 'a'.repeat(n)),
  fc.constantFrom(100, 101, 1000).map((n) => '%2e'.repeat(n)),
);

/** Cursors shaped like the ones the API returns, with times and ids PostgreSQL may refuse. */
export function craftedCursor(ids: readonly string[]): fc.Arbitrary<string> {
  const at = fc.constantFrom(...CURSOR_TIMES);
  const id = fc.oneof(fc.constantFrom(...ids, 'not-a-uuid', '', '\u0000'), fc.uuid());
  const value = fc.oneof(
    fc.record({ at, id }),
    fc.record({ at: fc.constantFrom(null, 1, [], {}), id }),
    fc.constantFrom(null, [], 'x', 1),
  );
  return value.map((v) => cursorOf(v));
}

/** A cursor as the API encodes them (base64url of JSON). */
export const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Times a forged cursor may carry: JavaScript's `Date.parse` takes some that PostgreSQL refuses. */
export const CURSOR_TIMES = [
  '1',
  '2020-02-30',
  '2020-02-30T00:00:00.000000Z',
  '2020-13-01T00:00:00Z',
  '2020-01-01T25:00:00Z',
  '0000-01-01T00:00:00.000000',
  '-000001-01-01T00:00:00Z',
  '+275760-09-13T00:00:00.000Z',
  '99999-01-01',
  'infinity',
  'epoch',
  'now',
  'Tue Mar 01 2022',
  '2020-01-01T00:00:00.000000\u0000',
  '2020-01-01T00:00:00.000000',
  '',
] as const;

/** A raw query value (already percent-encoded where needed) that `schema` should refuse or survive. */
export function oddQueryValue(
  doc: unknown,
  schema: Schema,
  name: string,
  ids: readonly string[],
): fc.Arbitrary<string> {
  const arbs: fc.Arbitrary<string>[] = [
    fc.constantFrom('', '%00', 'a%00b', '%', '%zz', '%ED%A0%80', '%C0%AE', '%FF', '+', '%20%20', '%0D%0A'),
    fc.string({ unit: edgeUnit, maxLength: 30 }).map(pct),
    fc.constantFrom(...UNSTORABLE).map((p) => pct(`fuzz${p}`)),
  ];
  const types = typesOf(doc, schema);
  for (const b of branches(doc, schema)) {
    if (types.has('integer') || types.has('number')) {
      arbs.push(
        fc.constantFrom(
          '-1',
          '0',
          '-0',
          '1.5',
          '1e3',
          '1e999',
          '-1e999',
          'NaN',
          'Infinity',
          'abc',
          '0x10',
          '0b1',
          '9'.repeat(400),
          '%EF%BC%91', // full-width 1
          '1,2',
          String(2 ** 53 + 1),
          String(INT32),
        ),
      );
      if (b.maximum !== undefined) arbs.push(fc.constant(String(b.maximum + 1)));
    }
    if (b.maxLength !== undefined) {
      arbs.push(fc.string({ unit: edgeUnit, minLength: b.maxLength + 1, maxLength: b.maxLength + 4 }).map(pct));
    }
    if (b.enum?.length) arbs.push(fc.constantFrom(...b.enum.map((e) => pct(`${String(e).toUpperCase()} `))));
  }
  if (name === 'cursor') arbs.push(craftedCursor(ids), fc.base64String({ maxLength: 80 }));
  if (name === 'q') arbs.push(fc.constantFrom('%22', '-', '!', '%3C-%3E', ':*', '%26%7C!', 'or', '(', '%5C'));
  return fc.oneof(...arbs);
}
