// Turns token-endpoint responses into sessions: ID-token verification, userinfo fallback, claim mapping (COMPAT.md §6.4–6.8, §6.10).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { ClientError, fetchUserInfo, ResponseBodyError, skipSubjectCheck } from 'openid-client';
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

/** A log-safe description of an openid-client / network error: codes and messages, never bodies. */
export function describeError(e: unknown): string {
  if (e instanceof ResponseBodyError)
    return `${e.error}${e.error_description ? `: ${e.error_description}` : ''}`;
  if (e instanceof ClientError) return `${e.code ?? 'client_error'}: ${e.message}`;
  if (e instanceof Error) {
    const cause = (e as { cause?: { code?: unknown } }).cause;
    return typeof cause?.code === 'string' ? `${e.message} (${cause.code})` : e.message;
  }
  return 'unknown error';
}

/** The OAuth `error` code of a token-endpoint error response, if that is what `e` is. */
export function oauthErrorCode(e: unknown): string | undefined {
  return e instanceof ResponseBodyError ? e.error : undefined;
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
