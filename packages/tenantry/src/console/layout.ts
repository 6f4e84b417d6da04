import { type Html, html } from './html.ts';
import type { ConsoleSession } from './session-store.ts';

/** The console's pages, in the order of the navigation. */
export const NAV = [
  { id: 'tenants', href: '/console/tenants', label: 'Tenants' },
  { id: 'fleet', href: '/console/fleet', label: 'Fleet' },
  { id: 'database', href: '/console/database', label: 'Database' },
  { id: 'live', href: '/console/live', label: 'Live' },
] as const;

export type NavId = (typeof NAV)[number]['id'];

/**
 * The Content-Security-Policy of every console response: scripts, styles and connections
 * from this origin only, no inline script or style, no framing, forms post back here only.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

// htmx: no indicator <style> element (the CSP refuses inline style), no eval, and no
// history snapshots in localStorage (pages hold tenant data).
const HTMX_CONFIG = JSON.stringify({
  includeIndicatorStyles: false,
  allowEval: false,
  allowScriptTags: false,
  historyCacheSize: 0,
  refreshOnHistoryMiss: true,
  selfRequestsOnly: true,
});

/**
 * The page shell: head (assets, htmx config), skip link, navigation, sign-out, main.
 * Signed-in pages carry the session's CSRF token for htmx requests (`hx-headers`) and for
 * forms ({@link csrfField}).
 *
 * @example
 * ```ts
 * reply.type('text/html').send(String(layout({ title: 'Tenants', nav: 'tenants', session, body })));
 * ```
 */
export function layout(page: { title: string; nav?: NavId; session?: ConsoleSession; body: Html }): Html {
  const { session } = page;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="htmx-config" content="${HTMX_CONFIG}">
<title>${page.title} · Tenantry console</title>
<link rel="stylesheet" href="/console/assets/uPlot.min.css">
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/htmx.min.js" defer></script>
<script src="/console/assets/uPlot.iife.min.js" defer></script>
<script src="/console/assets/console.js" defer></script>
</head>
<body${session ? html` hx-headers="${JSON.stringify({ 'x-csrf-token': session.csrfToken })}"` : ''}>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/console/tenants">Tenantry <span>console</span></a>
  ${
    session
      ? html`<nav aria-label="Console"><ul>${NAV.map(
          (item) =>
            html`<li><a href="${item.href}"${item.id === page.nav ? html` aria-current="page"` : ''}>${item.label}</a></li>`,
        )}</ul></nav>
  <form method="post" action="/console/sign-out" class="sign-out">${csrfField(session)}<button type="submit">Sign out</button></form>`
      : ''
  }
</header>
<main id="main" tabindex="-1">
${page.body}
</main>
</body>
</html>`;
}

/**
 * The hidden CSRF field every console form carries.
 *
 * @example
 * ```ts
 * html`<form method="post" action="/console/tenants">${csrfField(session)}…</form>`;
 * ```
 */
export function csrfField(session: ConsoleSession): Html {
  return html`<input type="hidden" name="_csrf" value="${session.csrfToken}">`;
}

/**
 * A short message box: `error` for refusals, `notice` for results.
 *
 * @example
 * ```ts
 * html`${message('error', 'A tenant with this slug already exists')}`;
 * ```
 */
export function message(kind: 'error' | 'notice', text: string | Html): Html {
  return kind === 'error'
    ? html`<div class="message error" role="alert">${text}</div>`
    : html`<div class="message notice" role="status">${text}</div>`;
}

/** A date for tables: `2026-12-07 04:13 UTC`. */
export function shortDate(d: Date | string | null | undefined): string {
  if (!d) return '—';
  const date = typeof d === 'string' ? new Date(d) : d;
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
