// Login-request building blocks: Go-compatible query encoding, random state/nonce/PKCE values (COMPAT.md §1.8).
import { createHash, randomBytes } from 'node:crypto';

/** Go's url.QueryEscape: everything but [A-Za-z0-9-_.~] is %XX-escaped and space becomes '+'. */
export function queryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/** Go's url.Values.Encode: keys sorted, values of one key in insertion order (COMPAT.md §1.8.3). */
export function encodeSorted(values: ReadonlyMap<string, readonly string[]>): string {
  const keys = [...values.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: string[] = [];
  for (const k of keys)
    for (const v of values.get(k) ?? []) parts.push(`${queryEscape(k)}=${queryEscape(v)}`);
  return parts.join('&');
}

/** base64url-no-padding(SHA-256(32 random bytes)): 43 characters (COMPAT.md §1.8.4, §6.7). */
export function randomHash(): string {
  return createHash('sha256').update(randomBytes(32)).digest('base64url');
}

/** 96 random bytes as base64url-no-padding: a 128-character PKCE verifier (COMPAT.md §6.3). */
export function randomCodeVerifier(): string {
  return randomBytes(96).toString('base64url');
}

/** The code_challenge for a verifier (RFC 7636 §4.2). */
export function codeChallenge(verifier: string, method: 'S256' | 'plain'): string {
  return method === 'plain' ? verifier : createHash('sha256').update(verifier, 'ascii').digest('base64url');
}
