// Bearer JWT sessions: the provider's verifier, then each --extra-jwt-issuers entry (COMPAT.md §6.9).
import type { JWTVerifyGetKey } from 'jose';
import { createLru } from '../sessions/lru.js';
import type { Session } from '../sessions/session.js';
import { audienceAllowed, type ClaimRules, extractIdentity } from './claims.js';
import type { ProviderState } from './discovery.js';
import { type FetchFn, followRedirects } from './fetch.js';
import { ASYMMETRIC_ALGS, remoteJwks, verifyJwt } from './jwt.js';
import { buildSession, type IdTokenRules, verifyIdToken } from './tokens.js';
import type { OidcLogger } from './types.js';

/** §6.9: only tokens of this shape are treated as JWTs. */
export const BEARER_JWT = /^ey[a-zA-Z0-9_-]*\.ey[a-zA-Z0-9_-]*\.[a-zA-Z0-9_-]+$/;

export interface ExtraIssuer {
  readonly issuer: string;
  readonly audience: string;
}

/** Splits `issuer=audience` entries at the first `=`; entries without one are skipped (config rejects them). */
export function parseExtraIssuers(entries: readonly string[]): ExtraIssuer[] {
  const out: ExtraIssuer[] = [];
  for (const e of entries) {
    const i = e.indexOf('=');
    if (i > 0 && i < e.length - 1) out.push({ issuer: e.slice(0, i), audience: e.slice(i + 1) });
  }
  return out;
}

// A JWKS found through discovery is kept; the fallback after a failed discovery is retried after this long.
const FALLBACK_TTL_MS = 60_000;

export interface BearerVerifier {
  verify(token: string, provider: ProviderState | undefined): Promise<Session | undefined>;
  /** The session of a token that verified recently and has not expired since; no crypto, no I/O. */
  cached(token: string): Session | undefined;
}

/**
 * Verified tokens are remembered (by the whole token string) until they expire, but for at most this
 * long, so that a signing key the IdP withdraws stops being honoured within a minute. Only tokens that
 * verified are remembered, so unverifiable tokens cannot fill the cache.
 */
export const BEARER_CACHE_MS = 60_000;
export const BEARER_CACHE_SIZE = 4096;

/** Builds the §6.9 verifier chain; JWKS per extra issuer are resolved lazily and cached. */
export function createBearerVerifier(d: {
  idRules: IdTokenRules;
  claims: ClaimRules;
  extraIssuers: readonly ExtraIssuer[];
  fetchFn: FetchFn;
  now: () => number;
  log: OidcLogger;
}): BearerVerifier {
  const cache = new Map<string, { keys: Promise<JWTVerifyGetKey>; until: number }>();
  // Discovery and JWKS documents of extra issuers may redirect too (bounded, never https→http; issue #21).
  const metaFetch = followRedirects(d.fetchFn);

  const resolveKeys = async (issuer: string): Promise<{ keys: JWTVerifyGetKey; durable: boolean }> => {
    const base = issuer.replace(/\/+$/, '');
    try {
      const res = await metaFetch(`${base}/.well-known/openid-configuration`, {
        headers: { accept: 'application/json' },
        redirect: 'manual',
        signal: AbortSignal.timeout(5_000),
      });
      if (res.ok) {
        const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
        if (doc.issuer === issuer && typeof doc.jwks_uri === 'string') {
          return { keys: remoteJwks(doc.jwks_uri, metaFetch, d.now), durable: true };
        }
      } else {
        await res.body?.cancel();
      }
    } catch {
      // Discovery is optional for extra issuers: fall through to the conventional JWKS location.
    }
    return { keys: remoteJwks(`${base}/.well-known/jwks.json`, metaFetch, d.now), durable: false };
  };

  const keysFor = (issuer: string): Promise<JWTVerifyGetKey> => {
    const hit = cache.get(issuer);
    if (hit && hit.until > d.now()) return hit.keys;
    const keys = resolveKeys(issuer).then((r) => {
      const entry = cache.get(issuer);
      if (!r.durable && entry) entry.until = d.now() + FALLBACK_TTL_MS;
      return r.keys;
    });
    cache.set(issuer, { keys, until: Infinity });
    return keys;
  };

  // Keyed by the token's last 64 characters (its signature's), not the whole token: V8 hashes a string
  // character by character and a JWT is about a kilobyte. A hit still needs the whole token to be identical,
  // so a token forged to end like a verified one misses and goes through verification.
  const verified = createLru<{ readonly token: string; readonly session: Session }>(BEARER_CACHE_SIZE);
  const keyOf = (token: string) => (token.length > 64 ? token.slice(-64) : token);

  const sessionFrom = (token: string, payload: Record<string, unknown>): Session | undefined => {
    const id = extractIdentity((n) => payload[n], d.claims, true);
    if (!id.ok) return undefined;
    const exp = typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
    const now = d.now();
    const session = buildSession(id.identity, { accessToken: token, idToken: token }, now, exp);
    // Every verifier path requires `exp`; a token without one is not remembered.
    if (exp !== undefined)
      verified.set(keyOf(token), { token, session }, Math.min(exp, now + BEARER_CACHE_MS));
    return session;
  };

  return {
    cached(token) {
      const e = verified.get(keyOf(token), d.now());
      return e !== undefined && e.token === token ? e.session : undefined;
    },
    async verify(token, provider) {
      if (typeof token !== 'string' || !BEARER_JWT.test(token)) return undefined;
      try {
        if (provider) {
          const v = await verifyIdToken(token, provider, d.idRules, d.now());
          if (v.ok) return sessionFrom(token, v.payload);
        }
        for (const x of d.extraIssuers) {
          const v = await verifyJwt(token, await keysFor(x.issuer), {
            algorithms: ASYMMETRIC_ALGS,
            issuer: x.issuer,
            now: d.now(),
            requiredClaims: ['exp', 'sub'],
          });
          if (v.ok && audienceAllowed(v.payload, d.idRules.audienceClaims, new Set([x.audience]))) {
            return sessionFrom(token, v.payload);
          }
        }
      } catch (e) {
        d.log.warn({ err: (e as Error).message }, 'bearer token verification error');
      }
      return undefined;
    },
  };
}
