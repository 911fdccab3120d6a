// `--oidc-public-key-file`: PEM public keys used instead of the provider's JWKS (COMPAT.md §6.1, §8).
import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { flattenedVerify, type JWTVerifyGetKey } from 'jose';

/**
 * Reads one PEM file holding a public key (SPKI or PKCS#1) or an X.509 certificate. A private key is
 * refused: the option names public keys, and a secret has no business in this file.
 */
export function readPublicKeyFile(path: string): KeyObject | Error {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    return new Error(`cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem))
    return new Error('holds a private key, not a public key');
  try {
    if (pem.includes('-----BEGIN CERTIFICATE-----')) return new X509Certificate(pem).publicKey;
    const key = createPublicKey({ key: pem, format: 'pem' });
    return key.type === 'public' ? key : new Error('is not a public key');
  } catch {
    return new Error('is not a PEM public key or certificate');
  }
}

/**
 * A key resolver over fixed keys, as go-oidc's StaticKeySet: the token's `kid` is not used (PEM keys have
 * none); the key whose signature check passes is the one returned. With one key it is returned as is and
 * jose's own verification decides.
 */
export function staticKeySet(keys: readonly KeyObject[]): JWTVerifyGetKey {
  if (keys.length === 0) throw new Error('staticKeySet needs at least one key');
  return async (header, token) => {
    if (keys.length === 1) return keys[0] as KeyObject;
    for (const key of keys) {
      try {
        await flattenedVerify(token, key, { algorithms: [header.alg ?? ''] });
        return key;
      } catch {
        // not this key (or not this key type): try the next
      }
    }
    // None verifies: hand jose the first, whose check then fails with the usual signature error.
    return keys[0] as KeyObject;
  };
}
