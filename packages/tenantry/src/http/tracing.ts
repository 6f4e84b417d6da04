import { context, propagation, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { FastifyInstance } from 'fastify';
import { tracingActive } from '../ops/tracing.ts';

const tracer = trace.getTracer('tenantry');
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

declare module 'fastify' {
  interface FastifyRequest {
    /** The W3C trace id of the request (from `traceparent`, or the active span), for logs. */
    traceId: string | undefined;
  }
}

/**
 * OpenTelemetry hooks: a server span per request, continuing the caller's `traceparent`,
 * with the tenant id and route as attributes; the trace id is added to the request's log
 * lines. Without an OpenTelemetry SDK registered these are no-ops (the API's default).
 */
export function registerTracing(app: FastifyInstance): void {
  const spans = new WeakMap<object, Span>();
  app.decorateRequest('traceId', undefined);
  // Callback hooks (no promise per request), and a span that does not record (no SDK, or
  // not sampled) is not kept: the response then costs nothing here.
  app.addHook('onRequest', (req, _reply, done) => {
    const sent =
      typeof req.headers.traceparent === 'string' ? TRACEPARENT.exec(req.headers.traceparent)?.[1] : undefined;
    if (!tracingActive()) {
      // No SDK: no span to make; the caller's trace id still reaches the logs.
      req.traceId = sent;
      if (sent) req.log = req.log.child({ traceId: sent });
      return done();
    }
    const parent = propagation.extract(context.active(), req.headers);
    const span = tracer.startSpan(
      `${req.method} ${req.routeOptions.url ?? 'unmatched'}`,
      { kind: SpanKind.SERVER },
      parent,
    );
    if (span.isRecording()) spans.set(req, span);
    const fromSpan = span.spanContext().traceId;
    req.traceId = fromSpan !== '00000000000000000000000000000000' ? fromSpan : sent;
    if (req.traceId) req.log = req.log.child({ traceId: req.traceId });
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    const span = spans.get(req);
    if (span) {
      span.setAttribute('http.route', req.routeOptions.url ?? 'unmatched');
      span.setAttribute('http.response.status_code', reply.statusCode);
      if (req.tenant) span.setAttribute('tenantry.tenant_id', req.tenant.id);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
    done();
  });
}
