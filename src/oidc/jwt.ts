// JWT signature and claim verification against remote JWKS with jose (COMPAT.md §6.8, §6.9).
import { createRemoteJWKSet, customFetch, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import type { FetchFn } from './fetch.js';

/** Asymmetric algorithms a JWKS can carry keys for; `none` and HMAC never verify against a JWKS. */
export const ASYMMETRIC_ALGS: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

/** HMAC algorithms: keyed with the client secret, never verifiable against a JWKS. */
export const HMAC_ALGS: readonly string[] = ['HS256', 'HS384', 'HS512'];

/**
 * COMPAT.md §6.8 algorithm set: configured ∩ discovered when both are non-empty, else whichever is
 * non-empty, else RS256. `none` and the HMAC algorithms are always dropped (gatehouse verifies with the IdP's
 * public keys only; configuring HS* is a config error and an HS-only discovery a start-up warning, issue #21).
 * Returns undefined for an empty intersection.
 */
export function signingAlgs(
  configured: readonly string[],
  discovered: readonly string[],
): string[] | undefined {
  const clean = (l: readonly string[]) => l.filter((a) => a !== 'none' && !HMAC_ALGS.includes(a));
  const c = clean(configured);
  const d = clean(discovered);
  if (c.length > 0 && d.length > 0) {
    const both = c.filter((a) => d.includes(a));
    return both.length > 0 ? both : undefined;
  }
  if (c.length > 0) return c;
  if (d.length > 0) return d;
  return ['RS256'];
}

/**
 * A cached remote JWKS: keys are re-fetched when a token names an unknown `kid` (at most every 30 s) and
 * every 10 minutes otherwise. A key is chosen by the header's alg and kid and must suit the alg.
 */
export function remoteJwks(url: string, fetchFn: FetchFn): JWTVerifyGetKey {
  return createRemoteJWKSet(new URL(url), {
    [customFetch]: (u, init) => fetchFn(u, init as RequestInit),
    cooldownDuration: 30_000,
    cacheMaxAge: 600_000,
    timeoutDuration: 5_000,
  });
}

export interface VerifyOptions {
  algorithms: readonly string[];
  /** undefined skips the issuer check (--insecure-oidc-skip-issuer-verification). */
  issuer: string | undefined;
  now: number;
  requiredClaims: readonly string[];
  /** Seconds; rejects tokens whose iat is older. */
  maxTokenAge?: number;
}

/** Verifies signature, alg, exp/nbf and issuer; the caller checks audience. Never throws. */
export async function verifyJwt(
  token: string,
  keys: JWTVerifyGetKey,
  o: VerifyOptions,
): Promise<{ ok: true; payload: JWTPayload; typ: string | undefined } | { ok: false; detail: string }> {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keys, {
      algorithms: [...o.algorithms],
      ...(o.issuer !== undefined ? { issuer: o.issuer } : {}),
      currentDate: new Date(o.now),
      requiredClaims: [...o.requiredClaims],
      ...(o.maxTokenAge !== undefined ? { maxTokenAge: o.maxTokenAge } : {}),
    });
    return { ok: true, payload, typ: protectedHeader.typ };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    return { ok: false, detail: typeof code === 'string' ? code : 'jwt verification failed' };
  }
}
