// Turns token-endpoint responses into sessions: ID-token verification, userinfo fallback, claim mapping (COMPAT.md §6.4–6.8, §6.10).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { JWTPayload } from 'jose';
import {
  ClientError,
  fetchUserInfo,
  ResponseBodyError,
  skipSubjectCheck,
  WWWAuthenticateChallengeError,
} from 'openid-client';
import type { Session } from '../sessions/session.js';
import { audienceAllowed, type ClaimRules, extractIdentity, type IdentityResult } from './claims.js';
import type { ProviderState } from './discovery.js';
import { verifyJwt } from './jwt.js';

/** The fields of a token response that sessions use. */
export interface TokenSet {
  access_token: string;
  id_token?: string;
  refresh_token?: string;
  expires_in?: number;
}

export interface IdTokenRules {
  readonly claims: ClaimRules;
  readonly audienceClaims: readonly string[];
  readonly audiences: ReadonlySet<string>;
  readonly skipIssuerVerification: boolean;
  readonly skipClaimsFromProfileUrl: boolean;
}

/** Constant-time string equality (COMPAT.md §10: state and nonce comparisons). */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** The `error` / `error_description` parameters of a WWW-Authenticate challenge (RFC 6750 §3), if any. */
function challengeParams(e: WWWAuthenticateChallengeError): { error?: string; description?: string } {
  for (const c of Array.isArray(e.cause) ? e.cause : []) {
    const p = c.parameters;
    if (typeof p?.error === 'string')
      return {
        error: p.error,
        ...(typeof p.error_description === 'string' ? { description: p.error_description } : {}),
      };
  }
  return {};
}

/** A log-safe description of an openid-client / network error: codes and messages, never bodies. */
export function describeError(e: unknown): string {
  if (e instanceof ResponseBodyError)
    return `${e.error}${e.error_description ? `: ${e.error_description}` : ''}`;
  if (e instanceof WWWAuthenticateChallengeError) {
    const p = challengeParams(e);
    const code = oauthErrorCode(e) ?? 'challenge';
    return `HTTP ${e.status} ${code}${p.description ? `: ${p.description}` : ''} (WWW-Authenticate challenge)`;
  }
  if (e instanceof ClientError) {
    // "unexpected HTTP response status code" alone does not say which (a token endpoint answering 500, say).
    const status = e.cause instanceof Response ? ` (HTTP ${e.cause.status})` : '';
    return `${e.code ?? 'client_error'}: ${e.message}${status}`;
  }
  if (e instanceof Error) {
    const cause = (e as { cause?: { code?: unknown } }).cause;
    return typeof cause?.code === 'string' ? `${e.message} (${cause.code})` : e.message;
  }
  return 'unknown error';
}

/**
 * The OAuth `error` code of a token-endpoint error response, if that is what `e` is. A 401 with a
 * WWW-Authenticate challenge (openid-client throws WWWAuthenticateChallengeError for it and never reads the body)
 * is a client-authentication failure, `invalid_client`, unless the challenge names another error (RFC 6749 §5.2).
 */
export function oauthErrorCode(e: unknown): string | undefined {
  if (e instanceof ResponseBodyError) return e.error;
  if (e instanceof WWWAuthenticateChallengeError)
    return challengeParams(e).error ?? (e.status === 401 ? 'invalid_client' : undefined);
  return undefined;
}

/**
 * The `alg` of an HMAC-signed (HS256/384/512) ID token, from the token itself or from openid-client's
 * "unexpected JWT alg" error. gatehouse verifies ID tokens only against the IdP's public keys, so such a token
 * can never be accepted; the caller turns this into a message the user can act on (issue #21).
 */
export function hmacIdTokenAlg(e: unknown, token?: string): string | undefined {
  let alg: unknown;
  if (token !== undefined) {
    try {
      alg = (
        JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as { alg?: unknown }
      ).alg;
    } catch {
      alg = undefined;
    }
  } else if (e instanceof ClientError) {
    const cause = e.cause as { header?: { alg?: unknown } } | undefined;
    alg = cause?.header?.alg;
  }
  return typeof alg === 'string' && /^HS(256|384|512)$/.test(alg) ? alg : undefined;
}

/** The log and page text for an HMAC-signed ID token. */
export function hmacIdTokenMessage(alg: string): string {
  return `the IdP signs ID tokens with ${alg}; set the client's ID-token algorithm to RS256 (or another asymmetric one)`;
}

/** openid-client's own ID-token claim checks (iss/aud/exp/iat) failed, as opposed to transport errors. */
export function isIdTokenClaimError(e: unknown): boolean {
  return (
    e instanceof ClientError &&
    (e.code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED' || e.code === 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED')
  );
}

/**
 * Verifies an ID token (COMPAT.md §6.8): signature against the provider JWKS with the negotiated algorithms,
 * `exp`, issuer (unless skipped) and the audience-claim rule.
 */
export async function verifyIdToken(
  token: string,
  p: ProviderState,
  r: IdTokenRules,
  now: number,
): Promise<{ ok: true; payload: JWTPayload } | { ok: false; detail: string }> {
  const v = await verifyJwt(token, p.jwks, {
    algorithms: p.algorithms,
    issuer: r.skipIssuerVerification ? undefined : p.issuer,
    now,
    requiredClaims: ['exp', 'sub'],
  });
  if (!v.ok) return v;
  if (!audienceAllowed(v.payload, r.audienceClaims, r.audiences))
    return { ok: false, detail: 'audience not allowed' };
  return { ok: true, payload: v.payload };
}

/**
 * Maps verified ID-token claims to the identity, looking missing claims up at the userinfo endpoint once
 * (COMPAT.md §6.4) unless --skip-claims-from-profile-url.
 */
export async function identityFromIdToken(
  payload: JWTPayload,
  accessToken: string | undefined,
  p: ProviderState,
  r: IdTokenRules,
  warn: (detail: string) => void,
): Promise<IdentityResult> {
  const wanted = [r.claims.emailClaim, r.claims.groupsClaim, 'preferred_username'];
  if (r.claims.checkEmailVerified) wanted.push('email_verified');
  let extra: Record<string, unknown> = {};
  if (
    !r.skipClaimsFromProfileUrl &&
    accessToken &&
    p.hasUserinfo &&
    wanted.some((c) => payload[c] === undefined)
  ) {
    try {
      const sub = typeof payload.sub === 'string' ? payload.sub : skipSubjectCheck;
      extra = { ...(await fetchUserInfo(p.config, accessToken, sub)) };
    } catch (e) {
      warn(describeError(e));
    }
  }
  return extractIdentity(
    (name) => payload[name] ?? (name === 'sub' ? undefined : extra[name]),
    r.claims,
    false,
  );
}

/** expires_on: from expires_in when given, else the ID token's exp (COMPAT.md §2.7). */
export function expiresOn(
  tokens: TokenSet,
  payload: JWTPayload | undefined,
  now: number,
): number | undefined {
  if (typeof tokens.expires_in === 'number' && Number.isFinite(tokens.expires_in)) {
    return now + tokens.expires_in * 1000;
  }
  return typeof payload?.exp === 'number' ? payload.exp * 1000 : undefined;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Assembles a Session; optional fields are omitted rather than set to undefined. */
export function buildSession(
  id: {
    user: string;
    email: string;
    groups: readonly string[];
    preferredUsername: string;
    sid?: string | undefined;
  },
  t: { accessToken?: string | undefined; idToken?: string | undefined; refreshToken?: string | undefined },
  createdAt: number,
  expires: number | undefined,
): Session {
  const s: Mutable<Session> = {
    user: id.user,
    email: id.email,
    groups: [...id.groups],
    preferredUsername: id.preferredUsername,
    createdAt,
  };
  if (t.accessToken) s.accessToken = t.accessToken;
  if (t.idToken) s.idToken = t.idToken;
  if (t.refreshToken) s.refreshToken = t.refreshToken;
  if (expires !== undefined) s.expiresOn = expires;
  if (id.sid) s.sid = id.sid;
  return s;
}
