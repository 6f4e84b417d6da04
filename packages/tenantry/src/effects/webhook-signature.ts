import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const PREFIX = 'whsec_';

/** A new endpoint secret in the Standard Webhooks form: `whsec_` and 32 random bytes, base64. */
export function newWebhookSecret(): string {
  return PREFIX + randomBytes(32).toString('base64');
}

function keyOf(secret: string): Buffer {
  return Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, 'base64');
}

/**
 * The `webhook-signature` header of a delivery (Standard Webhooks): `v1,` and the base64
 * HMAC-SHA256, under the secret's bytes, of `id.timestamp.body`.
 *
 * @example
 * ```ts
 * const signature = signWebhook(secret, 'evt_42', 1718000000, '{"type":"item.created"}');
 * ```
 */
export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', keyOf(secret)).update(`${id}.${timestamp}.${body}`, 'utf8').digest('base64');
  return `v1,${mac}`;
}

/**
 * What a receiver runs: true when one of the space-separated signatures of `header` is
 * `body`'s, in constant time, and `timestamp` is within `toleranceSeconds` (default 300)
 * of now (an old, replayed delivery fails).
 *
 * @example
 * ```ts
 * const ok = verifyWebhook(secret, req.headers['webhook-id'], Number(req.headers['webhook-timestamp']), body, req.headers['webhook-signature']);
 * ```
 */
export function verifyWebhook(
  secret: string,
  id: string,
  timestamp: number,
  body: string,
  header: string,
  toleranceSeconds = 300,
): boolean {
  if (!Number.isInteger(timestamp) || Math.abs(Date.now() / 1000 - timestamp) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, id, timestamp, body));
  return header.split(' ').some((candidate) => {
    const given = Buffer.from(candidate);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
