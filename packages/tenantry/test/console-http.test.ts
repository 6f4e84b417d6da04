import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../../test-support/database.ts';
import { createAppTenantry, startServer, type TestServer } from '../../../test-support/http.ts';
import { escapeHtml, html } from '../src/console/html.ts';
import { listTenants, TENANT_SORTS } from '../src/console/tenant-list.ts';
import type { Tenantry } from '../src/index.ts';

/**
 * The console over plain HTTP (no browser, so these run wherever PostgreSQL does): sessions,
 * CSRF, the list's keyset pages, escaping, and the usage series the charts draw. The
 * browser flows are in console.test.ts.
 */

const ADMIN = 'console-http-admin-token-0123456789';

let db: TestDatabase;
let tenantry: Tenantry<unknown>;
let server: TestServer;

beforeAll(async () => {
  ({ db, tenantry } = await createAppTenantry('console-http'));
  server = await startServer(tenantry, { adminToken: ADMIN, usage: { snapshotIntervalMs: 0 } });
});

afterAll(async () => {
  await server?.close();
  await tenantry?.close();
  await db?.drop();
});

/** Signs in like a browser form; returns the cookie and the page's CSRF token. */
async function signIn(): Promise<{ cookie: string; csrf: string }> {
  const response = await fetch(`${server.url}/console/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: server.url },
    body: new URLSearchParams({ token: ADMIN }).toString(),
  });
  expect(response.status).toBe(303);
  const setCookie = response.headers.get('set-cookie') ?? '';
  expect(setCookie).toMatch(/; HttpOnly/);
  expect(setCookie).toMatch(/; SameSite=Strict/);
  const cookie = setCookie.split(';')[0] as string;
  const page = await (await fetch(`${server.url}/console/tenants`, { headers: { cookie } })).text();
  const csrf = /name="_csrf" value="([^"]+)"/.exec(page)?.[1];
  if (!csrf) throw new Error('no CSRF token on the page');
  return { cookie, csrf };
}

const post = (path: string, cookie: string | undefined, form: Record<string, string>, origin = server.url) =>
  fetch(`${server.url}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      origin,
      accept: 'text/html',
      ...(cookie ? { cookie } : {}),
    },
    body: new URLSearchParams(form).toString(),
  });

describe('console sessions and CSRF over HTTP', () => {
  it('sends a page request without a session to sign-in, and answers others 401 problem details', async () => {
    const page = await fetch(`${server.url}/console/tenants`, { redirect: 'manual', headers: { accept: 'text/html' } });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/console/sign-in');
    const json = await fetch(`${server.url}/console/tenants`, { headers: { accept: 'application/json' } });
    expect(json.status).toBe(401);
    expect(json.headers.get('content-type')).toContain('application/problem+json');
    expect(((await json.json()) as { code: string }).code).toBe('CONSOLE_SIGN_IN_REQUIRED');
    const forged = await fetch(`${server.url}/console/tenants`, {
      headers: { accept: 'application/json', cookie: 'tenantry_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
    });
    expect(forged.status).toBe(401);
  });

  it('refuses a wrong token (no cookie) and a sign-in posted from another origin', async () => {
    const wrong = await post('/console/sign-in', undefined, { token: 'nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    const foreign = await post('/console/sign-in', undefined, { token: ADMIN }, 'https://evil.example');
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('set-cookie')).toBeNull();
  });

  it('serves every console page with a CSP that allows no inline script, and never caches it', async () => {
    const { cookie } = await signIn();
    for (const path of ['/console/tenants', '/console/fleet', '/console/database', '/console/sign-in']) {
      const response = await fetch(`${server.url}${path}`, { headers: { cookie }, redirect: 'manual' });
      const csp = response.headers.get('content-security-policy') ?? '';
      expect(csp, path).toContain("script-src 'self'");
      expect(csp, path).toContain("frame-ancestors 'none'");
      expect(csp, path).not.toContain('unsafe');
      if (response.status === 200) {
        expect(response.headers.get('cache-control')).toBe('no-store');
        expect(await response.text()).not.toMatch(/<script>|<script [^>]*>[^<]|\son[a-z]+="/);
      }
    }
    // The API keeps its own headers: no console CSP on /v1.
    expect((await fetch(`${server.url}/health`)).headers.get('content-security-policy')).toBeNull();
  });

  it('creates a tenant only with the CSRF token and from this origin', async () => {
    const { cookie, csrf } = await signIn();
    const without = await post('/console/tenants', cookie, { slug: 'csrf-a', name: 'A' });
    expect(without.status).toBe(403);
    const foreign = await post(
      '/console/tenants',
      cookie,
      { slug: 'csrf-a', name: 'A', _csrf: csrf },
      'https://evil.example',
    );
    expect(foreign.status).toBe(403);
    const otherSession = await signIn();
    const crossed = await post('/console/tenants', cookie, { slug: 'csrf-a', name: 'A', _csrf: otherSession.csrf });
    expect(crossed.status).toBe(403);
    expect(await tenantry.tenants.find('csrf-a')).toBeUndefined();
    const ok = await post('/console/tenants', cookie, {
      slug: 'csrf-a',
      name: 'A',
      _csrf: csrf,
      tier: 'pool',
      plan: 'free',
    });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/console/tenants/csrf-a?created=1');
    expect((await tenantry.tenants.get('csrf-a')).name).toBe('A');
    const audit = await tenantry.audit.list((await tenantry.tenants.get('csrf-a')).id, { action: 'tenant.created' });
    expect(audit.entries[0]?.actor).toMatch(/^admin-console:[0-9a-f]{8}$/);
  });

  it('moves a tenant to another tier after the typed confirmation, and audits who did', async () => {
    const { cookie, csrf } = await signIn();
    const t = await tenantry.tenants.create({ slug: 'console-move', name: 'Move me' });
    const unconfirmed = await post('/console/tenants/console-move/move', cookie, { to: 'schema', _csrf: csrf });
    expect(unconfirmed.status).toBe(400);
    expect(await unconfirmed.text()).toContain('type the slug console-move to confirm');
    const same = await post('/console/tenants/console-move/move', cookie, {
      to: 'pool',
      confirm: 'console-move',
      _csrf: csrf,
    });
    expect(same.status).toBe(400);
    expect((await tenantry.tenants.get(t.id)).tier).toBe('pool');
    const moved = await post('/console/tenants/console-move/move', cookie, {
      to: 'schema',
      confirm: 'console-move',
      _csrf: csrf,
    });
    expect(moved.status).toBe(200);
    expect(await moved.text()).toContain('Moved to the schema tier');
    expect((await tenantry.tenants.get(t.id)).tier).toBe('schema');
    const audit = await tenantry.audit.list(t.id, { action: 'tenant.moved' });
    expect(audit.entries[0]?.actor).toMatch(/^admin-console:[0-9a-f]{8}$/);
  });

  it('re-renders the form with a clear message for bad input, and creates nothing', async () => {
    const { cookie, csrf } = await signIn();
    const bad = await post('/console/tenants', cookie, { slug: 'Not A Slug', name: 'x', _csrf: csrf });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('Not created');
    const taken = await post('/console/tenants', cookie, { slug: 'csrf-a', name: 'again', _csrf: csrf });
    expect(taken.status).toBe(400);
    expect(await taken.text()).toContain('already exists');
    const cursor = await fetch(`${server.url}/console/tenants?cursor=not-a-cursor`, {
      headers: { cookie, accept: 'text/html' },
    });
    expect(cursor.status).toBe(400);
  });

  it('ends a session at sign-out and after its idle time', async () => {
    const { cookie, csrf } = await signIn();
    const get = () => fetch(`${server.url}/console/fleet`, { headers: { cookie, accept: 'application/json' } });
    expect((await get()).status).toBe(200);
    const out = await post('/console/sign-out', cookie, { _csrf: csrf });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
    expect((await get()).status).toBe(401);

    const second = await signIn();
    await tenantry.adminPool.query(
      `UPDATE tenantry.console_sessions SET expires_at = now() - interval '1 second' WHERE expires_at > now()`,
    );
    const expired = await fetch(`${server.url}/console/fleet`, {
      headers: { cookie: second.cookie, accept: 'application/json' },
    });
    expect(expired.status).toBe(401);
  });
});

describe('console tenant list', () => {
  it('walks every sort in both directions page by page, each tenant exactly once, even with equal keys', async () => {
    // 130 tenants created in the same microsecond with the same name: only the id breaks ties.
    await tenantry.adminPool.query(
      `INSERT INTO tenantry.tenants (slug, name, placement_id, created_at)
       SELECT 'page-' || i, 'Same name', (SELECT id FROM tenantry.placements WHERE name = 'shared'), '2026-01-01T00:00:00.123456Z'
         FROM generate_series(1, 130) i`,
    );
    const total = Number((await tenantry.adminPool.query('SELECT count(*) FROM tenantry.tenants')).rows[0].count);
    for (const sort of TENANT_SORTS) {
      for (const dir of ['asc', 'desc'] as const) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await listTenants(tenantry.adminPool, { sort, dir, cursor, limit: 17 });
          seen.push(...page.tenants.map((t) => t.slug));
          cursor = page.nextCursor;
          pages++;
        } while (cursor && pages < 100);
        expect(new Set(seen).size, `${sort} ${dir}`).toBe(total);
        expect(seen.length, `${sort} ${dir}`).toBe(total);
      }
    }
    const found = await listTenants(tenantry.adminPool, { q: 'page-12', sort: 'slug' });
    expect(found.tenants.map((t) => t.slug)).toEqual([
      'page-12',
      'page-120',
      'page-121',
      'page-122',
      'page-123',
      'page-124',
      'page-125',
      'page-126',
      'page-127',
      'page-128',
      'page-129',
    ]);
    expect((await listTenants(tenantry.adminPool, { q: '%' })).tenants).toEqual([]); // LIKE wildcards are text
    expect((await listTenants(tenantry.adminPool, { q: 'SAME NA', limit: 500 })).tenants).toHaveLength(130);
  });
});

describe('console building blocks', () => {
  it('escapes every interpolated value exactly once', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    const inner = html`<b>${'<i>'}</b>`;
    expect(String(html`<p>${inner}${['<', html`<br>`]}${null}${undefined}${false}${3}</p>`)).toBe(
      '<p><b>&lt;i&gt;</b>&lt;<br>3</p>',
    );
  });

  it("gives a tenant's usage per hour that adds up to the performance report's figures", async () => {
    const tenant = await tenantry.tenants.create({ slug: 'series-a', name: 'Series A' });
    const other = await tenantry.tenants.create({ slug: 'series-b', name: 'Series B' });
    const meter = tenantry.usage.meter;
    if (!meter) throw new Error('usage accounting is on by default');
    for (let i = 0; i < 5; i++) meter.recordRequest(tenant, { status: 200, bytesIn: 0, bytesOut: 10, apiKey: true });
    meter.recordRequest(other, { status: 500, bytesIn: 0, bytesOut: 10, apiKey: true });
    const [a, b, none] = await tenantry.usage.series([tenant.id, other.id, randomUUID()], {
      window: '24h',
      bucketSeconds: 3600,
    });
    expect(a?.at.length).toBeGreaterThanOrEqual(24);
    expect(a?.at.every((t, i, all) => i === 0 || t - (all[i - 1] as number) === 3600)).toBe(true);
    const sum = (values: readonly number[] = []) => values.reduce((x, y) => x + y, 0);
    expect(sum(a?.requests)).toBe(5);
    expect(sum(a?.requests)).toBe((await tenantry.usage.performance(tenant.id)).usage.requests);
    expect(sum(b?.requests)).toBe(1);
    expect(sum(none?.requests)).toBe(0);
    await expect(tenantry.usage.series([tenant.id], { bucketSeconds: 5 })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(tenantry.usage.series([tenant.id], { window: '30d' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });
});

interface LiveEvent {
  id: string;
  tenant: string;
  seq: number;
  type: string;
  actor: string | null;
  at: string;
}

/** Opens the console's event stream like an `EventSource` would, and gathers what it sends. */
async function openStream(path: string, headers: Record<string, string>) {
  const controller = new AbortController();
  const response = await fetch(`${server.url}${path}`, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: controller.signal,
  });
  const events: LiveEvent[] = [];
  let done = false;
  if (response.ok && response.body) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    void (async () => {
      let buffered = '';
      try {
        for (;;) {
          const { value, done: end } = await reader.read();
          if (end) break;
          buffered += value;
          let cut = buffered.indexOf('\n\n');
          while (cut >= 0) {
            const frame = buffered.slice(0, cut);
            buffered = buffered.slice(cut + 2);
            for (const line of frame.split('\n')) {
              if (line.startsWith('data: ')) events.push(JSON.parse(line.slice(6)) as LiveEvent);
            }
            cut = buffered.indexOf('\n\n');
          }
        }
      } catch {
        // aborted by close()
      } finally {
        done = true;
      }
    })();
  }
  return {
    response,
    events,
    ended: () => done,
    /** Waits until an event matching `match` has arrived. */
    async waitFor(match: (e: LiveEvent) => boolean): Promise<LiveEvent> {
      await expect.poll(() => events.find(match), { timeout: 15_000, interval: 50 }).toBeDefined();
      return events.find(match) as LiveEvent;
    },
    close: () => controller.abort(),
  };
}

describe('console live feed of every tenant', () => {
  it("shows every tenant's events as they commit, and only the chosen tenant's when filtered", async () => {
    const { cookie } = await signIn();
    const first = await tenantry.tenants.create({ slug: 'live-first', name: 'First' });
    const all = await openStream('/console/live/stream', { cookie });
    expect(all.response.status).toBe(200);
    expect(all.response.headers.get('content-type')).toContain('text/event-stream');
    expect(all.response.headers.get('content-security-policy')).toContain("default-src 'none'");
    // Opened after the first tenant was created: the recent events come first.
    await all.waitFor((e) => e.tenant === 'live-first' && e.type === 'tenant.created');
    const filtered = await openStream('/console/live/stream?tenant=live-first', { cookie });
    expect(filtered.response.status).toBe(200);
    await filtered.waitFor((e) => e.type === 'tenant.created');

    const second = await tenantry.tenants.create({ slug: 'live-second', name: 'Second' });
    const key = await server.request('POST', '/v1/tenants/live-second/api-keys', {
      token: ADMIN,
      body: { name: 'second', environment: 'test' },
    });
    expect(key.status).toBe(201);
    await server.request('POST', '/v1/tenants/live-first/api-keys', {
      token: ADMIN,
      body: { name: 'first', environment: 'test' },
    });
    const secondsKey = await all.waitFor((e) => e.tenant === 'live-second' && e.type === 'api_key.created');
    expect(secondsKey.seq).toBe(2);
    await all.waitFor((e) => e.tenant === 'live-first' && e.type === 'api_key.created');
    await filtered.waitFor((e) => e.type === 'api_key.created');
    // Room for a wrong event to arrive on the filtered stream.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(filtered.events.every((e) => e.tenant === 'live-first')).toBe(true);
    expect(filtered.events.map((e) => e.seq)).toEqual([1, 2]);
    // Newest last on the wire (the page puts each at the top); each once.
    const ids = all.events.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(JSON.stringify(all.events)).not.toContain(second.id);
    expect(JSON.stringify(all.events)).not.toContain(first.id);
    all.close();
    filtered.close();
  });

  it('serves the live page for every tenant or one, and refuses a bad or unknown slug with a code', async () => {
    const { cookie } = await signIn();
    const page = await fetch(`${server.url}/console/live`, { headers: { cookie, accept: 'text/html' } });
    expect(page.status).toBe(200);
    const text = await page.text();
    expect(text).toContain('Events of every tenant');
    expect(text).toContain('data-stream="/console/live/stream"');
    const one = await (await fetch(`${server.url}/console/live?tenant=live-first`, { headers: { cookie } })).text();
    expect(one).toContain('data-stream="/console/live/stream?tenant=live-first"');
    const unknown = await fetch(`${server.url}/console/live?tenant=no-such-tenant`, { headers: { cookie } });
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).not.toContain('data-stream');
    const bad = await fetch(`${server.url}/console/live/stream?tenant=${encodeURIComponent('<x>')}`, {
      headers: { cookie, accept: 'application/json' },
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { code: string }).code).toBe('INVALID_INPUT');
    const missing = await fetch(`${server.url}/console/live/stream?tenant=no-such-tenant`, {
      headers: { cookie, accept: 'application/json' },
    });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe('TENANT_NOT_FOUND');
  });

  it("gives a tenant's API key, the admin bearer token or no cookie nothing of the feed", async () => {
    const key = (
      await server.request('POST', '/v1/tenants/live-first/api-keys', {
        token: ADMIN,
        body: { name: 'reader', environment: 'live', scopes: ['items:read'] },
      })
    ).body.key as string;
    const credentials: Record<string, string>[] = [
      {},
      { authorization: `Bearer ${key}` },
      { 'x-api-key': key },
      { authorization: `Bearer ${ADMIN}` },
    ];
    for (const headers of credentials) {
      for (const path of ['/console/live/stream', '/console/live/stream?tenant=live-first']) {
        const stream = await openStream(path, { ...headers, accept: 'application/json' });
        expect(stream.response.status, path).toBe(401);
        const body = await stream.response.text();
        expect(body).not.toContain('live-first');
        expect(body).not.toContain('data:');
      }
    }
  });
});

describe('console live feed under load', () => {
  it('cuts off a viewer that stops reading instead of queueing for it, and the others go on', async () => {
    const small = await startServer(tenantry, {
      adminToken: ADMIN,
      usage: { snapshotIntervalMs: 0 },
      console: { liveViewerBuffer: 128 * 1024 },
    });
    const { cookie } = await signIn(); // sessions live in the database: valid on both servers
    const tenant = await tenantry.tenants.create({ slug: 'live-flood', name: 'Flood' });
    const port = Number(new URL(small.url).port);
    const stalled = connect(port, '127.0.0.1');
    let received = 0;
    try {
      await once(stalled, 'connect');
      stalled.write(
        `GET /console/live/stream?tenant=live-flood HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncookie: ${cookie}\r\n\r\n`,
      );
      const [head] = (await once(stalled, 'data')) as [Buffer];
      expect(head.toString()).toMatch(/^HTTP\/1\.1 200/);
      stalled.pause(); // a tab that stops reading: the kernel's buffers fill, then the server's
      const healthy = new AbortController();
      const response = await fetch(`${small.url}/console/live/stream?tenant=live-flood`, {
        headers: { cookie },
        signal: healthy.signal,
      });
      const FLOOD = 100_000; // about 11 MB of frames: well over the kernel's buffers and the limit
      let last = 0;
      let healthyBytes = 0;
      const draining = (async () => {
        const lines = response.body?.pipeThrough(new TextDecoderStream()).getReader();
        let tail = '';
        for (;;) {
          const chunk = await lines?.read();
          if (!chunk || chunk.done) return;
          tail += chunk.value;
          healthyBytes += chunk.value.length;
          const cut = tail.lastIndexOf('\n\n');
          if (cut < 0) continue;
          for (const m of tail.slice(0, cut).matchAll(/"seq":(\d+)/g)) last = Number(m[1]);
          tail = tail.slice(cut + 2);
        }
      })().catch(() => {});
      // In commits of 2,000: one transaction moving a tenant's head 100,000 times walks an
      // ever longer chain of row versions (quadratic).
      for (let i = 0; i < FLOOD / 2000; i++) {
        await tenantry.adminPool.query(
          `INSERT INTO tenantry.outbox (tenant_id, type) SELECT $1, 'flood' FROM generate_series(1, 2000)`,
          [tenant.id],
        );
      }
      // The reading viewer gets every event (the same writes reached the stalled one).
      await expect.poll(() => last, { timeout: 90_000, interval: 200 }).toBe(FLOOD + 1);
      healthy.abort();
      await draining;
      // The stalled one was cut off: reading again, it finds what the kernel held, then the end.
      stalled.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      const closed = once(stalled, 'close');
      stalled.resume();
      await closed;
      expect(received).toBeGreaterThan(0);
      expect(received).toBeLessThan(healthyBytes * 0.75);
    } finally {
      stalled.destroy();
      await small.close();
    }
  }, 180_000);
});

describe('console database maintenance in the background', () => {
  /** Polls the run's panel as htmx does until it is no longer running; returns its HTML. */
  async function finished(cookie: string, location: string): Promise<string> {
    const run = new URL(location, server.url).searchParams.get('run');
    expect(run).toMatch(/^[0-9a-f-]{36}$/);
    let panel = '';
    await expect
      .poll(
        async () => {
          const response = await fetch(`${server.url}/console/database/maintenance/${run}`, {
            headers: { cookie, 'hx-request': 'true' },
          });
          expect(response.status).toBe(200);
          panel = await response.text();
          return /data-state="([a-z]+)"/.exec(panel)?.[1];
        },
        { timeout: 30_000, interval: 100 },
      )
      .not.toBe('running');
    return panel;
  }

  it('runs an analyze in the background, shows it running, then done, and audits it', async () => {
    const { cookie, csrf } = await signIn();
    const started = await post('/console/database/maintain', cookie, {
      operation: 'analyze',
      confirm: 'analyze',
      _csrf: csrf,
    });
    expect(started.status).toBe(303);
    const location = started.headers.get('location') as string;
    expect(location).toMatch(/^\/console\/database\?run=/);
    const panel = await finished(cookie, location);
    expect(panel).toContain('data-state="done"');
    expect(panel).toMatch(/analyze of <code>shared<\/code> done in/);
    expect(panel).toContain('ANALYZE');
    // The page shows the same run without htmx; the progress route sends a browser there.
    const page = await (await fetch(`${server.url}${location}`, { headers: { cookie } })).text();
    expect(page).toContain('data-state="done"');
    const run = new URL(location, server.url).searchParams.get('run');
    const plain = await fetch(`${server.url}/console/database/maintenance/${run}`, {
      headers: { cookie },
      redirect: 'manual',
    });
    expect(plain.status).toBe(303);
    const { rows } = await tenantry.adminPool.query<{ actor: string; outcome: string }>(
      `SELECT actor, details->>'outcome' AS outcome FROM tenantry.audit_log WHERE action = 'db.analyze' ORDER BY id DESC LIMIT 1`,
    );
    expect(rows[0]?.actor).toMatch(/^admin-console:[0-9a-f]{8}$/);
    expect(rows[0]?.outcome).toBe('completed');
  });

  it("shows a tenant's vacuum as running while it waits, refuses a second one on that target, then shows it done", async () => {
    const { cookie, csrf } = await signIn();
    const tenant = await tenantry.tenants.create({ slug: 'maint-schema', name: 'Schema', tier: 'schema' });
    // Hold a lock VACUUM must wait for, so the run is seen running.
    const blocker = await tenantry.adminPool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE ${tenant.schemaName}.items IN SHARE UPDATE EXCLUSIVE MODE`);
      const started = await post('/console/database/maintain', cookie, {
        operation: 'vacuum',
        confirm: 'vacuum',
        tenant: 'maint-schema',
        _csrf: csrf,
      });
      expect(started.status).toBe(303);
      const location = started.headers.get('location') as string;
      const run = new URL(location, server.url).searchParams.get('run');
      await expect
        .poll(
          async () => {
            const { rows } = await tenantry.adminPool.query(
              `SELECT 1 FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'VACUUM%'`,
            );
            return rows.length;
          },
          { timeout: 15_000 },
        )
        .toBe(1);
      const running = await (
        await fetch(`${server.url}/console/database/maintenance/${run}`, { headers: { cookie, 'hx-request': 'true' } })
      ).text();
      expect(running).toContain('data-state="running"');
      expect(running).toContain('hx-trigger="every 1s"');
      const again = await post('/console/database/maintain', cookie, {
        operation: 'analyze',
        confirm: 'analyze',
        tenant: 'maint-schema',
        _csrf: csrf,
      });
      expect(again.status).toBe(409);
      expect(await again.text()).toContain('MAINTENANCE_IN_PROGRESS');
      await blocker.query('ROLLBACK');
      const panel = await finished(cookie, location);
      expect(panel).toContain('data-state="done"');
      expect(panel).toContain('VACUUM (ANALYZE)');
      expect(panel).not.toContain('hx-trigger');
    } finally {
      blocker.release();
    }
  });

  it("shows PostgreSQL's phase and blocks while an analyze runs", async () => {
    const { cookie, csrf } = await signIn();
    const owner = `"${db.roles.owner}"`;
    // A table whose expression index sleeps per row once a delay is set: ANALYZE then spends
    // seconds in its "computing statistics" phase, long enough to be seen.
    await tenantry.adminPool.query(`
      CREATE TABLE public.console_slow (n int);
      CREATE TABLE public.console_slow_delay (seconds float8 NOT NULL);
      CREATE FUNCTION public.console_slow_key(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_catalog.pg_sleep(seconds) FROM public.console_slow_delay; RETURN n; END $$;
      CREATE INDEX console_slow_key_idx ON public.console_slow (public.console_slow_key(n));
      INSERT INTO public.console_slow SELECT generate_series(1, 4);
      ALTER TABLE public.console_slow OWNER TO ${owner};
      ALTER TABLE public.console_slow_delay OWNER TO ${owner};
      ALTER FUNCTION public.console_slow_key(int) OWNER TO ${owner};
      INSERT INTO public.console_slow_delay VALUES (0.8);`);
    try {
      const started = await post('/console/database/maintain', cookie, {
        operation: 'analyze',
        confirm: 'analyze',
        _csrf: csrf,
      });
      expect(started.status).toBe(303);
      const location = started.headers.get('location') as string;
      const run = new URL(location, server.url).searchParams.get('run');
      let panel = '';
      await expect
        .poll(
          async () => {
            panel = await (
              await fetch(`${server.url}/console/database/maintenance/${run}`, {
                headers: { cookie, 'hx-request': 'true' },
              })
            ).text();
            return panel;
          },
          { timeout: 15_000, interval: 200 },
        )
        .toContain('computing statistics');
      expect(panel).toContain('data-state="running"');
      expect(panel).toMatch(/<code>analyze<\/code> of <code>(public\.)?console_slow<\/code>: computing statistics/);
      expect(panel).toMatch(/<progress id="maint-bar" max="\d+" value="\d+">/);
      expect(panel).toMatch(/id="maint-blocks">\d+ of \d+ blocks/);
      expect(await finished(cookie, location)).toContain('data-state="done"');
    } finally {
      await tenantry.adminPool.query(
        'DROP TABLE public.console_slow, public.console_slow_delay; DROP FUNCTION public.console_slow_key(int)',
      );
    }
  });

  it('refuses bad input and a missing CSRF token with a code, and runs nothing', async () => {
    const { cookie, csrf } = await signIn();
    const count = async () =>
      Number(
        (await tenantry.adminPool.query(`SELECT count(*) FROM tenantry.audit_log WHERE action LIKE 'db.%'`)).rows[0]
          .count,
      );
    const before = await count();
    await tenantry.tenants.create({ slug: 'maint-pool', name: 'Pool' });
    const cases: [Record<string, string>, number, string][] = [
      [{ operation: 'analyze', confirm: 'analyze' }, 403, 'CONSOLE_CSRF'],
      [{ operation: 'reindex', confirm: 'reindex', _csrf: csrf }, 400, 'INVALID_INPUT'],
      [{ operation: 'vacuum', confirm: 'analyze', _csrf: csrf }, 400, 'type vacuum to confirm'],
      [{ operation: 'analyze', confirm: 'analyze', tenant: 'no-such-tenant', _csrf: csrf }, 404, 'TENANT_NOT_FOUND'],
      [{ operation: 'analyze', confirm: 'analyze', tenant: 'maint-pool', _csrf: csrf }, 400, 'pool tier'],
    ];
    for (const [form, status, text] of cases) {
      const response = await post('/console/database/maintain', cookie, form);
      expect(response.status, JSON.stringify(form)).toBe(status);
      expect(await response.text()).toContain(text);
    }
    const foreign = await post(
      '/console/database/maintain',
      cookie,
      { operation: 'analyze', confirm: 'analyze', _csrf: csrf },
      'https://evil.example',
    );
    expect(foreign.status).toBe(403);
    const unknownRun = await fetch(`${server.url}/console/database/maintenance/${randomUUID()}`, {
      headers: { cookie, 'hx-request': 'true', accept: 'application/json' },
    });
    expect(unknownRun.status).toBe(404);
    expect(((await unknownRun.json()) as { code: string }).code).toBe('NOT_FOUND');
    const noSession = await fetch(`${server.url}/console/database/maintenance/${randomUUID()}`, {
      headers: { accept: 'application/json' },
    });
    expect(noSession.status).toBe(401);
    expect(await count()).toBe(before);
  });
});
