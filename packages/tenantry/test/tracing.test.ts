import { randomBytes } from 'node:crypto';
import {
  type Attributes,
  type AttributeValue,
  type Span,
  type SpanContext,
  type SpanStatus,
  TraceFlags,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import type { Tenantry } from '../src/index.ts';

/**
 * With an OpenTelemetry SDK registered, requests and tenant transactions make spans that
 * carry the tenant id; without one, Tenantry makes no span object at all (the fast path).
 * The provider here is a minimal recording one written against the API, as an SDK is.
 */
class RecordedSpan implements Span {
  readonly attributes: Record<string, AttributeValue> = {};
  status: SpanStatus | undefined;
  ended = false;
  readonly #context: SpanContext = {
    traceId: randomBytes(16).toString('hex'),
    spanId: randomBytes(8).toString('hex'),
    traceFlags: TraceFlags.SAMPLED,
  };
  name: string;
  constructor(name: string) {
    this.name = name;
  }
  spanContext(): SpanContext {
    return this.#context;
  }
  setAttribute(key: string, value: AttributeValue): this {
    this.attributes[key] = value;
    return this;
  }
  setAttributes(attributes: Attributes): this {
    for (const [key, value] of Object.entries(attributes)) if (value !== undefined) this.attributes[key] = value;
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(status: SpanStatus): this {
    this.status = status;
    return this;
  }
  updateName(name: string): this {
    this.name = name;
    return this;
  }
  end(): void {
    this.ended = true;
  }
  isRecording(): boolean {
    return !this.ended;
  }
  recordException(): void {}
}

class Recorder implements TracerProvider {
  readonly spans: RecordedSpan[] = [];
  getTracer(): Tracer {
    const startSpan = (name: string, options?: { attributes?: Attributes }) => {
      const span = new RecordedSpan(name);
      if (options?.attributes) span.setAttributes(options.attributes);
      this.spans.push(span);
      return span;
    };
    return {
      startSpan,
      startActiveSpan: ((name: string, ...rest: unknown[]) =>
        (rest.at(-1) as (span: Span) => unknown)(startSpan(name))) as Tracer['startActiveSpan'],
    };
  }
}

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;
let key: string;
let tenantId: string;
const recorder = new Recorder();

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('tracing'));
  server = await startServer(tenantry);
  const tenant = await tenantry.tenants.create({ slug: 'traced', name: 'Traced' });
  tenantId = tenant.id;
  key = (await tenantry.apiKeys.create(tenant.id, { name: 't', environment: 'test', scopes: ['items:read'] })).key;
});

afterAll(async () => {
  trace.disable();
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

describe('OpenTelemetry', () => {
  it('makes no span without an SDK', async () => {
    expect((await server.request('GET', '/v1/items', { token: key })).status).toBe(200);
    expect(recorder.spans).toEqual([]);
  });

  it('with an SDK: a server span per request and a span per tenant transaction, with the tenant id', async () => {
    expect(trace.setGlobalTracerProvider(recorder)).toBe(true);
    const missing = '00000000-0000-4000-8000-000000000000';
    expect((await server.request('GET', `/v1/items/${missing}`, { token: key })).status).toBe(404);
    expect((await server.request('GET', '/v1/items', { token: key })).status).toBe(200);
    const names = recorder.spans.map((s) => s.name);
    expect(names).toEqual(
      expect.arrayContaining(['GET /v1/items/:id', 'GET /v1/items', 'tenantry.query', 'tenantry.transaction']),
    );
    const request = recorder.spans.find((s) => s.name === 'GET /v1/items/:id') as RecordedSpan;
    expect(request.attributes).toMatchObject({
      'http.route': '/v1/items/:id',
      'http.response.status_code': 404,
      'tenantry.tenant_id': tenantId,
    });
    expect(request.ended).toBe(true);
    for (const s of recorder.spans.filter((x) => x.name.startsWith('tenantry.'))) {
      expect(s.attributes['tenantry.tenant_id']).toBe(tenantId);
      expect(s.ended).toBe(true);
    }
  });
});
