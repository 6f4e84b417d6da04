import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test-support/database.ts';
import { startServer, type TestServer } from '../../../test-support/http.ts';
import { itemsMigrations } from '../src/example/items.ts';
import { type TenantMigration, Tenantry } from '../src/index.ts';

/**
 * The operator console in real Chromium (Debian's, driven by playwright-core) against the
 * real server and PostgreSQL: sign-in, tenants, lifecycle, keys, usage charts, audit, the
 * fleet's canary migration, sessions and CSRF, accessibility (axe-core) and screenshots at
 * desktop and phone size (written to `.console-screenshots/`, ignored by git).
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) {
  console.warn(
    `console browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`,
  );
}

const ADMIN = 'console-admin-token-0123456789abcdef';
const SHOTS = join(import.meta.dirname, '..', '..', '..', '.console-screenshots');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const noteMigration: TenantMigration = {
  id: 'example_900_console_note',
  up: (m) => m.query('ALTER TABLE items ADD COLUMN console_note text'),
};

describe.skipIf(!hasChromium)('operator console in Chromium', () => {
  let db: TestDatabase;
  let base: Tenantry<unknown>;
  let next: Tenantry<unknown>;
  let server: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let axeSource: string;
  const cspViolations: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('console');
    const connect = (migrations: readonly TenantMigration[]) =>
      Tenantry.connect({ databaseUrl: db.url, secret: db.secret, roles: db.roles, migrations: [...migrations] });
    base = await connect(itemsMigrations);
    await base.setup();
    await base.migrate();
    // Schema-tier tenants on the current release: the fleet page will find them behind.
    for (const slug of ['fleet-a', 'fleet-b', 'fleet-c', 'fleet-d']) {
      await base.tenants.create({ slug, name: `Fleet ${slug}`, tier: 'schema' });
    }
    // The next release: one migration more. The server runs it, as after a deploy.
    next = await connect([...itemsMigrations, noteMigration]);
    server = await startServer(next, { adminToken: ADMIN, usage: { snapshotIntervalMs: 0 } });
    axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
    await mkdir(SHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    context = await browser.newContext({ viewport: DESKTOP, colorScheme: 'light' });
    page = await context.newPage();
    page.on('console', (m) => {
      if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
    });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await next?.close();
    await base?.close();
    await db?.drop();
  });

  const url = (path: string) => `${server.url}${path}`;

  /** axe-core in the page (evaluated through the DevTools protocol, which the page's CSP does not govern). */
  async function seriousViolations(p: Page): Promise<string[]> {
    await p.evaluate(axeSource);
    const result = await p.evaluate(async () => {
      // biome-ignore lint/suspicious/noExplicitAny: axe is the global the evaluated source defined
      const { axe, document } = globalThis as any;
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v: { id: string; impact: string; nodes: { target: string[] }[] }) => ({
        id: v.id,
        impact: v.impact,
        nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3),
      }));
    });
    return result
      .filter((v: { impact: string }) => v.impact === 'serious' || v.impact === 'critical')
      .map((v: { id: string; nodes: string[] }) => `${v.id}: ${v.nodes.join(', ')}`);
  }

  /** Accessibility check and screenshots of the current page, at desktop and phone size, light and dark. */
  async function checkPage(name: string): Promise<void> {
    expect(await seriousViolations(page), `axe on ${name}`).toEqual([]);
    await page.screenshot({ path: join(SHOTS, `${name}-desktop.png`), fullPage: false });
    await page.setViewportSize(PHONE);
    expect(await seriousViolations(page), `axe on ${name} (phone)`).toEqual([]);
    await page.screenshot({ path: join(SHOTS, `${name}-phone.png`), fullPage: false });
    await page.emulateMedia({ colorScheme: 'dark' });
    expect(await seriousViolations(page), `axe on ${name} (phone, dark)`).toEqual([]);
    await page.screenshot({ path: join(SHOTS, `${name}-phone-dark.png`), fullPage: false });
    await page.setViewportSize(DESKTOP);
    await page.screenshot({ path: join(SHOTS, `${name}-desktop-dark.png`), fullPage: false });
    await page.emulateMedia({ colorScheme: 'light' });
  }

  const api = (method: string, path: string, body?: unknown) =>
    server.request(method, path, { token: ADMIN, ...(body !== undefined ? { body } : {}) });

  it('sends a browser without a session to sign-in, and refuses a wrong admin token', async () => {
    await page.goto(url('/console/tenants'));
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
    await checkPage('sign-in');
    await page.fill('#token', 'not-the-token');
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('[role=alert]'), { timeout: 15_000 }).toContain('not the admin token');
    expect(await context.cookies()).toEqual([]);
  });

  it('signs in with the admin token into an HttpOnly, SameSite=Strict cookie', async () => {
    await page.fill('#token', ADMIN);
    await Promise.all([page.waitForURL('**/console/tenants'), page.click('button[type=submit]')]);
    const [cookie] = await context.cookies();
    expect(cookie?.name).toBe('tenantry_console');
    expect(cookie?.httpOnly).toBe(true);
    expect(cookie?.sameSite).toBe('Strict');
    expect(cookie?.path).toBe('/console');
    const response = await page.request.get(url('/console/tenants'));
    expect(response.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(response.headers()['content-security-policy']).not.toContain('unsafe-inline');
  });

  it('creates a tenant (tier and plan) and finds it in the list by search', async () => {
    await page.fill('#new-slug', 'console-acme');
    await page.fill('#new-name', 'Console <Acme> & Co');
    await page.selectOption('#new-tier', 'pool');
    await page.selectOption('#new-plan', 'pro');
    await Promise.all([
      page.waitForURL('**/console/tenants/console-acme?created=1'),
      page.getByRole('button', { name: 'Create', exact: true }).click(),
    ]);
    expect(await page.textContent('h1')).toContain('Console <Acme> & Co'); // escaped, shown as text
    const fromApi = await api('GET', '/v1/tenants/console-acme');
    expect(fromApi.status).toBe(200);
    expect(fromApi.body).toMatchObject({ slug: 'console-acme', plan: 'pro', tier: 'pool', status: 'active' });

    await page.goto(url('/console/tenants'));
    await page.fill('#q', 'console-ac');
    await expect.poll(() => page.locator('#tenant-table tbody tr').count(), { timeout: 15_000 }).toBe(1);
    expect(await page.textContent('#tenant-table tbody')).toContain('console-acme');
    expect(new URL(page.url()).searchParams.get('q')).toBe('console-ac'); // htmx pushed the search into the URL
    await page.fill('#q', 'no-such-tenant-anywhere');
    await expect
      .poll(() => page.textContent('#tenant-table tbody'), { timeout: 15_000 })
      .toContain('No tenant matches');
    await page.fill('#q', '');
    await expect.poll(() => page.locator('#tenant-table tbody tr').count(), { timeout: 15_000 }).toBe(5);
    await checkPage('tenants');
  });

  it('suspends and resumes the tenant behind a typed confirmation, and the API agrees', async () => {
    await page.goto(url('/console/tenants/console-acme'));
    const suspend = page.locator('form[action$="/suspend"]');
    expect(await suspend.locator('button').isDisabled()).toBe(true);
    await suspend.locator('input[name=confirm]').fill('console-acm');
    expect(await suspend.locator('button').isDisabled()).toBe(true);
    await suspend.locator('input[name=confirm]').fill('console-acme');
    await Promise.all([page.waitForLoadState('load'), suspend.locator('button').click()]);
    await expect.poll(() => page.textContent('#tenant-status'), { timeout: 15_000 }).toContain('suspended');
    expect((await api('GET', '/v1/tenants/console-acme')).body.status).toBe('suspended');

    const resume = page.locator('form[action$="/resume"]');
    await resume.locator('input[name=confirm]').fill('console-acme');
    await Promise.all([page.waitForLoadState('load'), resume.locator('button').click()]);
    await expect.poll(() => page.textContent('#tenant-status'), { timeout: 15_000 }).toContain('active');
    expect((await api('GET', '/v1/tenants/console-acme')).body.status).toBe('active');
  });

  it('refuses a lifecycle change without the typed confirmation, even when the script is bypassed', async () => {
    const response = await page.request.post(url('/console/tenants/console-acme/suspend'), {
      form: { _csrf: await csrfToken(), confirm: 'wrong' },
      headers: { origin: server.url },
    });
    expect(response.status()).toBe(400);
    expect((await api('GET', '/v1/tenants/console-acme')).body.status).toBe('active');
  });

  async function csrfToken(): Promise<string> {
    return (await page.locator('input[name=_csrf]').first().getAttribute('value')) as string;
  }

  it('creates a key (shown once) that works, and revokes it so the API refuses it', async () => {
    await page.goto(url('/console/tenants/console-acme'));
    await page.fill('#key-name', 'console key');
    await page.selectOption('#key-env', 'test');
    await page.fill('#key-scopes', 'items:read');
    await Promise.all([
      page.waitForLoadState('load'),
      page.getByRole('button', { name: 'Create key', exact: true }).click(),
    ]);
    const key = (await page.textContent('#new-key'))?.trim() as string;
    expect(key).toMatch(/^tnt_test_/);
    expect((await server.request('GET', '/v1/items', { token: key })).status).toBe(200);
    await page.goto(url('/console/tenants/console-acme'));
    expect(await page.locator('#new-key').count()).toBe(0); // shown once
    expect(await page.content()).not.toContain(key);

    await Promise.all([page.waitForLoadState('load'), page.click('button[aria-label="Revoke key console key"]')]);
    await expect
      .poll(() => page.textContent('section[aria-labelledby=keys-heading] table'), { timeout: 15_000 })
      .toContain('revoked');
    await expect
      .poll(async () => (await server.request('GET', '/v1/items', { token: key })).status, { timeout: 5000 })
      .toBe(401);
  });

  it("cannot revoke another tenant's key through this tenant's page", async () => {
    await api('POST', '/v1/tenants', { slug: 'console-other', name: 'Other' });
    const other = await api('POST', '/v1/tenants/console-other/api-keys', {
      name: 'other',
      environment: 'test',
      scopes: ['items:read'],
    });
    const response = await page.request.post(
      url(`/console/tenants/console-acme/api-keys/${other.body.apiKey.id}/revoke`),
      {
        form: { _csrf: await csrfToken() },
        headers: { origin: server.url },
      },
    );
    expect(response.status()).toBe(404);
    expect(await response.text()).not.toContain('console-other');
    expect((await server.request('GET', '/v1/items', { token: other.body.key })).status).toBe(200);
  });

  it('draws the usage chart from the load the test made, matching the API', async () => {
    const made = await api('POST', '/v1/tenants/console-acme/api-keys', {
      name: 'load',
      environment: 'test',
      scopes: ['items:read'],
    });
    const requests = 7;
    for (let i = 0; i < requests; i++) {
      expect((await server.request('GET', '/v1/items', { token: made.body.key })).status).toBe(200);
    }
    await page.goto(url('/console/tenants/console-acme'));
    await page.waitForSelector('#chart-requests canvas'); // uPlot drew it
    const spec = JSON.parse((await page.getAttribute('#chart-requests', 'data-chart')) as string) as {
      x: number[];
      series: { label: string; values: number[] }[];
    };
    const charted = (spec.series[0]?.values ?? []).reduce((a, b) => a + b, 0);
    const performance = await api('GET', '/v1/tenants/console-acme/performance?window=24h');
    expect(performance.status).toBe(200);
    // The key checks above (one 200 with the console's key, the revoked key's refusals are not admitted) and these.
    expect(charted).toBe(performance.body.usage.requests);
    expect(charted).toBeGreaterThanOrEqual(requests);
    expect(spec.x.length).toBeGreaterThanOrEqual(24);
    const dbTime = JSON.parse((await page.getAttribute('#chart-dbtime', 'data-chart')) as string) as typeof spec;
    const chartedMs = (dbTime.series[0]?.values ?? []).reduce((a, b) => a + b, 0);
    expect(chartedMs).toBeCloseTo(performance.body.usage.dbTimeMs, 1);
    expect(chartedMs).toBeGreaterThan(0);
    // The list's sparkline says the same total.
    await page.goto(url('/console/tenants?q=console-acme'));
    expect(await page.getAttribute('#tenant-table tbody tr td:nth-child(8) svg', 'aria-label')).toContain(
      `${performance.body.usage.requests} in total`,
    );
    await page.goto(url('/console/tenants/console-acme'));
    await page.waitForSelector('#chart-requests canvas');
    await checkPage('tenant-detail');
  });

  it('shows an audit entry for each action, as the API lists them', async () => {
    const fromApi = await api('GET', '/v1/tenants/console-acme/audit?limit=200');
    const actions = new Set((fromApi.body.entries as { action: string }[]).map((e) => e.action));
    for (const expected of [
      'tenant.created',
      'tenant.suspended',
      'tenant.resumed',
      'api_key.created',
      'api_key.revoked',
    ]) {
      expect(actions, expected).toContain(expected);
    }
    await page.goto(url('/console/tenants/console-acme'));
    const shown = await page.locator('#audit tbody td:nth-child(2)').allTextContents();
    for (const action of actions) expect(shown).toContain(action);
    const actors = await page.locator('#audit tbody td:nth-child(3)').allTextContents();
    expect(actors.some((a) => /^admin-console:[0-9a-f]{8}$/.test(a))).toBe(true);
    await page.fill('#audit-action', 'tenant.suspended');
    await Promise.all([
      page.waitForLoadState('load'),
      page.getByRole('button', { name: 'Filter', exact: true }).click(),
    ]);
    expect(await page.locator('#audit tbody td:nth-child(2)').allTextContents()).toEqual(['tenant.suspended']);
  });

  it('exports the tenant and downloads the archive, watching the job until it is done', async () => {
    await page.goto(url('/console/tenants/console-acme'));
    expect(await page.textContent('#export-panel')).toContain('No export yet');
    await Promise.all([
      page.waitForLoadState('load'),
      page.getByRole('button', { name: 'Start an export', exact: true }).click(),
    ]);
    await page.waitForSelector('#export-download', { timeout: 30_000 }); // htmx polls the job until it is done
    const href = (await page.getAttribute('#export-download', 'href')) as string;
    const archive = await page.request.get(url(href));
    expect(archive.status()).toBe(200);
    expect(archive.headers()['content-type']).toBe('application/x-tar');
    const body = await archive.body();
    expect(body.subarray(0, 100).toString('latin1')).toContain('manifest.json'); // the first tar entry
    const jobId = href.split('/').at(-2) as string;
    const fromApi = await api('GET', `/v1/tenants/console-acme/exports/${jobId}`);
    expect(fromApi.body).toMatchObject({ status: 'done', bytes: body.length });
    // Another tenant's path does not reach this tenant's archive.
    expect((await page.request.get(url(href.replace('console-acme', 'console-other')))).status()).toBe(404);
  });

  it('runs a canary migration and shows every target reaching head', async () => {
    await page.goto(url('/console/fleet'));
    const behind = Number(await page.getAttribute('#behind-count', 'data-behind'));
    expect(behind).toBeGreaterThanOrEqual(5); // the shared tables and four tenant schemas
    expect(behind).toBe((await next.planFleet()).targets.length);
    await checkPage('fleet');
    await page.fill('#canary', '2');
    await Promise.all([
      page.waitForLoadState('load'),
      page.getByRole('button', { name: 'Migrate the fleet', exact: true }).click(),
    ]);
    await page.waitForSelector('#fleet-result', { timeout: 30_000 }); // htmx polls the progress until done
    expect(await page.getAttribute('#fleet-result', 'data-state')).toBe('done');
    expect(await page.textContent('#fleet-result')).toContain('canary of 2 passed');
    expect(await page.getAttribute('#fleet-counts strong', 'data-done')).toBe(String(behind));
    await page.reload();
    expect(await page.textContent('#all-at-head')).toContain('Every target is at head');
    expect((await next.planFleet()).targets).toEqual([]);
    await page.screenshot({ path: join(SHOTS, 'fleet-done-desktop.png') });
  });

  it("shows database health and statistics, and runs an analyze in the background with PostgreSQL's progress", async () => {
    await page.goto(url('/console/database'));
    expect(await page.textContent('#db-health')).toMatch(/ok|warning|critical/);
    await page.waitForSelector('#advice:not([hx-get])');
    await checkPage('database');
    // A shared table whose expression index sleeps per row: ANALYZE spends seconds computing
    // its statistics, so the polled panel shows PostgreSQL's phase.
    const owner = `"${db.roles.owner}"`;
    await next.adminPool.query(`
      CREATE TABLE public.console_slow (n int);
      CREATE TABLE public.console_slow_delay (seconds float8 NOT NULL);
      CREATE FUNCTION public.console_slow_key(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_catalog.pg_sleep(seconds) FROM public.console_slow_delay; RETURN n; END $$;
      CREATE INDEX console_slow_key_idx ON public.console_slow (public.console_slow_key(n));
      INSERT INTO public.console_slow SELECT generate_series(1, 5);
      ALTER TABLE public.console_slow OWNER TO ${owner};
      ALTER TABLE public.console_slow_delay OWNER TO ${owner};
      ALTER FUNCTION public.console_slow_key(int) OWNER TO ${owner};
      INSERT INTO public.console_slow_delay VALUES (0.8);`);
    try {
      await page.selectOption('#maint-op', 'analyze');
      await page.fill('#maint-confirm', 'analyze');
      await Promise.all([
        page.waitForURL('**/console/database?run=*'),
        page.getByRole('button', { name: 'Run', exact: true }).click(),
      ]);
      // The page came back at once; the panel polls the run.
      await expect
        .poll(() => page.textContent('#maint-progress'), { timeout: 15_000 })
        .toContain('computing statistics');
      expect(await page.getAttribute('#maint-progress', 'data-state')).toBe('running');
      expect(await page.textContent('#maint-blocks')).toMatch(/\d+ of \d+ blocks/);
      await page.locator('#maint-progress').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(SHOTS, 'database-progress-desktop.png') });
      await page.waitForSelector('#maint-progress[data-state="done"]', { timeout: 30_000 });
      expect(await page.textContent('#maint-progress')).toContain('analyze of shared done');
      expect(await page.getAttribute('#maint-progress', 'hx-get')).toBeNull();
    } finally {
      await next.adminPool.query(
        'DROP TABLE public.console_slow, public.console_slow_delay; DROP FUNCTION public.console_slow_key(int)',
      );
    }
  });

  it("shows a schema tenant's vacuum running while it waits for a lock, then done", async () => {
    const tenant = await next.tenants.get('fleet-a');
    // Hold a lock VACUUM waits for, so the running panel is seen, and polled.
    const blocker = await next.adminPool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE ${tenant.schemaName}.items IN SHARE UPDATE EXCLUSIVE MODE`);
      await page.goto(url('/console/database'));
      await page.selectOption('#maint-op', 'vacuum');
      await page.fill('#maint-tenant', 'fleet-a');
      await page.fill('#maint-confirm', 'vacuum');
      await Promise.all([
        page.waitForURL('**/console/database?run=*'),
        page.getByRole('button', { name: 'Run', exact: true }).click(),
      ]);
      expect(await page.getAttribute('#maint-progress', 'data-state')).toBe('running');
      expect(await page.textContent('#maint-phase')).toContain('Running');
      await checkPage('database-maintenance');
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    await page.waitForSelector('#maint-progress[data-state="done"]', { timeout: 30_000 });
    expect(await page.textContent('#maint-progress')).toMatch(/vacuum of schema\/.+ done in/);
    await page.screenshot({ path: join(SHOTS, 'database-maintenance-done-desktop.png') });
  });

  it("shows every tenant's events live, and only the filtered tenant's", async () => {
    await page.goto(url('/console/live'));
    expect(await page.textContent('#live-heading')).toContain('every tenant');
    await expect.poll(() => page.textContent('#live-state'), { timeout: 15_000 }).toContain('Following');
    // The recent events come first (earlier keys among them): each new one is known by its
    // actor, the admin API request that caused it.
    const created = async (tenant: string) => {
      const response = await api('POST', `/v1/tenants/${tenant}/api-keys`, { name: 'live', environment: 'test' });
      return `#live-feed li[data-tenant="${tenant}"][data-type="api_key.created"]:has-text("admin-api:${response.headers.get('x-request-id')}")`;
    };
    const other = await created('console-other');
    const acme = await created('console-acme');
    await page.waitForSelector(other, { timeout: 15_000 });
    await page.waitForSelector(acme, { timeout: 15_000 });
    // Newest first.
    expect(await page.getAttribute('#live-feed li:first-child', 'data-tenant')).toBe('console-acme');
    await checkPage('live-all');
    await page.fill('#live-tenant', 'console-acme');
    await Promise.all([page.waitForURL('**/console/live?tenant=console-acme'), page.click('text=Filter')]);
    await expect.poll(() => page.textContent('#live-state'), { timeout: 15_000 }).toContain('Following');
    const before = await page.locator('#live-feed li').count();
    expect(before).toBeGreaterThan(0); // the tenant's recent events come first
    await api('POST', '/v1/tenants/console-other/api-keys', { name: 'not shown', environment: 'test' });
    await api('POST', '/v1/tenants/console-acme/api-keys', { name: 'shown', environment: 'test' });
    await expect.poll(() => page.locator('#live-feed li').count(), { timeout: 15_000 }).toBe(before + 1);
    await new Promise((resolve) => setTimeout(resolve, 500)); // room for a wrong event to arrive
    expect(await page.locator('#live-feed li:not([data-tenant="console-acme"])').count()).toBe(0);
    expect(await page.locator('#live-feed li').count()).toBe(before + 1);
    await checkPage('live');
  });

  it('met no Content-Security-Policy violation on any page', () => {
    expect(cspViolations).toEqual([]);
  });

  it('refuses a change without the CSRF token or from another origin, and changes nothing', async () => {
    const token = await csrfToken();
    const missing = await page.request.post(url('/console/tenants/console-acme/suspend'), {
      form: { confirm: 'console-acme' },
      headers: { origin: server.url },
    });
    expect(missing.status()).toBe(403);
    const wrong = await page.request.post(url('/console/tenants/console-acme/suspend'), {
      form: { confirm: 'console-acme', _csrf: `${token.slice(0, -1)}x` },
      headers: { origin: server.url },
    });
    expect(wrong.status()).toBe(403);
    const foreign = await page.request.post(url('/console/tenants/console-acme/suspend'), {
      form: { confirm: 'console-acme', _csrf: token },
      headers: { origin: 'https://evil.example' },
    });
    expect(foreign.status()).toBe(403);
    expect((await api('GET', '/v1/tenants/console-acme')).body.status).toBe('active');
  });

  it('refuses an expired session and a signed-out one', async () => {
    await next.adminPool.query(`UPDATE tenantry.console_sessions SET expires_at = now() - interval '1 second'`);
    await page.goto(url('/console/fleet'));
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
    const [stale] = await context.cookies();
    await page.fill('#token', ADMIN);
    await Promise.all([page.waitForURL('**/console/tenants'), page.click('button[type=submit]')]);
    const [fresh] = await context.cookies();
    expect(fresh?.value).not.toBe(stale?.value);
    const byCookie = (cookie: string) =>
      fetch(url('/console/tenants'), { headers: { cookie: `tenantry_console=${cookie}`, accept: 'application/json' } });
    expect((await byCookie(stale?.value as string)).status).toBe(401);
    expect((await byCookie(fresh?.value as string)).status).toBe(200);
    await Promise.all([
      page.waitForURL('**/console/sign-in'),
      page.getByRole('button', { name: 'Sign out', exact: true }).click(),
    ]);
    expect((await byCookie(fresh?.value as string)).status).toBe(401);
    await page.goto(url('/console/tenants'));
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
  });

  it("a tenant's API key or user token reaches no console route, and the public assets reveal no data", async () => {
    const key = (
      await api('POST', '/v1/tenants/console-acme/api-keys', {
        name: 'all',
        environment: 'live',
        scopes: ['items:read'],
      })
    ).body.key as string;
    const tenant = await next.tenants.get('console-acme');
    await next.users.create(tenant.id, {
      email: 'owner@acme.test',
      password: 'correct horse battery staple',
      role: 'owner',
    });
    const login = await server.request('POST', '/v1/auth/login', {
      body: { tenant: 'console-acme', email: 'owner@acme.test', password: 'correct horse battery staple' },
    });
    expect(login.status).toBe(200);
    const credentials = [key, login.body.accessToken as string, ADMIN];
    const routes: [string, string][] = [
      ['GET', '/console'],
      ['GET', '/console/tenants'],
      ['GET', '/console/tenants?q=console'],
      ['GET', '/console/tenants/console-acme'],
      ['GET', '/console/fleet'],
      ['GET', '/console/fleet/progress'],
      ['GET', '/console/database'],
      ['GET', '/console/database/advice'],
      ['GET', `/console/tenants/console-acme/exports/${randomUUID()}/download`],
      ['POST', '/console/tenants/console-acme/exports'],
      ['GET', '/console/live'],
      ['GET', '/console/live?tenant=console-acme'],
      ['GET', '/console/live/stream'],
      ['GET', '/console/live/stream?tenant=console-acme'],
      ['GET', `/console/database/maintenance/${randomUUID()}`],
      ['POST', '/console/tenants'],
      ['POST', '/console/tenants/console-acme/suspend'],
      ['POST', '/console/tenants/console-acme/api-keys'],
      ['POST', '/console/fleet/migrate'],
      ['POST', '/console/database/maintain'],
      ['POST', '/console/sign-out'],
    ];
    for (const credential of credentials) {
      for (const [method, path] of routes) {
        for (const header of [{ authorization: `Bearer ${credential}` }, { 'x-api-key': credential }]) {
          const response = await fetch(url(path), {
            method,
            redirect: 'manual',
            headers: {
              ...header,
              accept: 'text/html',
              ...(method === 'POST' ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
            },
            ...(method === 'POST' ? { body: 'confirm=console-acme&slug=x&name=x' } : {}),
          });
          const text = await response.text();
          expect([303, 401], `${method} ${path}`).toContain(response.status);
          if (response.status === 303 && path !== '/console')
            expect(response.headers.get('location')).toBe('/console/sign-in');
          expect(text, `${method} ${path}`).not.toContain('console-acme');
          expect(text).not.toContain(tenant.id);
        }
      }
    }
    expect((await api('GET', '/v1/tenants/console-acme')).body.status).toBe('active');
    for (const asset of ['console.js', 'console.css', 'htmx.min.js', 'uPlot.iife.min.js', 'uPlot.min.css']) {
      const response = await fetch(url(`/console/assets/${asset}`), { headers: { authorization: `Bearer ${key}` } });
      expect(response.status, asset).toBe(200);
      const text = await response.text();
      expect(text).not.toContain('console-acme');
      expect(text).not.toContain(tenant.id);
    }
    expect((await fetch(url('/console/assets/..%2F..%2Fpackage.json'))).status).toBe(404);
  });
});
