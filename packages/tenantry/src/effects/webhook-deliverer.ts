import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Logger } from '../config.ts';
import type { TenantEvent } from './event-subscribers.ts';
import type { OutboxDispatcher } from './outbox-dispatcher.ts';
import { type ResolvedTarget, resolveWebhookTarget } from './webhook-address.ts';
import type { DeadLetterToReplay, WebhookEndpoints } from './webhook-endpoints.ts';
import { signWebhook } from './webhook-signature.ts';

/** Options of {@link WebhookDeliverer}. */
export interface WebhookDelivererOptions {
  /** Allow endpoints on loopback, link-local and private addresses (default false: refused). */
  readonly allowPrivateAddresses?: boolean;
  /** Milliseconds one attempt may take, response included (default 10 000). */
  readonly timeoutMs?: number;
  /** Attempts per event and endpoint, the first included (default 3). */
  readonly attempts?: number;
  /** Delay before the first retry; it doubles on each, with jitter (default 1000). */
  readonly retryDelayMs?: number;
  readonly logger?: Logger | undefined;
}

interface Attempt {
  status: number | null;
  error: string | null;
}

/** The pinned addresses as `lookup` answers: a second resolution could answer something else. */
function pinnedLookup(target: ResolvedTarget): LookupFunction {
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    const [first] = target.addresses as [{ address: string; family: number }];
    if (options?.all) callback(null, target.addresses);
    else callback(null, first.address, first.family);
  }) as LookupFunction;
}

/** One signed POST; resolves with the status, or the error that stopped it. */
function post(target: ResolvedTarget, headers: Record<string, string>, body: string, timeoutMs: number) {
  return new Promise<Attempt>((resolve) => {
    const request = target.url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(
      target.url,
      {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        lookup: pinnedLookup(target),
        signal: AbortSignal.timeout(timeoutMs),
      },
      (res) => {
        res.resume(); // the body is not read, only drained
        res.on('end', () => resolve({ status: res.statusCode ?? null, error: null }));
        res.on('error', (error) => resolve({ status: res.statusCode ?? null, error: error.message }));
      },
    );
    req.on('error', (error) =>
      resolve({ status: null, error: error.name === 'AbortError' ? `timed out after ${timeoutMs} ms` : error.message }),
    );
    req.end(body);
  });
}

/**
 * Delivers outbox events to tenants' webhook endpoints (see docs/events.md): one
 * subscriber for every event type, which POSTs each event to the endpoints of **the
 * event's tenant** that subscribed to its type, signed as Standard Webhooks specifies
 * (`webhook-id`, `webhook-timestamp`, `webhook-signature`). A failed attempt (an error,
 * a timeout, any status but 2xx) is retried in process, a bounded number of times with
 * exponential backoff and jitter; every attempt is recorded. An endpoint that still fails
 * gets the event as a **dead letter** (`tenantry.webhooks.deadLetters`), which
 * {@link replay} sends again; it does not fail the event: it would hold back the tenant's later events and redeliver to
 * every other subscriber. Redirects are not followed. The address rule is checked again
 * on each delivery, against the addresses the request then connects to.
 *
 * @example
 * ```ts
 * const deliverer = new WebhookDeliverer(tenantry.webhooks, { timeoutMs: 5000 });
 * deliverer.subscribe(tenantry.events);
 * await tenantry.events.start();
 * ```
 */
export class WebhookDeliverer {
  readonly #endpoints: WebhookEndpoints;
  readonly #allowPrivate: boolean;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #retryMs: number;
  readonly #logger: Logger | undefined;
  readonly #stop = new AbortController();
  #off: (() => void) | undefined;

  constructor(endpoints: WebhookEndpoints, options: WebhookDelivererOptions = {}) {
    this.#endpoints = endpoints;
    this.#allowPrivate = options.allowPrivateAddresses ?? false;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#attempts = Math.min(Math.max(Math.trunc(options.attempts ?? 3), 1), 10);
    this.#retryMs = options.retryDelayMs ?? 1000;
    this.#logger = options.logger;
  }

  /** Subscribes to every event of `events`; returns what unsubscribes. */
  subscribe(events: OutboxDispatcher): () => void {
    this.#off?.();
    this.#off = events.on('*', (event) => this.deliver(event));
    return () => this.close();
  }

  /** Unsubscribes and cuts retry waits short. */
  close(): void {
    this.#off?.();
    this.#off = undefined;
    this.#stop.abort();
  }

  /** Sends `event` to every endpoint of its tenant that wants it. */
  async deliver(event: TenantEvent): Promise<void> {
    const endpoints = await this.#endpoints.forEvent(event.tenantId, event.type);
    if (endpoints.length === 0) return;
    const id = `evt_${event.id}`;
    const body = JSON.stringify({
      id,
      type: event.type,
      timestamp: event.createdAt.toISOString(),
      tenantId: event.tenantId,
      seq: event.seq,
      data: event.payload,
    });
    await Promise.all(
      endpoints.map(async (endpoint) => {
        const failure = await this.#deliverTo(endpoint, event, id, body);
        if (failure !== undefined) await this.#deadLetter(endpoint, event, body, failure);
      }),
    );
  }

  /**
   * Sends a dead-lettered event again to its endpoint, with the same body, id and a fresh
   * signature, through the same attempts and backoff; removes the dead letter once it is
   * delivered, or records the new failure on it. `NOT_FOUND` (before anything is sent)
   * unless `eventId` is dead-lettered on one of the tenant's endpoints. Resolves to whether
   * the replay was delivered.
   *
   * @example
   * ```ts
   * const delivered = await deliverer.replay(tenantId, endpointId, '42');
   * ```
   */
  async replay(tenantId: string, endpointId: string, eventId: string): Promise<boolean> {
    const letter = await this.#endpoints.deadLetterToReplay(tenantId, endpointId, eventId);
    return this.#replay(letter);
  }

  /** {@link replay} in two steps: the checked dead letter now, the delivery's outcome later. */
  async startReplay(tenantId: string, endpointId: string, eventId: string): Promise<{ done: Promise<boolean> }> {
    const letter = await this.#endpoints.deadLetterToReplay(tenantId, endpointId, eventId);
    return { done: this.#replay(letter) };
  }

  async #replay(letter: DeadLetterToReplay): Promise<boolean> {
    const event = { id: letter.eventId, type: letter.eventType };
    const failure = await this.#deliverTo(letter.endpoint, event, `evt_${letter.eventId}`, letter.body);
    if (failure === undefined) {
      await this.#endpoints.clearDeadLetter(letter.endpoint.id, letter.eventId);
      return true;
    }
    await this.#deadLetter(letter.endpoint, event, letter.body, failure);
    return false;
  }

  async #deadLetter(
    endpoint: { id: string; tenantId: string },
    event: { id: string; type: string },
    body: string,
    failure: { attempts: number; error: string | null },
  ): Promise<void> {
    await this.#endpoints
      .deadLetter(endpoint, event, body, failure.attempts, failure.error)
      .catch((e: Error) =>
        this.#logger?.warn({ err: e.message, endpointId: endpoint.id }, 'webhook: dead letter not recorded'),
      );
  }

  /** Every attempt for one endpoint; the failure (attempts made, last error) when none succeeded. */
  async #deliverTo(
    endpoint: { id: string; tenantId: string; url: string; secret: string },
    event: { id: string; type: string },
    id: string,
    body: string,
  ): Promise<{ attempts: number; error: string | null } | undefined> {
    for (let attempt = 1; attempt <= this.#attempts; attempt++) {
      const started = performance.now();
      let outcome: Attempt;
      try {
        const target = await resolveWebhookTarget(endpoint.url, { allowPrivateAddresses: this.#allowPrivate });
        const timestamp = Math.floor(Date.now() / 1000);
        outcome = await post(
          target,
          {
            'webhook-id': id,
            'webhook-timestamp': String(timestamp),
            'webhook-signature': signWebhook(endpoint.secret, id, timestamp, body),
            'user-agent': 'Tenantry-Webhooks/1',
          },
          body,
          this.#timeoutMs,
        );
      } catch (error) {
        outcome = { status: null, error: (error as Error).message };
      }
      const ok = outcome.error === null && outcome.status !== null && outcome.status >= 200 && outcome.status < 300;
      const error = ok ? null : (outcome.error ?? `HTTP ${outcome.status}`);
      await this.#endpoints
        .record(endpoint, event, {
          attempt,
          ok,
          status: outcome.status,
          error,
          durationMs: performance.now() - started,
        })
        .catch((e: Error) => this.#logger?.warn({ err: e.message, endpointId: endpoint.id }, 'webhook: not recorded'));
      if (ok) return undefined;
      if (attempt === this.#attempts || this.#stop.signal.aborted) {
        this.#logger?.warn(
          { endpointId: endpoint.id, tenantId: endpoint.tenantId, eventId: event.id, attempt, err: error },
          'webhook: delivery failed; dead-lettered',
        );
        return { attempts: attempt, error };
      }
      // Exponential backoff with "equal jitter": half the delay fixed, half random, so
      // endpoints that failed together do not retry together.
      const delay = this.#retryMs * 2 ** (attempt - 1);
      await this.#sleep(delay / 2 + Math.random() * (delay / 2));
    }
    return { attempts: this.#attempts, error: 'not attempted' };
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#stop.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#stop.signal.addEventListener('abort', done, { once: true });
    });
  }
}
