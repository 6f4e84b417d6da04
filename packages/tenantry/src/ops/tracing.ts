type OpenTelemetryApi = typeof import('@opentelemetry/api');

/** `@opentelemetry/api` once {@link loadTracing} found it; an optional peer dependency. */
let api: OpenTelemetryApi | undefined;

/**
 * Loads `@opentelemetry/api` when the application has it installed (an optional peer
 * dependency: importing `tenantry` never loads it). `Tenantry.connect()` calls this; without
 * it, {@link withSpan} runs its function directly.
 */
export async function loadTracing(): Promise<void> {
  api ??= await import('@opentelemetry/api').catch(() => undefined);
}

/** The provider behind the API's proxy when no SDK registered one. */
let noopProvider: unknown;

/**
 * Whether an OpenTelemetry SDK has registered a tracer provider: a check of two fields, so
 * that without one no span object is made per request or transaction at all.
 */
export function tracingActive(): boolean {
  if (!api) return false;
  const provider = api.trace.getTracerProvider();
  if (!(provider instanceof api.ProxyTracerProvider)) return true;
  noopProvider ??= new api.ProxyTracerProvider().getDelegate();
  return provider.getDelegate() !== noopProvider;
}

/**
 * Runs `fn` in a child span named `name`. Without OpenTelemetry, or without an SDK (the span
 * does not record), `fn` runs directly: no context switch and no extra promise on every
 * tenant transaction.
 *
 * @example
 * ```ts
 * await withSpan('tenantry.transaction', { 'tenantry.tenant_id': tenant.id }, () => work());
 * ```
 */
export function withSpan<T>(name: string, attributes: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  if (!api || !tracingActive()) return fn();
  const { context, trace, SpanStatusCode } = api;
  const span = trace.getTracer('tenantry').startSpan(name, { attributes });
  if (!span.isRecording()) return fn();
  return context.with(trace.setSpan(context.active(), span), async () => {
    try {
      return await fn();
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}
