import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';

/** How often something happened while the meter was on, and the wall time it took in all. */
export interface Tally {
  count: number;
  ms: number;
}

/**
 * Counts and times named events in a server process, only while switched on (the measured
 * rounds run with it off; every probe then costs one boolean test).
 */
export class Meter {
  on = false;
  #tallies = new Map<string, Tally>();

  add(name: string, ms: number): void {
    if (!this.on) return;
    const tally = this.#tallies.get(name);
    if (tally) {
      tally.count++;
      tally.ms += ms;
    } else {
      this.#tallies.set(name, { count: 1, ms });
    }
  }

  start(): void {
    this.#tallies.clear();
    this.on = true;
  }

  stop(): Record<string, Tally> {
    this.on = false;
    return Object.fromEntries(this.#tallies);
  }
}

/** Wraps an async function so that, while the meter is on, each call's wall time is added under `name`. */
export function probe<A extends unknown[], R>(
  meter: Meter,
  name: string,
  fn: (...args: A) => Promise<R>,
): (...args: A) => Promise<R> {
  return function (this: unknown, ...args: A): Promise<R> {
    if (!meter.on) return fn.apply(this, args);
    const t0 = performance.now();
    const result = fn.apply(this, args);
    const done = () => meter.add(name, performance.now() - t0);
    // A callback-style call (pg-pool's connect(cb)) returns nothing: it is simply not timed.
    (result as Promise<R> | undefined)?.then?.(done, done);
    return result;
  };
}

/** Probe names of the Tenantry side, in request order. */
export const TENANTRY_PROBES = Object.freeze({
  verify: 'tenantry: apiKeys.verify (HMAC, 1 s cache)',
  tenant: 'tenantry: TenantCache.get',
  admit: 'tenantry: rate limiter consume',
  transaction: 'tenantry: transaction (connect … COMMIT, release)',
  connect: 'tenantry: runtimePool.connect() (wait for a connection)',
  work: 'tenantry: route work in the transaction (Kysely + SELECT)',
});

/** Probe names of the baseline. */
export const BARE_PROBES = Object.freeze({
  query: 'bare: pool.query() (connect + SELECT + release)',
});

/** The text of whatever was handed to `client.query` (a string, a config, or a submittable). */
function sqlOf(arg: unknown): string {
  if (typeof arg === 'string') return arg;
  if (arg && typeof arg === 'object') {
    const o = arg as { text?: unknown; beginSql?: unknown; name?: unknown };
    // Tenantry's pipelined opening is a submittable (its fields may be private).
    if (typeof o.beginSql === 'string' && typeof o.text === 'string') return `${o.beginSql}; ${o.text}`;
    if (typeof o.text === 'string') return o.text;
    if (typeof o.name === 'string') return o.name;
    if (typeof (arg as { submit?: unknown }).submit === 'function') return `(pipeline ${arg.constructor.name})`;
  }
  return '?';
}

/** A short, stable label for a statement. */
export function statementLabel(sql: string): string {
  const s = sql.replace(/\s+/g, ' ').trim();
  if (/^BEGIN; SELECT tenantry_context\.enter\(/.test(s)) return 'pipeline: BEGIN + enter(token)';
  if (/^\(pipeline /.test(s)) return 'pipeline: BEGIN + enter(token) [+ first statement]';
  if (/^(COMMIT|ROLLBACK|BEGIN)$/i.test(s)) return s.toUpperCase();
  if (/FROM "?items"? WHERE/i.test(s)) return 'SELECT … FROM items';
  if (/FROM tenantry\.api_keys WHERE display_prefix/.test(s)) return 'API key lookup';
  if (/^WITH used AS/.test(s)) return 'API key usage flush';
  if (/FROM tenantry\.tenants WHERE/.test(s)) return 'tenant lookup';
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/**
 * Times every `pg.Client#query` call of this process while the meter is on. Each call is
 * one round trip: pg sends a simple Query or an extended-protocol batch ending in one Sync
 * and waits for ReadyForQuery (Tenantry's pipelined BEGIN included). `role` names the
 * pool from the client's login (e.g. the runtime role vs the owner).
 */
export function meterQueries(meter: Meter, role: (user: string) => string): void {
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (this: pg.Client, ...args: unknown[]): unknown {
    if (!meter.on) return original.apply(this, args);
    const name = `db ${role(this.user ?? '')}: ${statementLabel(sqlOf(args[0]))}`;
    const t0 = performance.now();
    const done = () => meter.add(name, performance.now() - t0);
    const last = args.length - 1;
    const callback = args[last];
    if (typeof callback === 'function') {
      // pg-pool's pool.query() passes a callback; then query() returns nothing.
      args[last] = function (this: unknown, ...results: unknown[]) {
        done();
        return (callback as (...a: unknown[]) => unknown).apply(this, results);
      };
      return original.apply(this, args);
    }
    const result = original.apply(this, args) as { then?: unknown; promise?: Promise<unknown> } | undefined;
    const settled = typeof result?.then === 'function' ? (result as Promise<unknown>) : result?.promise;
    settled?.then(done, done);
    return result;
  };
}

/** Names of the protocol-message counts kept by {@link meterWire}. */
export const WIRE = Object.freeze({
  sync: 'wire: Sync (end of an extended-protocol exchange)',
  simple: 'wire: simple Query',
  execute: 'wire: Execute (one statement run)',
});

/**
 * Counts the frontend protocol messages pg sends while the meter is on: every Sync and
 * every simple Query makes the client wait for one ReadyForQuery (a round trip); every
 * Execute and simple Query runs a statement. Exact whatever builds the messages
 * (pg's own queries or Tenantry's pipeline).
 */
export function meterWire(meter: Meter): void {
  const proto = (pg as unknown as { Connection: { prototype: Record<string, (...a: unknown[]) => unknown> } })
    .Connection.prototype;
  for (const [method, name] of [
    ['sync', WIRE.sync],
    ['query', WIRE.simple],
    ['execute', WIRE.execute],
  ] as const) {
    const original = proto[method] as (...a: unknown[]) => unknown;
    proto[method] = function (this: unknown, ...args: unknown[]) {
      meter.add(name, 0);
      return original.apply(this, args);
    };
  }
}

const MARKS = Symbol('bench.http.marks');

interface Marks {
  readonly t0: number;
  onRequest?: number;
  preValidation?: number;
  preHandler?: number;
  onSend?: number;
}

type Marked = IncomingMessage & { [MARKS]?: Marks };

/** Stage names, in request order. */
export const STAGES = Object.freeze({
  onRequest: 'http 1: request event → end of onRequest hooks (routing, request id, helmet, cors)',
  preValidation: 'http 2: → preValidation (preParsing, body parsing)',
  preHandler: 'http 3: → end of preHandler hooks (params validation; Tenantry: identify, auth, admit)',
  onSend: 'http 4: → onSend (route handler, response serialization)',
  onResponse: 'http 5: → onResponse (write to socket)',
  total: 'http total: request event → onResponse',
});

/**
 * Timestamps each request at the server's `request` event (before Fastify sees it) and in
 * hooks appended after every other hook of the app, so the gaps are the stages of Fastify's
 * lifecycle. Call before `listen()`.
 */
export function timeStages(app: FastifyInstance, meter: Meter): void {
  app.server.prependListener('request', (req: Marked) => {
    if (meter.on) req[MARKS] = { t0: performance.now() };
  });
  const stamp = (key: 'onRequest' | 'preValidation' | 'preHandler' | 'onSend', req: Marked) => {
    const marks = req[MARKS];
    if (marks) marks[key] = performance.now();
  };
  app.addHook('onRequest', (req, _reply, done) => {
    stamp('onRequest', req.raw);
    done();
  });
  app.addHook('preValidation', (req, _reply, done) => {
    stamp('preValidation', req.raw);
    done();
  });
  app.addHook('preHandler', (req, _reply, done) => {
    stamp('preHandler', req.raw);
    done();
  });
  app.addHook('onSend', (req, _reply, payload, done) => {
    stamp('onSend', req.raw);
    done(null, payload);
  });
  app.addHook('onResponse', (req, _reply, done) => {
    const m = (req.raw as Marked)[MARKS];
    if (m?.onRequest && m.preValidation && m.preHandler && m.onSend) {
      const end = performance.now();
      meter.add(STAGES.onRequest, m.onRequest - m.t0);
      meter.add(STAGES.preValidation, m.preValidation - m.onRequest);
      meter.add(STAGES.preHandler, m.preHandler - m.preValidation);
      meter.add(STAGES.onSend, m.onSend - m.preHandler);
      meter.add(STAGES.onResponse, end - m.onSend);
      meter.add(STAGES.total, end - m.t0);
    }
    done();
  });
}
