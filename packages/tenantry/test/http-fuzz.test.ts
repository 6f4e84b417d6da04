import { createHash, randomBytes } from 'node:crypto';
import { Validator } from '@seriousme/openapi-schema-validator';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import {
  accepts,
  badValue,
  CURSOR_TIMES,
  craftedCursor,
  cursorOf,
  describeRequest,
  edgeUnit,
  exampleFor,
  integerPaths,
  oddQueryValue,
  oddSegment,
  pct,
  RawHttp,
  type RawRequest,
  type RawResponse,
  recordProperties,
  type Schema,
  setPath,
  textProperties,
  UNSTORABLE,
  withUnstorable,
} from '../../../test-support/fuzz.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { definePlans } from '../src/admit/plans.ts';
import { ERRORS } from '../src/errors/catalog.ts';
import type { Tenantry } from '../src/index.ts';

/**
 * Invariant 10 of DESIGN.md, over real sockets: every route the OpenAPI document lists is
 * driven with generated bad input — wrong types, missing and extra properties, huge and
 * Unicode-edge strings, NUL, odd path parameters, bad query strings, malformed JSON, wrong
 * content types, odd and oversized headers, and tenant A's credentials against tenant B's
 * resources. Every answer must be a 4xx problem+json (or, for harmless oddities on reads,
 * a success), never a 5xx, a stack trace or one of B's identifiers; and the database must
 * be unchanged afterwards.
 *
 * Violations are collected, not thrown, so one run lists every distinct finding. Replay a
 * run with `FUZZ_SEED=<seed printed in the failure> npx vitest run packages/tenantry/test/http-fuzz.test.ts`;
 * `FUZZ_RUNS` changes the number of generated cases per route and dimension.
 *
 * Decided here, beyond the OpenAPI schemas:
 * - Text PostgreSQL cannot store as sent — NUL, lone UTF-16 surrogates, bytes that are not
 *   UTF-8 — integers past 32 bits and JSON nested 100 000 deep are bad input anywhere: a 4xx,
 *   never a 5xx, never stored silently altered (U+FFFD).
 * - Legitimate changes: `api_keys.last_used_at` and `api_key.used` audit rows (A's key really
 *   was used), and `db.*` audit rows of completed maintenance (a valid `POST /v1/admin/db/…`
 *   really runs ANALYZE, VACUUM or REINDEX CONCURRENTLY; bad input is refused before it
 *   runs anything and leaves no entry). Anything else in the control-plane tables, the items table or the audit log
 *   is a change made by bad input.
 * - Node answers 431 for headers past 16 KB before Fastify runs: a 4xx, not held to problem+json.
 *   Framework client errors keep their status and carry the catalog's code for it (413
 *   `PAYLOAD_TOO_LARGE`, 415 `UNSUPPORTED_MEDIA_TYPE`), else `INVALID_INPUT`.
 * - Control-plane writes go to a tenant C of their own, so that one that wrongly succeeds
 *   (a changed plan) cannot rate-limit or suspend A, whose data plane is fuzzed meanwhile.
 * - Four operations are fuzzed at a time; each one's cases come from its own seed, in order.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20_251_125);
const RUNS = Number(process.env.FUZZ_RUNS ?? 30);
const ADMIN = `fuzz-admin-${randomBytes(16).toString('hex')}`;
const PASSWORD = 'correct horse battery staple';
const ALL_SCOPES = ['tenant:read', 'items:read', 'items:write', 'users:read', 'users:write'];
const METHODS = new Set(['get', 'put', 'post', 'patch', 'delete']);
const NO_SUCH_ID = '00000000-0000-4000-8000-000000000000';
const hex = (n: number) => randomBytes(n).toString('hex');
/** Statuses a code of the catalog stands for (400 is INVALID_INPUT's own). */
const catalogStatuses = new Set(Object.values(ERRORS).map((e) => e.status as number));

interface TenantFixture {
  id: string;
  slug: string;
  name: string;
  key: string;
  keyId: string;
  keyPrefix: string;
  userEmail: string;
  items: { id: string; title: string; description: string; createdAt: string }[];
}

interface Operation {
  readonly method: string;
  readonly template: string;
  readonly label: string;
  /** control: admin token; data: tenant A's API key; public: no credential. */
  readonly plane: 'control' | 'data' | 'public';
  readonly params: readonly string[];
  readonly query: readonly { name: string; schema: Schema }[];
  readonly body: Schema | undefined;
}

type Caller = 'A' | 'admin' | 'anonymous';

interface Case {
  readonly op: Operation;
  readonly request: RawRequest;
  /** reject: the input is bad, so the answer must be 4xx; survive: anything but 5xx. */
  readonly expect: 'reject' | 'survive';
  readonly caller: Caller;
  /** What is bad about it, for the report. */
  readonly note: string;
}

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let raw: RawHttp;
let doc: Record<string, unknown>;
let ops: Operation[];
let A: TenantFixture;
let B: TenantFixture;
let C: TenantFixture;
let before: Snapshot;
const statuses = new Map<number, number>();
/** Distinct findings: what went wrong where, with every input that showed it and one full example. */
const violations = new Map<string, { notes: Map<string, number>; example: string }>();

// ---------------------------------------------------------------------------------------
// Setup

async function makeTenant(label: string): Promise<TenantFixture> {
  const slug = `fz-${label}-${hex(4)}`;
  const name = `${label} fuzz corp ${hex(3)}`;
  const t = await server.request('POST', '/v1/tenants', { token: ADMIN, body: { slug, name, plan: 'fuzz' } });
  expect(t.status).toBe(201);
  const k = await server.request('POST', `/v1/tenants/${slug}/api-keys`, {
    token: ADMIN,
    body: { name: `${label} key`, environment: 'test', scopes: ALL_SCOPES },
  });
  expect(k.status).toBe(201);
  const userEmail = `${label}-${hex(4)}@example.com`;
  const u = await server.request('POST', `/v1/tenants/${slug}/users`, {
    token: ADMIN,
    body: { email: userEmail, password: PASSWORD, role: 'member' },
  });
  expect(u.status).toBe(201);
  const items: TenantFixture['items'] = [];
  for (let i = 0; i < 3; i++) {
    const it = await server.request('POST', '/v1/items', {
      token: k.body.key,
      body: { title: `${label} secret plan ${i} ${hex(4)}`, description: `only ${label} may read this ${hex(4)}` },
    });
    expect(it.status).toBe(201);
    items.push(it.body);
  }
  return {
    id: t.body.id,
    slug,
    name,
    key: k.body.key,
    keyId: k.body.apiKey.id,
    keyPrefix: k.body.apiKey.displayPrefix,
    userEmail,
    items,
  };
}

/** Operations of the OpenAPI document: adding a route adds it to every dimension below. */
function operationsOf(document: Record<string, unknown>): Operation[] {
  const out: Operation[] = [];
  const paths = document.paths as Record<string, Record<string, Record<string, unknown>>>;
  for (const [template, item] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.has(method)) continue;
      const tags = (op.tags as string[] | undefined) ?? [];
      const parameters = (op.parameters as { in: string; name: string; schema: Schema }[] | undefined) ?? [];
      const content = (op.requestBody as { content?: Record<string, { schema: Schema }> } | undefined)?.content;
      out.push({
        method: method.toUpperCase(),
        template,
        label: `${method.toUpperCase()} ${template}`,
        plane:
          tags.includes('control plane') || template.startsWith('/v1/tenants')
            ? 'control'
            : tags.includes('auth') || template.startsWith('/v1/auth/')
              ? 'public'
              : 'data',
        params: [...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string),
        query: parameters.filter((p) => p.in === 'query').map((p) => ({ name: p.name, schema: p.schema })),
        body: content?.['application/json']?.schema,
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Requests

/**
 * Values of path parameters that name real resources: tenant A's on the data plane; on the
 * control plane tenant C's, a tenant of its own, so that a control-plane bug that lets bad
 * input through (a changed plan, a suspension) cannot disturb the fuzz of A's data plane.
 */
const good = (op: Operation) => (name: string) =>
  (op.plane === 'control'
    ? { tenant: C.slug, keyId: C.keyId }[name]
    : { tenant: A.slug, id: A.items[0]?.id, keyId: A.keyId, itemId: A.items[0]?.id }[name]) ?? NO_SUCH_ID;
/** Well-formed values that name nothing. */
const missingParam = (name: string) => (name === 'tenant' ? `fz-no-such-tenant-${SEED}` : NO_SUCH_ID);
const fill = (op: Operation, value: (name: string) => string) =>
  op.template.replace(/\{(\w+)\}/g, (_, name: string) => value(name));

/** A valid body for each operation, so that one bad property is the only thing wrong with it. */
function baseBody(op: Operation): Record<string, unknown> | undefined {
  if (!op.body) return undefined;
  const bodies: Record<string, Record<string, unknown>> = {
    'POST /v1/tenants': { slug: `fz-would-be-new-${SEED}`, name: 'Would be new' },
    'PATCH /v1/tenants/{tenant}': { name: 'Renamed by the fuzz' },
    'POST /v1/tenants/{tenant}/api-keys': { name: 'fuzz key', environment: 'test', scopes: ['items:read'] },
    'POST /v1/tenants/{tenant}/users': { email: 'fuzz-new@example.com', password: PASSWORD, role: 'member' },
    'POST /v1/users': { email: 'fuzz-new-too@example.com', password: PASSWORD, role: 'member' },
    // Well-formed but wrong: these can never succeed, so they are safe to send valid.
    'POST /v1/auth/login': { tenant: A.slug, email: 'nobody@example.com', password: 'not the password' },
    'POST /v1/auth/refresh': { refreshToken: 'A'.repeat(43) },
    'POST /v1/auth/logout': { refreshToken: 'A'.repeat(43) },
    'POST /v1/items': { title: 'would be new', description: 'fuzz' },
    'PATCH /v1/items/{id}': { title: 'patched by the fuzz' },
    // A public address literal: no DNS lookup, and nothing is delivered (no dispatcher runs here).
    'POST /v1/webhooks': { url: 'https://93.184.216.34/fuzz-hook', eventTypes: ['item.created'] },
    // Maintenance really runs (cheaply, on one table) and is audited: see the header.
    'POST /v1/admin/db/analyze': { tables: ['items'] },
    'POST /v1/admin/db/vacuum': { tables: ['items'], full: false },
    'POST /v1/admin/db/reindex': { tables: ['tenant_usage'] },
  };
  return bodies[op.label] ?? (exampleFor(doc, op.body) as Record<string, unknown>);
}

const defaultCaller = (op: Operation): Caller =>
  op.plane === 'data' ? 'A' : op.plane === 'control' ? 'admin' : 'anonymous';
const authOf = (caller: Caller) =>
  caller === 'A' ? `Bearer ${A.key}` : caller === 'admin' ? `Bearer ${ADMIN}` : undefined;

interface Build {
  path?: string;
  query?: string;
  json?: unknown;
  body?: string | Buffer;
  contentType?: string | null;
  authorization?: string | null;
  headers?: Record<string, string>;
}

function build(op: Operation, b: Build = {}): RawRequest {
  const headers: Record<string, string> = {};
  const authorization = b.authorization === undefined ? authOf(defaultCaller(op)) : b.authorization;
  if (authorization) headers.authorization = authorization;
  const body = b.body ?? (b.json !== undefined ? JSON.stringify(b.json) : undefined);
  const contentType = b.contentType === undefined ? (body !== undefined ? 'application/json' : null) : b.contentType;
  if (contentType) headers['content-type'] = contentType;
  Object.assign(headers, b.headers);
  const path = (b.path ?? fill(op, good(op))) + (b.query !== undefined ? `?${b.query}` : '');
  return { method: op.method, path, headers, ...(body !== undefined ? { body } : {}) };
}

/**
 * For a harmless oddity (a header, an unknown query parameter) on a write, the rest of the
 * request must be bad, or the write would rightly succeed: name nothing in the path, send a
 * body of the wrong shape, or (neither possible) no credential.
 */
function spoiled(op: Operation, b: Build = {}): RawRequest {
  if (op.params.length > 0) return build(op, { path: fill(op, missingParam), json: baseBody(op), ...b });
  if (op.body) return build(op, { json: [], ...b });
  return build(op, { authorization: null, ...b });
}

/** Whether {@link spoiled} surely makes `op` fail (a public route without path or body cannot be spoiled). */
const spoilable = (op: Operation) => op.params.length > 0 || op.body !== undefined || op.plane !== 'public';

/** A harmless oddity: on a read it may succeed; on a write it rides on a spoiled request. */
function oddity(op: Operation, b: Build, note: string): Case {
  if (op.method === 'GET') return caseOf(op, build(op, b), 'survive', note);
  return caseOf(op, spoiled(op, b), spoilable(op) ? 'reject' : 'survive', note);
}

const caseOf = (op: Operation, request: RawRequest, expectation: Case['expect'], note: string, caller?: Caller) => ({
  op,
  request,
  expect: expectation,
  caller: caller ?? defaultCaller(op),
  note,
});

// ---------------------------------------------------------------------------------------
// Judging an answer

const STACK_TRACE = [
  /\n\s+at\s/,
  /\bat (?:async )?[\w$.<>[\]]*\s?\(?(?:file:\/\/|node:|\/)[^\s)]*:\d+/,
  /\.(?:[cm]?[jt]s):\d+/,
  /node_modules/,
];

function bIdentifiers(): string[] {
  return [
    B.id,
    B.slug,
    B.name,
    B.key,
    B.keyId,
    B.keyPrefix,
    B.userEmail,
    ...B.items.flatMap((i) => [i.id, i.title, i.description]),
  ];
}

function judge(c: Case, res: RawResponse): string[] {
  const problems: string[] = [];
  const { status } = res;
  if (status >= 500) problems.push(`${status} server error`);
  else if (c.expect === 'reject' && status < 400) problems.push(`bad input accepted with ${status}`);
  const type = String(res.headers['content-type'] ?? '');
  // Node's HTTP server answers 431 for headers past 16 KB before Fastify sees the request.
  if (status >= 400 && status < 500 && status !== 431) {
    let body: { status?: unknown; code?: unknown } | undefined;
    try {
      body = JSON.parse(res.text);
    } catch {
      // reported below
    }
    const code = body?.code as keyof typeof ERRORS | undefined;
    if (!type.startsWith('application/problem+json') || !body) {
      problems.push(`${status} is not problem+json (content-type "${type}", code ${String(code)})`);
    } else if (body.status !== status || typeof code !== 'string' || !(code in ERRORS)) {
      problems.push(`${status} problem has status ${String(body.status)}, code ${String(code)}`);
    } else if (ERRORS[code].status !== status && (code !== 'INVALID_INPUT' || catalogStatuses.has(status))) {
      // Framework client errors without a code of their own keep their status under
      // INVALID_INPUT (see toProblem); a status the catalog has a code for must use it.
      problems.push(`${status} problem code ${code} is a ${ERRORS[code].status} in the catalog`);
    }
  }
  const seen = `${res.text}\n${Object.values(res.headers).flat().join('\n')}`;
  for (const pattern of STACK_TRACE) if (pattern.test(seen)) problems.push(`stack trace (${pattern})`);
  // Only the admin may see B, and only in successful answers (B's tenant in a list).
  if (c.caller !== 'admin' || status >= 400) {
    // Echoing what the caller sent reveals nothing; anything else of B's is a leak.
    const sent = `${c.request.path}\n${Object.values(c.request.headers ?? {}).join('\n')}\n${c.request.body ?? ''}`;
    const leaked = bIdentifiers().filter((id) => !sent.includes(id) && seen.includes(id));
    if (leaked.length) problems.push(`tenant B's identifier in the answer`);
  }
  return problems;
}

async function run(dimension: string, c: Case): Promise<void> {
  let res: RawResponse | undefined;
  let problems: string[];
  try {
    res = await raw.send(c.request, c.op.label);
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    problems = judge(c, res);
  } catch (error) {
    problems = [`no answer (${(error as Error).message})`];
  }
  for (const problem of problems) {
    // A framework-level answer is the same bug on every route: one finding, the routes in its notes.
    const everywhere = problem.includes('is not problem+json');
    const signature = everywhere ? `[${dimension}] ${problem}` : `[${dimension}] ${c.op.label}: ${problem}`;
    const note = everywhere ? `${c.op.label} with ${c.note}` : c.note;
    let found = violations.get(signature);
    if (!found) {
      const secrets = { $ADMIN: ADMIN, $KEY_A: A.key, $KEY_B: B.key };
      const answer = res ? `→ ${res.status} ${res.headers['content-type'] ?? ''} ${res.text.slice(0, 300)}` : '';
      found = { notes: new Map(), example: `${describeRequest(c.request, secrets)}\n    ${answer}` };
      violations.set(signature, found);
    }
    found.notes.set(note, (found.notes.get(note) ?? 0) + 1);
  }
}

function seedOf(dimension: string, op: Operation): number {
  return createHash('sha256').update(`${SEED}:${dimension}:${op.label}`).digest().readInt32LE(0);
}

/** Runs every `exhaustive` case and `RUNS` generated ones per operation, then fails listing what was found. */
async function drive(
  dimension: string,
  exhaustive: (op: Operation) => Case[],
  generated: (op: Operation) => fc.Arbitrary<Case> | undefined,
): Promise<void> {
  // Four operations at a time: each one's cases run in order, from a seed of its own.
  let next = 0;
  const worker = async () => {
    for (let op = ops[next++]; op; op = ops[next++]) {
      for (const c of exhaustive(op)) await run(dimension, c);
      const arb = generated(op);
      if (!arb) continue;
      await fc.assert(
        fc.asyncProperty(arb, (c) => run(dimension, c)),
        { seed: seedOf(dimension, op), numRuns: RUNS },
      );
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const found = [...violations]
    .filter(([signature]) => signature.startsWith(`[${dimension}]`))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([signature, v]) => {
      const all = [...v.notes].map(([note, n]) => `${note}${n > 1 ? ` (×${n})` : ''}`);
      const notes = all.length > 20 ? [...all.slice(0, 20), `… ${all.length - 20} more`].join('; ') : all.join('; ');
      return `${signature}\n  seen with: ${notes}\n  e.g. ${v.example}`;
    });
  const report = `${found.length} finding(s); replay with FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}\n\n${found.join('\n\n')}\n`;
  expect(found.length, report).toBe(0);
}

// ---------------------------------------------------------------------------------------
// State

type Snapshot = Record<string, string>;

async function snapshot(): Promise<Snapshot> {
  // The test database's URL logs in as the superuser: RLS does not hide any tenant's items.
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const tables: Record<string, string> = {
      tenants: 'SELECT to_jsonb(t) AS r FROM tenantry.tenants t ORDER BY id',
      // last_used_at is written by real use of A's key: legitimate, not a change made by input.
      api_keys: "SELECT to_jsonb(t) - 'last_used_at' AS r FROM tenantry.api_keys t ORDER BY id",
      users: 'SELECT to_jsonb(t) AS r FROM tenantry.users t ORDER BY id',
      memberships: 'SELECT to_jsonb(t) AS r FROM tenantry.memberships t ORDER BY tenant_id, user_id',
      roles: 'SELECT to_jsonb(t) AS r FROM tenantry.roles t ORDER BY tenant_id, name',
      refresh_tokens: 'SELECT to_jsonb(t) AS r FROM tenantry.refresh_tokens t ORDER BY id',
      placements: 'SELECT to_jsonb(t) AS r FROM tenantry.placements t ORDER BY id',
      items: 'SELECT to_jsonb(t) AS r FROM items t ORDER BY tenant_id, id',
      audit_last_id: 'SELECT coalesce(max(id), 0) AS r FROM tenantry.audit_log',
    };
    const out: Snapshot = {};
    for (const [name, sql] of Object.entries(tables)) {
      out[name] = JSON.stringify((await client.query(sql)).rows.map((row) => row.r));
    }
    return out;
  } finally {
    await client.end();
  }
}

/** What changed in a table, row by row (keyed by id, else by the whole row). */
function diffRows(table: string, before: string, after: string): string[] {
  type Row = Record<string, unknown>;
  const keyOf = (r: Row) => String(r.id ?? JSON.stringify(r));
  const index = (json: string) => new Map((JSON.parse(json) as Row[]).map((r) => [keyOf(r), r]));
  const [old, now] = [index(before), index(after)];
  const out: string[] = [];
  for (const [key, row] of old) {
    const next = now.get(key);
    if (!next) out.push(`${table}: - ${JSON.stringify(row).slice(0, 300)}`);
    else {
      const fields = Object.keys({ ...row, ...next }).filter((f) => JSON.stringify(row[f]) !== JSON.stringify(next[f]));
      const shown = fields.map((f) => `${f}: ${JSON.stringify(row[f])} → ${JSON.stringify(next[f])}`.slice(0, 200));
      if (fields.length) out.push(`${table} ${key}: ${shown.join(', ')}`);
    }
  }
  for (const [key, row] of now) if (!old.has(key)) out.push(`${table}: + ${JSON.stringify(row).slice(0, 300)}`);
  return out;
}

async function auditSince(lastId: number): Promise<string[]> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ action: string }>(
      // Completed maintenance is the effect of a valid request (see the header), not of bad input.
      `SELECT DISTINCT action FROM tenantry.audit_log
        WHERE id > $1 AND NOT (action LIKE 'db.%' AND details->>'outcome' = 'completed') ORDER BY action`,
      [lastId],
    );
    return rows.map((r) => r.action);
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('http_fuzz'));
  // A plan with room for the whole fuzz, so that no 429 hides what a handler does with the input.
  server = await startServer(tenantry, {
    adminToken: ADMIN,
    plans: definePlans({ fuzz: { requestsPerMinute: 1_000_000 } }),
  });
  raw = new RawHttp(server.url);
  A = await makeTenant('alpha');
  B = await makeTenant('bravo');
  C = await makeTenant('charlie');
  const spec = await server.request('GET', '/openapi.json');
  expect(spec.status).toBe(200);
  doc = spec.body;
  ops = operationsOf(doc);
  before = await snapshot();
});

afterAll(async () => {
  if (raw) {
    const perRoute = [...raw.counts].map(([label, n]) => `  ${String(n).padStart(5)}  ${label}`).join('\n');
    const byStatus = [...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`);
    console.log(
      `http fuzz: ${raw.sent} requests (seed ${SEED}, ${RUNS} runs per route and dimension)\n${perRoute}\n  statuses: ${byStatus.join(' ')}`,
    );
    raw.close();
  }
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc));
    expect(validator.version).toBe('3.1');
    expect(result.errors ?? [], 'errors of @seriousme/openapi-schema-validator').toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('lists the routes, and the valid bodies used here are valid by it', () => {
    expect(ops.length).toBeGreaterThanOrEqual(21);
    for (const op of ops) {
      const body = baseBody(op);
      if (op.body) expect(accepts(doc, op.body, body), `${op.label}: add a valid body to baseBody()`).toBe(true);
    }
  });
});

describe('bad input over HTTP: a 4xx problem+json, no 5xx, no stack trace, nothing of tenant B', () => {
  it('bodies: wrong types, missing and extra properties, huge and Unicode strings, NUL, wrong roots', async () => {
    await drive(
      'body',
      (op) => {
        if (!op.body) return [];
        const base = baseBody(op) as Record<string, unknown>;
        const schema = op.body;
        const cases: Case[] = [];
        for (const name of schema.required ?? []) {
          const { [name]: _, ...rest } = base;
          cases.push(caseOf(op, build(op, { json: rest }), 'reject', `without required ${name}`));
        }
        for (const name of textProperties(doc, schema)) {
          const valid = base[name] ?? exampleFor(doc, schema.properties?.[name] ?? {});
          for (const poison of UNSTORABLE) {
            const json = { ...base, [name]: withUnstorable(valid, poison, 2) };
            cases.push(caseOf(op, build(op, { json }), 'reject', `${name} holds ${JSON.stringify(poison)}`));
          }
        }
        for (const root of [null, 0, 'x', [], [base], true]) {
          cases.push(caseOf(op, build(op, { json: root }), 'reject', `root ${JSON.stringify(root)}`));
        }
        // Integers the documented schema allows but a PostgreSQL integer column cannot hold.
        for (const path of integerPaths(doc, schema)) {
          for (const n of [2 ** 31, 2 ** 53 - 1]) {
            const json = setPath(base, path, n);
            cases.push(caseOf(op, build(op, { json }), 'reject', `${path.join('.')} = ${n}`));
          }
        }
        // Free-form JSON nested deeper than anything can validate or store (zod recurses per level).
        for (const name of recordProperties(doc, schema)) {
          const depth = 100_000;
          const body = JSON.stringify({ ...base, [name]: { deep: 0 } }).replace(
            '"deep":0',
            `"deep":${'['.repeat(depth)}${']'.repeat(depth)}`,
          );
          cases.push(caseOf(op, build(op, { body }), 'reject', `${name} nested ${depth} levels deep`));
        }
        const name = Object.keys(schema.properties ?? {})[0] ?? 'x';
        const over = { ...base, [name]: 'x'.repeat(1024 * 1024 + 1) };
        cases.push(caseOf(op, build(op, { json: over }), 'reject', 'body over the 1 MiB limit'));
        return cases;
      },
      (op) => {
        if (!op.body) return undefined;
        const base = baseBody(op) as Record<string, unknown>;
        const properties = Object.entries(op.body.properties ?? {});
        const arbs: fc.Arbitrary<Case>[] = [];
        for (const [name, schema] of properties) {
          const bad = badValue(doc, schema);
          if (!bad) continue;
          const note = (v: unknown) => `${name} = ${(JSON.stringify(v) ?? String(v)).slice(0, 40)}`;
          arbs.push(bad.map((v) => caseOf(op, build(op, { json: { ...base, [name]: v } }), 'reject', note(v))));
        }
        if (op.body.additionalProperties === false) {
          const key = fc
            .oneof(
              fc.constantFrom('tenantId', 'tenant_id', 'id', '__proto__', 'constructor', 'isAdmin', 'Title', 'tenant'),
              fc.string({ unit: edgeUnit, minLength: 1, maxLength: 12 }),
            )
            .filter((k) => !properties.some(([name]) => name === k));
          const value = fc.oneof(fc.constantFrom(B.id, B.slug, true, null), fc.jsonValue({ maxDepth: 2 }));
          arbs.push(
            fc
              .tuple(key, value)
              .map(([k, v]) =>
                caseOf(op, build(op, { json: { ...base, [k]: v } }), 'reject', `extra property ${JSON.stringify(k)}`),
              ),
          );
        }
        return arbs.length ? fc.oneof(...arbs) : undefined;
      },
    );
  });

  it('malformed JSON and wrong content types', async () => {
    const contentTypes = [
      null,
      'text/plain',
      'text/plain; charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=fuzz',
      'application/xml',
      'application/octet-stream',
      'application/vnd.api+json',
      'application/merge-patch+json',
      'application/jsonx',
      'json',
      '*/*',
    ];
    await drive(
      'content',
      () => [],
      (op) => {
        // With a body schema the path names a real resource, so a parser too lenient shows as a
        // success; without one the body means nothing, so the request rides on a spoiled one.
        const base = op.body ? JSON.stringify(baseBody(op)) : '{"fuzz":true}';
        const send = (b: Build, note: string) =>
          op.body ? caseOf(op, build(op, b), 'reject', note) : oddity(op, b, note);
        const malformed = fc.oneof(
          fc.nat({ max: base.length - 1 }).map((n) => base.slice(0, n)),
          fc.constantFrom(
            `${base},`,
            `${base}${base}`,
            `${base} garbage`,
            base.replace('{', '{,'),
            base.replaceAll('"', "'"),
            base.replace(/"(\w+)":/g, '$1:'),
            `\uFEFF${base.slice(0, -1)}`,
            '{"a":NaN}',
            '{"a":1,}',
            '{/* comment */}',
            '\u0000',
            'null null',
            '[',
            '['.repeat(400_000),
            '{"a":'.repeat(150_000),
            `{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
          ),
          fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `{${s}`),
        );
        const invalidUtf8 = fc
          .constantFrom(Buffer.from([0xff, 0xfe]), Buffer.from([0xc0, 0xae]), Buffer.from([0xed, 0xa0, 0x80]))
          .map((bytes) => {
            const text = base.replace(/"([^"]*)"(\s*[,}])/, '"$1\u0001"$2');
            const [head, tail] = text.split('\u0001') as [string, string?];
            return Buffer.concat([Buffer.from(head), bytes, Buffer.from(tail ?? '')]);
          });
        return fc.oneof(
          malformed.map((body) => send({ body }, `malformed JSON ${JSON.stringify(body.slice(0, 30))}`)),
          invalidUtf8.map((body) => send({ body }, `invalid UTF-8 ${body.toString('hex').slice(0, 40)}`)),
          fc
            .constantFrom(...contentTypes)
            .map((contentType) => send({ body: base, contentType }, `content-type ${contentType}`)),
        );
      },
    );
  });

  it('odd path parameters: traversal, NUL, broken encodings, very long and non-UUID ids', async () => {
    await drive(
      'path',
      (op) => [
        ...['/..', '/../', '/%2e%2e', '/.', '//', '/%00', '%00', '/%2e%2e%2f%2e%2e%2fv1%2ftenants'].map((suffix) =>
          caseOf(
            op,
            build(op, { path: fill(op, good(op)) + suffix }),
            'reject',
            `path + ${suffix} (may reach another route)`,
          ),
        ),
        ...op.params.flatMap((param) =>
          ['%00', 'a%00b', '..', '%2e%2e%2f', 'a'.repeat(101), '%zz', '%ED%A0%80', NO_SUCH_ID.toUpperCase()].map(
            (odd) =>
              caseOf(
                op,
                build(op, { path: fill(op, (n) => (n === param ? odd : good(op)(n))), json: baseBody(op) }),
                'reject',
                `{${param}} = ${odd.slice(0, 40)}`,
              ),
          ),
        ),
      ],
      (op) => {
        if (!op.params.length) return undefined;
        return fc
          .tuple(fc.constantFrom(...op.params), oddSegment)
          .map(([param, odd]) =>
            caseOf(
              op,
              build(op, { path: fill(op, (n) => (n === param ? odd : good(op)(n))), json: baseBody(op) }),
              'reject',
              `{${param}} = ${odd.slice(0, 40)}`,
            ),
          );
      },
    );
  });

  it('bad query strings: negative, huge and non-numeric limits, garbage cursors, NUL, junk parameters', async () => {
    await drive(
      'query',
      (op) =>
        op.query.flatMap(({ name }) => {
          const values: [string, string][] = ['%00', 'a%00b', '%ED%A0%80', '-1', '1e999', 'x'.repeat(600)].map((v) => [
            v,
            `${name}=${v.slice(0, 20)}`,
          ]);
          if (name === 'cursor') {
            for (const at of CURSOR_TIMES)
              values.push([cursorOf({ at, id: A.items[0]?.id }), `cursor with at ${JSON.stringify(at)}`]);
          }
          return values.map(([value, note]) => oddity(op, { query: `${name}=${value}` }, note));
        }),
      (op) => {
        const ids = [...A.items, ...B.items].map((i) => i.id);
        const declared = op.query.map(({ name, schema }) =>
          oddQueryValue(doc, schema, name, ids).map((v) => `${name}=${v}`),
        );
        const junk = fc.oneof(
          fc.constantFrom(
            'limit=1&limit=2',
            'limit[]=1',
            'limit[a]=1',
            'cursor[]=x',
            '__proto__[x]=1',
            'constructor[prototype][x]=1',
            'a',
            '=x',
            '&&&',
            '%00=%00',
            'tenant_id=00000000-0000-4000-8000-000000000000',
            `x=${'y'.repeat(12_000)}`,
          ),
          fc
            .tuple(fc.string({ unit: edgeUnit, maxLength: 10 }), fc.string({ unit: edgeUnit, maxLength: 10 }))
            .map(([k, v]) => `${pct(k)}=${pct(v)}`),
        );
        return fc
          .array(fc.oneof(junk, ...declared), { minLength: 1, maxLength: 4 })
          .map((parts) => oddity(op, { query: parts.join('&') }, 'query'));
      },
    );
  });

  it('headers: wrong credentials, odd tenant claims and request ids, oversized headers', async () => {
    const latin1 = fc
      .string({ unit: 'binary-ascii', minLength: 1, maxLength: 60 })
      .map((s) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, '').trim() || 'x');
    await drive(
      'headers',
      () => [],
      (op) => {
        const credentials =
          op.plane === 'data'
            ? [
                A.key.slice(0, -1),
                `${A.key.slice(0, -1)}${A.key.endsWith('A') ? 'B' : 'A'}`,
                `${A.key}x`,
                A.key.toUpperCase(),
                A.key.replace('_test_', '_live_'),
                `Basic ${Buffer.from(`${A.key}:`).toString('base64')}`,
                `${A.key} ${A.key}`,
                ADMIN,
                'a.b.c',
                `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: NO_SUCH_ID, tid: A.id, role: 'owner' })).toString('base64url')}.`,
                'x'.repeat(9000),
              ].map((c) => (c.startsWith('Basic ') ? c : `Bearer ${c}`))
            : op.plane === 'control'
              ? [`Bearer ${ADMIN.slice(0, -1)}`, `Bearer ${ADMIN}x`, `Bearer ${ADMIN.toUpperCase()}`, `Bearer ${A.key}`]
              : [];
        const wrongCredential = fc
          .constantFrom(...credentials, null, 'Bearer', 'Token x')
          .map((authorization) =>
            caseOf(
              op,
              build(op, { authorization, json: baseBody(op) }),
              op.plane === 'public' ? 'survive' : 'reject',
              `authorization ${String(authorization).slice(0, 30)}`,
              authorization?.includes(A.key) ? 'A' : 'anonymous',
            ),
          );
        // On the data plane a claim naming no tenant is refused; elsewhere the header means nothing.
        const claim = fc
          .oneof(latin1, fc.constantFrom('x'.repeat(2000), `${A.slug}x`, NO_SUCH_ID))
          .map((tenant) =>
            op.plane === 'data'
              ? caseOf(
                  op,
                  build(op, { headers: { 'x-tenant-id': tenant }, json: baseBody(op) }),
                  'reject',
                  'x-tenant-id',
                )
              : oddity(op, { headers: { 'x-tenant-id': tenant } }, 'x-tenant-id'),
          );
        const oddHeaders = fc
          .oneof(
            fc.integer({ min: 1024, max: 15_000 }).map((n) => ({ 'x-fuzz': 'a'.repeat(n) })),
            fc.integer({ min: 17_000, max: 64_000 }).map((n) => ({ 'x-fuzz': 'a'.repeat(n) })),
            latin1.map((id) => ({ 'x-request-id': id })),
            fc.constant({ 'x-request-id': 'r'.repeat(129) }),
            fc.constantFrom('text/html', 'application/xml', '*/*;q=0', 'garbage').map((accept) => ({ accept })),
            fc.constantFrom('gzip;q=abc', 'br, zstd, identity;q=0').map((e) => ({ 'accept-encoding': e })),
            fc.constantFrom('evil.example', 'a'.repeat(300), '[::1]:99999').map((host) => ({ host })),
            latin1.map((v) => ({ 'x-forwarded-for': v, forwarded: v })),
            fc.constant({ cookie: `s=${'c'.repeat(10_000)}` }),
          )
          .map((headers) => oddity(op, { headers }, `headers ${Object.keys(headers).join(',')}`));
        return fc.oneof(wrongCredential, claim, oddHeaders);
      },
    );
  });

  it('tenant A’s credentials against tenant B’s resources', async () => {
    await drive(
      'cross-tenant',
      (op) => {
        const cases: Case[] = [];
        if (op.plane === 'data') {
          for (const claim of [B.slug, B.id, B.slug.toUpperCase(), B.id.toUpperCase()]) {
            const request = build(op, { headers: { 'x-tenant-id': claim }, json: baseBody(op) });
            cases.push(caseOf(op, request, 'reject', 'x-tenant-id names B'));
          }
          for (const key of ['tenantId', 'tenant_id', 'tenant']) {
            if (!op.body) break;
            const json = { ...baseBody(op), [key]: B.id };
            cases.push(caseOf(op, build(op, { json }), 'reject', `body.${key} = B`));
          }
        }
        if (op.plane === 'control' && op.params.includes('tenant')) {
          for (const tenant of [B.slug, B.id]) {
            const path = fill(op, (n) => (n === 'tenant' ? tenant : n === 'keyId' ? B.keyId : good(op)(n)));
            const request = build(op, { path, json: baseBody(op), authorization: `Bearer ${A.key}` });
            cases.push(caseOf(op, request, 'reject', 'A’s API key on the control plane', 'A'));
          }
          if (op.params.includes('keyId')) {
            const path = fill(op, (n) => (n === 'keyId' ? B.keyId : good(op)(n)));
            cases.push(caseOf(op, build(op, { path }), 'reject', 'tenant C’s path, tenant B’s key id'));
          }
        }
        if (op.label === 'POST /v1/auth/login') {
          for (const tenant of [B.slug, B.id]) {
            const json = { tenant, email: A.userEmail, password: PASSWORD };
            cases.push(caseOf(op, build(op, { json }), 'reject', 'A’s user logs in to B', 'A'));
          }
        }
        return cases;
      },
      (op) => {
        if (op.plane !== 'data') return undefined;
        const bIds = [...B.items.map((i) => i.id), B.id, B.slug, B.keyId];
        const arbs: fc.Arbitrary<Case>[] = [];
        if (op.params.length) {
          arbs.push(
            fc
              .tuple(fc.constantFrom(...bIds), fc.constantFrom('', '/..', '/', '%00'), fc.boolean())
              .map(([id, suffix, upper]) => {
                const path = fill(op, () => (upper ? id.toUpperCase() : id)) + suffix;
                return caseOf(op, build(op, { path, json: baseBody(op) }), 'reject', `path names B’s ${id}`);
              }),
          );
        }
        if (op.method === 'GET') {
          const at = fc.constantFrom(...B.items.map((i) => i.createdAt.replace('Z', '000Z')));
          const cursor = fc
            .tuple(at, fc.constantFrom(...B.items.map((i) => i.id)))
            .map(([a, id]) => Buffer.from(JSON.stringify({ at: a, id })).toString('base64url'));
          const query = fc.oneof(
            cursor.map((c) => `cursor=${c}`),
            fc.constantFrom(...B.items.map((i) => `q=${pct(i.title)}`), `tenant_id=${B.id}`, `tenant=${B.slug}`),
            craftedCursor(B.items.map((i) => i.id)).map((c) => `cursor=${c}&limit=100`),
          );
          arbs.push(query.map((q) => caseOf(op, build(op, { query: q }), 'survive', 'query names B')));
        }
        return arbs.length ? fc.oneof(...arbs) : undefined;
      },
    );
  });

  it('drove every route, and the bad input changed nothing', async () => {
    for (const op of ops) expect(raw.counts.get(op.label) ?? 0, op.label).toBeGreaterThan(50);
    const after = await snapshot();
    const changes = Object.keys(before)
      .filter((table) => table !== 'audit_last_id')
      .flatMap((table) => diffRows(table, before[table] as string, after[table] as string));
    // The only audit rows bad input may leave: A's key was used (batched usage records).
    const actions = await auditSince(Number(JSON.parse(before.audit_last_id as string)[0]));
    for (const action of actions) if (action !== 'api_key.used') changes.push(`audit_log: + ${action}`);
    expect(changes.length, `rows changed by bad input (superuser view):\n${changes.join('\n')}\n`).toBe(0);
  });
});
