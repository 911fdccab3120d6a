// JWT signature and claim verification against remote JWKS with jose (COMPAT.md §6.8, §6.9).
import { createHash } from 'node:crypto';
import {
  createLocalJWKSet,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
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

/** How often an unknown `kid` may cause a JWKS re-fetch, for all kids together (issue #17 item 2). */
export const UNKNOWN_KID_REFETCH_MS = 10_000;
/** A kid still unknown after a re-fetch is not looked up again for this long. */
export const UNKNOWN_KID_MEMORY_MS = 300_000;
const UNKNOWN_KIDS_KEPT = 1024;
const JWKS_MAX_AGE_MS = 600_000;
const JWKS_TIMEOUT_MS = 5_000;

/** Codes of key-lookup failures that say nothing about the token: the next attempt may succeed. */
export const TRANSIENT_JWKS_CODES: ReadonlySet<string> = new Set([
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_TIMEOUT',
  'ERR_JWKS_INVALID',
  'ERR_JOSE_GENERIC',
  'ERR_JWKS_FETCH',
]);

/**
 * A cached remote JWKS (COMPAT.md §6.8). Keys are fetched on first use and again after 10 minutes
 * (the old set keeps serving if that fails). A token naming a `kid` the set does not hold causes one
 * re-fetch, so a key the IdP just rotated in is found at once rather than after a cooldown; to keep a
 * flood of forged kids from turning into a flood of fetches, such re-fetches happen at most once per
 * `UNKNOWN_KID_REFETCH_MS` in all (concurrent lookups share one fetch), and a kid that was still
 * unknown afterwards is refused without a fetch for `UNKNOWN_KID_MEMORY_MS`.
 * A key is chosen by the header's alg and kid and must suit the alg (jose's local key set).
 */
export function remoteJwks(
  url: string,
  fetchFn: FetchFn,
  now: () => number = Date.now,
  timeoutMs: number = JWKS_TIMEOUT_MS,
): JWTVerifyGetKey {
  let local: JWTVerifyGetKey | undefined;
  let fetchedAt = Number.NEGATIVE_INFINITY;
  let lastUnknownRefetch = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;
  const unknownKids = new Map<string, number>();

  const fetchKeys = async (): Promise<void> => {
    let res: Response;
    try {
      res = await fetchFn(url, {
        headers: { accept: 'application/json, application/jwk-set+json' },
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      const timedOut = (e as { name?: unknown }).name === 'TimeoutError';
      throw timedOut ? new errors.JWKSTimeout() : new JwksFetchError('JWKS request failed');
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new JwksFetchError(`JWKS endpoint answered ${res.status}`);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new errors.JWKSInvalid('JWKS is not JSON');
    }
    local = createLocalJWKSet(body as JSONWebKeySet); // throws JWKSInvalid on a bad shape
    fetchedAt = now();
  };
  const load = (): Promise<void> => {
    inflight ??= fetchKeys().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };

  return async (header, token) => {
    if (local === undefined) await load();
    else if (now() - fetchedAt >= JWKS_MAX_AGE_MS) await load().catch(() => undefined);
    try {
      return await (local as JWTVerifyGetKey)(header, token);
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey)) throw e;
      // The kid comes from the token (hostile input): a long one is remembered by its hash.
      const rawKid = typeof header.kid === 'string' ? header.kid : '';
      const kid = rawKid.length <= 128 ? rawKid : createHash('sha256').update(rawKid).digest('base64url');
      const t = now();
      const missed = unknownKids.get(kid);
      if (missed !== undefined && t - missed < UNKNOWN_KID_MEMORY_MS) throw e;
      if (inflight === undefined) {
        if (t - lastUnknownRefetch < UNKNOWN_KID_REFETCH_MS) throw e;
        lastUnknownRefetch = t;
      }
      await load();
      try {
        return await (local as JWTVerifyGetKey)(header, token);
      } catch (again) {
        if (again instanceof errors.JWKSNoMatchingKey) {
          if (unknownKids.size >= UNKNOWN_KIDS_KEPT) unknownKids.clear();
          unknownKids.set(kid, now());
        }
        throw again;
      }
    }
  };
}

/** The JWKS endpoint could not be reached or answered an error status. */
class JwksFetchError extends errors.JOSEError {
  static override code = 'ERR_JWKS_FETCH';
  override code = 'ERR_JWKS_FETCH';
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
