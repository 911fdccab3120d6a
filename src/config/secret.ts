// Cookie-secret rules: key bytes from the secret string (§3.2.2), masking of secrets in messages.
import { randomBytes } from 'node:crypto';

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Key bytes of a cookie secret (COMPAT.md §3.2.2): trailing `=` stripped, then strict base64url without
 * padding; the decoded bytes are the key only when they are 16, 24 or 32 bytes long, otherwise the raw UTF-8
 * bytes of the secret are. The caller checks the length with {@link cookieSecretError}.
 */
export function cookieSecretKey(secret: string): Buffer {
  const stripped = secret.replace(/=+$/, '');
  // Buffer's base64url decoder is lenient (skips foreign characters), so the alphabet and length are
  // checked first to behave like Go's RawURLEncoding, which refuses `+`, `/` and a dangling 6-bit group.
  if (BASE64URL.test(stripped) && stripped.length % 4 !== 1) {
    const decoded = Buffer.from(stripped, 'base64url');
    if (decoded.length === 16 || decoded.length === 24 || decoded.length === 32) return decoded;
  }
  return Buffer.from(secret, 'utf8');
}

/** The oauth2-proxy startup message for a secret whose key is not an AES key length, or undefined (§3.2.2). */
export function cookieSecretError(secret: string): string | undefined {
  const n = cookieSecretKey(secret).length;
  if (n === 16 || n === 24 || n === 32) return undefined;
  return `cookie_secret must be 16, 24, or 32 bytes to create an AES cipher, but is ${n} bytes`;
}

/** A fresh cookie secret for `gatehouse secret`: 32 random bytes, base64url, so it decodes to a 32-byte key. */
export function generateCookieSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** How a secret value appears in messages: never the value, only its length. */
export function maskSecret(value: string): string {
  return `****(${value.length} chars)`;
}
