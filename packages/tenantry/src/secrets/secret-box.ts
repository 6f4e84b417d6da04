import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { TenantryError } from '../errors/catalog.ts';

const VERSION = 1;

/**
 * Encrypts a secret for storage with AES-256-GCM: `version(1) | iv(12) | tag(16) | ciphertext`.
 * `context` (e.g. the placement id) is bound as additional authenticated data, so a
 * ciphertext copied onto another row does not decrypt.
 *
 * @example
 * ```ts
 * const blob = seal(key, JSON.stringify({ url }), placementId);
 * const url = JSON.parse(open(key, blob, placementId)).url;
 * ```
 */
export function seal(key: Buffer, plaintext: string, context: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]);
}

/** Decrypts what {@link seal} produced; throws `DECRYPTION_FAILED` on any tampering or wrong key. */
export function open(key: Buffer, blob: Buffer, context: string): string {
  try {
    if (blob[0] !== VERSION) throw new Error(`unknown secret-box version ${blob[0]}`);
    const decipher = createDecipheriv('aes-256-gcm', key, blob.subarray(1, 13));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(blob.subarray(13, 29));
    return Buffer.concat([decipher.update(blob.subarray(29)), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new TenantryError('DECRYPTION_FAILED', undefined, { cause });
  }
}
