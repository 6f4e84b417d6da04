import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { LoginInput, type TokenService } from '../../auth/tokens.ts';
import { problems } from '../schemas.ts';

const TokenPairJson = z
  .object({ accessToken: z.string(), refreshToken: z.string(), expiresIn: z.number().int() })
  .meta({ id: 'TokenPair' });
const RefreshInput = z.object({ refreshToken: z.string().min(1).max(200) }).strict();

/** `/v1/auth/login|refresh|logout`: access JWTs and rotating refresh tokens. */
export async function authRoutes(app: FastifyInstance, opts: { auth: TokenService }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    '/v1/auth/login',
    {
      schema: {
        tags: ['auth'],
        summary: 'Log in to a tenant with email and password',
        body: LoginInput,
        response: { 200: TokenPairJson, ...problems(400, 401, 429) },
      },
    },
    async (req) => opts.auth.login(req.body),
  );
  r.post(
    '/v1/auth/refresh',
    {
      schema: {
        tags: ['auth'],
        summary: 'Exchange a refresh token for a new pair (a reused token revokes its family)',
        body: RefreshInput,
        response: { 200: TokenPairJson, ...problems(400, 401) },
      },
    },
    async (req) => opts.auth.refresh(req.body.refreshToken),
  );
  r.post(
    '/v1/auth/logout',
    {
      schema: {
        tags: ['auth'],
        summary: 'Revoke the refresh token’s family',
        body: RefreshInput,
        response: { 204: z.null(), ...problems(400) },
      },
    },
    async (req, reply) => {
      await opts.auth.logout(req.body.refreshToken, { actor: `auth-api:${req.id}` });
      return reply.code(204).send(null);
    },
  );
}
