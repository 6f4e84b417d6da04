import type { FastifyInstance } from 'fastify';
import { requireAdminToken } from '../../auth/admin-token.ts';
import { TenantryError } from '../../errors/catalog.ts';
import { presentedSession, redirect, requireSameOrigin, sessionCookie } from '../console-auth.ts';
import { html } from '../html.ts';
import { layout, message } from '../layout.ts';
import { type ConsoleDeps, sendPage } from '../page.ts';

function signInPage(error?: string) {
  return layout({
    title: 'Sign in',
    body: html`<h1>Sign in to the console</h1>
<div class="panel">
${error ? message('error', error) : ''}
<form method="post" action="/console/sign-in">
  <div class="form-row"><div>
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" required size="40" autofocus>
  </div>
  <button type="submit">Sign in</button></div>
</form>
<p class="muted">The token is the server's <code>TENANTRY_ADMIN_TOKEN</code>. It starts a session kept in
a cookie no script can read; it expires after 30 minutes without use.</p>
</div>`,
  });
}

/** `GET|POST /console/sign-in` and `POST /console/sign-out`. */
export async function signInRoutes(app: FastifyInstance, deps: ConsoleDeps): Promise<void> {
  app.get('/console/sign-in', { schema: { hide: true }, config: { consolePublic: true } }, async (req, reply) => {
    if (await deps.sessions.find(presentedSession(req))) return reply.redirect('/console/tenants', 303);
    return sendPage(reply, signInPage());
  });

  app.post<{ Body: Record<string, string> | undefined }>(
    '/console/sign-in',
    { schema: { hide: true }, config: { consolePublic: true } },
    async (req, reply) => {
      requireSameOrigin(req); // no login CSRF: another site cannot sign a browser into this console
      try {
        requireAdminToken(req.body?.token, deps.adminToken);
      } catch (error) {
        if (!(error instanceof TenantryError)) throw error;
        req.log.warn({ consoleSignIn: 'refused' }, 'console sign-in refused');
        return sendPage(reply, signInPage('That is not the admin token.'), 401);
      }
      await deps.sessions.purgeExpired();
      const { token } = await deps.sessions.create('admin-token');
      reply.header('set-cookie', sessionCookie(req, token, Math.floor(deps.sessions.idleMs / 1000)));
      return redirect(req, reply, '/console/tenants');
    },
  );

  app.post('/console/sign-out', { schema: { hide: true } }, async (req, reply) => {
    await deps.sessions.destroy(presentedSession(req));
    reply.header('set-cookie', sessionCookie(req, '', 0));
    return redirect(req, reply, '/console/sign-in');
  });
}
