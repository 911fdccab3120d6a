// The OIDC relying party: login URL, code redemption, refresh, end-session URL, bearer and logout tokens (COMPAT.md §1.8, §1.9, §6).
import { genericGrantRequest, refreshTokenGrant } from 'openid-client';
import { GatehouseError } from '../errors.js';
import type { Session } from '../sessions/session.js';
import { createBearerVerifier, parseExtraIssuers } from './bearer.js';
import { compileClaimRules } from './claims.js';
import { withClientAuthFallback } from './client-auth.js';
import { createDiscoveryLoop, loadProvider, type ProviderState } from './discovery.js';
import { createIdpFetch } from './fetch.js';
import { TRANSIENT_JWKS_CODES, verifyJwt } from './jwt.js';
import { codeChallenge, encodeSorted, randomCodeVerifier, randomHash } from './params.js';
import {
  buildSession,
  describeError,
  expiresOn,
  hmacIdTokenAlg,
  hmacIdTokenMessage,
  type IdTokenRules,
  identityFromIdToken,
  isIdTokenClaimError,
  oauthErrorCode,
  sameSecret,
  type TokenSet,
  verifyIdToken,
} from './tokens.js';
import type {
  AuthorizationUrlParams,
  LoginState,
  OidcClient,
  OidcDeps,
  OidcOptions,
  RedeemParams,
  RedeemResult,
  RefreshResult,
} from './types.js';

export type * from './types.js';

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
// OAuth errors after which the refresh token can never work again (COMPAT.md §6.10).
const FATAL_REFRESH_ERRORS = new Set(['invalid_grant', 'invalid_client']);
// Parameters an /oauth2/start override may replace; state, nonce, PKCE and client identity never.
const OVERRIDABLE = new Set(['prompt', 'approval_prompt', 'acr_values']);
const LOGOUT_TOKEN_MAX_AGE_S = 600;

/**
 * Creates the OIDC client (COMPAT.md §6). Nothing touches the network until `start()`; discovery then
 * runs in the background until it succeeds, so an IdP that is down at start-up does not stop gatehouse.
 */
export function createOidcClient(opts: OidcOptions, deps: OidcDeps): OidcClient {
  const now = deps.now ?? Date.now;
  const log = deps.log;
  const fetchFn = createIdpFetch(opts);
  if (opts.sslInsecureSkipVerify)
    log.warn({}, 'ssl-insecure-skip-verify: TLS certificates of the IdP are NOT verified');

  const claims = compileClaimRules(opts);
  const idRules: IdTokenRules = {
    claims,
    audienceClaims: opts.audienceClaims.length > 0 ? opts.audienceClaims : ['aud'],
    audiences: new Set([opts.clientId, ...opts.extraAudiences]),
    skipIssuerVerification: opts.skipIssuerVerification,
    skipClaimsFromProfileUrl: opts.skipClaimsFromProfileUrl,
  };
  const scope = opts.scope || `openid email profile${opts.allowedGroups.length > 0 ? ' groups' : ''}`;
  // §1.8.3: prompt replaces approval_prompt; both are "login parameters" like acr_values.
  const loginParams = new Map<string, string>();
  if (opts.prompt) loginParams.set('prompt', opts.prompt);
  else if (opts.approvalPrompt) loginParams.set('approval_prompt', opts.approvalPrompt);
  if (opts.acrValues) loginParams.set('acr_values', opts.acrValues);

  const loop = createDiscoveryLoop({
    load: async () => {
      const p = await loadProvider(opts, fetchFn, now);
      if (!opts.codeChallengeMethod && p.pkceMethods.length > 0 && !p.pkceMethods.includes('S256')) {
        log.warn(
          { methods: p.pkceMethods },
          'provider advertises PKCE but not S256; PKCE stays off (set --code-challenge-method)',
        );
      }
      if (p.hmacOnly) {
        log.warn(
          { event: 'idp_hmac_only' },
          'the IdP advertises only HS256/HS384/HS512 ID-token signatures, which gatehouse never accepts: ' +
            "set the client's ID-token algorithm to RS256 (or another asymmetric one) at the IdP",
        );
      }
      return p;
    },
    log,
    issuerUrl: opts.issuerUrl,
    initialMs: deps.retry?.initialMs ?? 500,
    maxMs: deps.retry?.maxMs ?? 30_000,
  });
  const bearer = createBearerVerifier({
    idRules,
    claims,
    extraIssuers: parseExtraIssuers(opts.extraJwtIssuers),
    fetchFn,
    now,
    log,
  });

  const pkceMethod = (): 'S256' | 'plain' | undefined => {
    if (opts.codeChallengeMethod) return opts.codeChallengeMethod;
    return loop.current()?.pkceMethods.includes('S256') ? 'S256' : undefined;
  };

  const provider = (): ProviderState => {
    const p = loop.current();
    if (!p) throw new GatehouseError('ERR_OIDC_DISCOVERY', 'OIDC provider not discovered yet');
    return p;
  };

  const warnUserinfo = (detail: string) =>
    log.warn({ detail }, 'userinfo lookup failed; using ID token claims only');

  const redeem = async (p: RedeemParams): Promise<RedeemResult> => {
    const prov = loop.current();
    if (!prov) return { ok: false, code: 'exchange_failed', detail: 'provider not discovered yet' };
    // RFC 9207 mix-up defence: a present `iss` must name our provider.
    const iss = p.callbackParams?.get('iss');
    if (iss != null && !opts.skipIssuerVerification && iss !== prov.issuer) {
      return { ok: false, code: 'exchange_failed', detail: 'callback iss does not match the provider' };
    }
    let tokens: TokenSet;
    try {
      const params: Record<string, string> = { code: p.code, redirect_uri: p.redirectUri };
      if (p.codeVerifier) params.code_verifier = p.codeVerifier;
      tokens = await withClientAuthFallback(
        prov.clientAuth,
        () => genericGrantRequest(prov.config, 'authorization_code', params),
        log,
      );
    } catch (e) {
      const hs = hmacIdTokenAlg(e);
      if (hs) return { ok: false, code: 'id_token_hmac', detail: hmacIdTokenMessage(hs) };
      const detail = describeError(e);
      return { ok: false, code: isIdTokenClaimError(e) ? 'id_token_invalid' : 'exchange_failed', detail };
    }
    if (!tokens.id_token)
      return { ok: false, code: 'id_token_invalid', detail: 'token response has no id_token' };
    const v = await verifyIdToken(tokens.id_token, prov, idRules, now());
    if (!v.ok) {
      const hs = hmacIdTokenAlg(undefined, tokens.id_token);
      if (hs) return { ok: false, code: 'id_token_hmac', detail: hmacIdTokenMessage(hs) };
      return { ok: false, code: 'id_token_invalid', detail: v.detail };
    }
    if (!opts.skipNonce) {
      const got = v.payload.nonce;
      if (!p.nonce || typeof got !== 'string' || !sameSecret(got, p.nonce)) {
        return { ok: false, code: 'nonce_mismatch', detail: 'ID token nonce does not match the login nonce' };
      }
    }
    const id = await identityFromIdToken(v.payload, tokens.access_token, prov, idRules, warnUserinfo);
    if (!id.ok)
      return {
        ok: false,
        code: id.code === 'unverified_email' ? id.code : 'id_token_invalid',
        detail: id.detail,
      };
    if (id.identity.email === '') return { ok: false, code: 'missing_email', detail: 'no email claim' };
    const at = now();
    return {
      ok: true,
      session: buildSession(
        id.identity,
        { accessToken: tokens.access_token, idToken: tokens.id_token, refreshToken: tokens.refresh_token },
        at,
        expiresOn(tokens, v.payload, at),
      ),
    };
  };

  const refresh = async (s: Session): Promise<RefreshResult> => {
    if (!s.refreshToken) return { ok: false, fatal: false, detail: 'session has no refresh token' };
    const prov = loop.current();
    if (!prov) return { ok: false, fatal: false, detail: 'provider not discovered yet' };
    let tokens: TokenSet;
    try {
      const rt = s.refreshToken;
      tokens = await withClientAuthFallback(prov.clientAuth, () => refreshTokenGrant(prov.config, rt), log);
    } catch (e) {
      const code = oauthErrorCode(e);
      // A refreshed ID token failing openid-client's claim checks is not transient either.
      const fatal = (code !== undefined && FATAL_REFRESH_ERRORS.has(code)) || isIdTokenClaimError(e);
      return { ok: false, fatal, detail: describeError(e) };
    }
    const at = now();
    let identity = {
      user: s.user,
      email: s.email,
      groups: s.groups,
      preferredUsername: s.preferredUsername,
      sid: s.sid,
    };
    let payload: Awaited<ReturnType<typeof verifyIdToken>> | undefined;
    if (tokens.id_token) {
      // Fail closed: a refreshed identity that does not verify, or that belongs to someone else, ends the session.
      payload = await verifyIdToken(tokens.id_token, prov, idRules, at);
      // A key that cannot be looked up right now (a rotation not yet fetched, the JWKS endpoint down)
      // says nothing against the session: keep it and try again (issue #17 item 2).
      if (!payload.ok)
        return {
          ok: false,
          fatal: !TRANSIENT_JWKS_CODES.has(payload.detail),
          detail: `refreshed ID token invalid: ${payload.detail}`,
        };
      const id = await identityFromIdToken(payload.payload, tokens.access_token, prov, idRules, warnUserinfo);
      if (!id.ok) return { ok: false, fatal: true, detail: id.detail };
      if (id.identity.user !== s.user)
        return { ok: false, fatal: true, detail: 'refreshed ID token has another sub' };
      if (id.identity.email === '')
        return { ok: false, fatal: true, detail: 'refreshed ID token has no email' };
      identity = { ...id.identity, sid: id.identity.sid ?? s.sid };
    }
    return {
      ok: true,
      session: buildSession(
        identity,
        {
          accessToken: tokens.access_token,
          idToken: tokens.id_token ?? s.idToken,
          refreshToken: tokens.refresh_token ?? s.refreshToken,
        },
        at,
        expiresOn(tokens, payload?.ok ? payload.payload : undefined, at),
      ),
    };
  };

  return {
    start: () => loop.start(),
    ready: () => loop.current() !== undefined,
    whenReady: () => loop.whenReady().then(() => undefined),
    close: () => loop.close(),
    pkceMethod,

    createLoginState(): LoginState {
      const s: LoginState = { state: randomHash() };
      if (!opts.skipNonce) s.nonce = randomHash();
      if (pkceMethod()) s.codeVerifier = randomCodeVerifier();
      return s;
    },

    authorizationUrl(p: AuthorizationUrlParams): string {
      const url = new URL(provider().authorizationEndpoint);
      const values = new Map<string, string[]>();
      for (const [k, v] of url.searchParams) values.set(k, [...(values.get(k) ?? []), v]);
      const set = (k: string, v: string) => values.set(k, [v]);
      set('client_id', opts.clientId);
      set('redirect_uri', p.redirectUri);
      set('response_type', 'code');
      set('scope', scope);
      set('state', p.state);
      for (const [k, v] of loginParams) set(k, v);
      for (const [k, v] of Object.entries(p.overrides ?? {})) {
        if (OVERRIDABLE.has(k) && loginParams.has(k) && typeof v === 'string') set(k, v);
      }
      if (!opts.skipNonce && p.nonce) set('nonce', p.nonce);
      const method = pkceMethod();
      if (method && p.codeVerifier) {
        set('code_challenge', codeChallenge(p.codeVerifier, method));
        set('code_challenge_method', method);
      }
      if (opts.responseMode) set('response_mode', opts.responseMode);
      url.search = encodeSorted(values);
      url.hash = '';
      return url.href;
    },

    redeem: (p) =>
      redeem(p).catch(
        (e: unknown) => ({ ok: false, code: 'exchange_failed', detail: describeError(e) }) as const,
      ),

    refresh: (s) =>
      refresh(s).catch((e: unknown) => ({ ok: false, fatal: false, detail: describeError(e) }) as const),

    endSessionUrl(p): string | undefined {
      const endpoint = loop.current()?.endSessionEndpoint;
      if (!endpoint) return undefined;
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        return undefined;
      }
      if (p.idTokenHint) url.searchParams.set('id_token_hint', p.idTokenHint);
      if (p.postLogoutRedirectUri) url.searchParams.set('post_logout_redirect_uri', p.postLogoutRedirectUri);
      url.searchParams.set('client_id', opts.clientId);
      return url.href;
    },

    verifyBearer: (token) => bearer.verify(token, loop.current()),
    cachedBearer: (token) => bearer.cached(token),

    async verifyLogoutToken(jwt: string) {
      const prov = loop.current();
      if (!prov || typeof jwt !== 'string' || jwt.length > 16_384) return undefined;
      const v = await verifyJwt(jwt, prov.jwks, {
        algorithms: prov.algorithms,
        issuer: opts.skipIssuerVerification ? undefined : prov.issuer,
        now: now(),
        requiredClaims: ['iat', 'jti'],
        maxTokenAge: LOGOUT_TOKEN_MAX_AGE_S,
      });
      if (!v.ok) return undefined;
      const c = v.payload;
      // OIDC Back-Channel Logout 1.0 §2.6.
      if (v.typ !== undefined && v.typ !== 'logout+jwt' && v.typ !== 'JWT') return undefined;
      const aud = typeof c.aud === 'string' ? [c.aud] : Array.isArray(c.aud) ? c.aud : [];
      if (!aud.includes(opts.clientId)) return undefined;
      const events = c.events;
      if (typeof events !== 'object' || events === null || Array.isArray(events)) return undefined;
      const ev = (events as Record<string, unknown>)[BACKCHANNEL_EVENT];
      if (typeof ev !== 'object' || ev === null || Array.isArray(ev)) return undefined;
      if ('nonce' in c) return undefined;
      const sub = typeof c.sub === 'string' && c.sub !== '' ? c.sub : undefined;
      const sid = typeof c.sid === 'string' && c.sid !== '' ? c.sid : undefined;
      if (!sub && !sid) return undefined;
      return { ...(sub ? { sub } : {}), ...(sid ? { sid } : {}) };
    },
  };
}
