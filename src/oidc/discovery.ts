// Provider metadata: discovery (or explicit endpoints), client authentication choice, and the background retry loop (COMPAT.md §6.1).

import type { JWTVerifyGetKey } from 'jose';
import {
  allowInsecureRequests,
  ClientError,
  Configuration,
  customFetch,
  discovery,
  type ServerMetadata,
} from 'openid-client';
import { type ClientAuthState, createClientAuth } from './client-auth.js';
import { type FetchFn, followRedirects, MetadataFetchError } from './fetch.js';
import { HMAC_ALGS, remoteJwks, signingAlgs } from './jwt.js';
import { staticKeySet } from './keys.js';
import type { OidcLogger, OidcOptions } from './types.js';

/** Everything the client needs once the provider is known. Immutable. */
export interface ProviderState {
  readonly config: Configuration;
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly endSessionEndpoint: string | undefined;
  readonly hasUserinfo: boolean;
  readonly pkceMethods: readonly string[];
  readonly algorithms: readonly string[];
  readonly jwks: JWTVerifyGetKey;
  /** Token-endpoint client authentication (basic/post, with auto's one-time fallback). */
  readonly clientAuth: ClientAuthState;
  /** Discovery advertises only HMAC ID-token algorithms, which gatehouse cannot verify (a start-up warning). */
  readonly hmacOnly: boolean;
}

/**
 * Discovery failed: say what the IdP answered. openid-client reports a non-200 as "unexpected HTTP response
 * status code" with the Response as cause, and an issuer mismatch with both values as cause.
 */
export function discoveryFailure(e: unknown, url: string): Error {
  if (e instanceof MetadataFetchError) return e;
  // openid-client wraps errors it does not know (ours from followRedirects) as "something went wrong".
  if (e instanceof ClientError && e.cause instanceof MetadataFetchError) return e.cause;
  if (e instanceof ClientError) {
    const cause: unknown = e.cause;
    if (cause instanceof Response) {
      const location = cause.headers.get('location');
      return new MetadataFetchError(
        `${e.message}: ${url} answered ${cause.status}${location ? ` (Location: ${location.slice(0, 300)})` : ''}`,
        cause.status,
        location ?? undefined,
      );
    }
    const c = cause as { expected?: unknown; body?: { issuer?: unknown } } | undefined;
    if (typeof c?.expected === 'string' && typeof c.body?.issuer === 'string') {
      return new Error(
        `${e.message}: the document at ${url} publishes issuer ${JSON.stringify(c.body.issuer.slice(0, 300))}, ` +
          `--oidc-issuer-url is ${JSON.stringify(c.expected)}`,
      );
    }
  }
  return e instanceof Error ? e : new Error(String(e));
}

const isHttp = (u: string | undefined): boolean => typeof u === 'string' && u.startsWith('http:');

/**
 * Fetches the discovery document (unless --skip-oidc-discovery), applies explicit endpoint flags over it and
 * builds the openid-client Configuration. Throws on any failure (the loop retries).
 */
export async function loadProvider(
  o: OidcOptions,
  fetchFn: FetchFn,
  now: () => number = Date.now,
): Promise<ProviderState> {
  // One bound for every IdP request (--oidc-request-timeout); openid-client counts in seconds.
  const timeoutMs = o.requestTimeoutMs ?? 5000;
  const timeoutS = timeoutMs / 1000;
  let found: ServerMetadata;
  if (o.skipDiscovery) {
    if (!o.loginUrl || !o.redeemUrl || (!o.jwksUrl && o.publicKeys.length === 0)) {
      throw new Error(
        'skip-oidc-discovery needs login-url, redeem-url and oidc-jwks-url or oidc-public-key-file',
      );
    }
    found = { issuer: o.issuerUrl };
  } else {
    // A URL containing /.well-known/ makes openid-client skip its issuer equality check (§6.1 opt-out).
    const target = o.skipIssuerVerification
      ? `${o.issuerUrl.replace(/\/+$/, '')}/.well-known/openid-configuration`
      : o.issuerUrl;
    // Discovery and JWKS documents may redirect (django-oauth-toolkit answers the slash-less URL with 301).
    const discovered = await discovery(new URL(target), o.clientId, o.clientSecret, undefined, {
      [customFetch]: followRedirects(fetchFn),
      timeout: timeoutS,
      ...(isHttp(target) ? { execute: [allowInsecureRequests] } : {}),
    }).catch((e: unknown) => {
      throw discoveryFailure(e, target);
    });
    // openid-client has already checked that the discovered issuer equals the configured one.
    found = discovered.serverMetadata();
  }
  // Explicit endpoint flags win over discovered ones.
  const meta: ServerMetadata = {
    ...found,
    ...(o.loginUrl ? { authorization_endpoint: o.loginUrl } : {}),
    ...(o.redeemUrl ? { token_endpoint: o.redeemUrl } : {}),
    ...(o.profileUrl ? { userinfo_endpoint: o.profileUrl } : {}),
    ...(o.jwksUrl ? { jwks_uri: o.jwksUrl } : {}),
  };
  const staticKeys = o.publicKeys.length > 0;
  if (!meta.authorization_endpoint || !meta.token_endpoint || (!meta.jwks_uri && !staticKeys)) {
    throw new Error('provider metadata lacks authorization_endpoint, token_endpoint or jwks_uri');
  }
  const advertised = meta.id_token_signing_alg_values_supported ?? [];
  const algorithms = signingAlgs(o.enabledSigningAlgs, advertised);
  if (!algorithms) {
    throw new Error(
      'no overlap between oidc-enabled-signing-alg and the provider id_token signing algorithms',
    );
  }
  const clientAuth = createClientAuth(
    o.clientAuthMethod,
    o.clientSecret,
    meta.token_endpoint_auth_methods_supported,
  );
  const config = new Configuration(meta, o.clientId, { client_secret: o.clientSecret }, clientAuth.auth);
  config[customFetch] = fetchFn;
  config.timeout = timeoutS;
  const endpoints = [meta.issuer, meta.authorization_endpoint, meta.token_endpoint, meta.userinfo_endpoint];
  if (endpoints.some(isHttp) || isHttp(meta.jwks_uri) || isHttp(meta.end_session_endpoint)) {
    allowInsecureRequests(config);
  }
  return {
    config,
    issuer: meta.issuer,
    authorizationEndpoint: meta.authorization_endpoint,
    endSessionEndpoint: meta.end_session_endpoint,
    hasUserinfo: typeof meta.userinfo_endpoint === 'string' && meta.userinfo_endpoint !== '',
    pkceMethods: meta.code_challenge_methods_supported ?? [],
    algorithms,
    // PEM keys, when given, replace the JWKS (oauth2-proxy: a static key set instead of the remote one).
    jwks: staticKeys
      ? staticKeySet(o.publicKeys)
      : remoteJwks(meta.jwks_uri as string, followRedirects(fetchFn), now, timeoutMs),
    clientAuth,
    hmacOnly: advertised.length > 0 && advertised.every((a) => HMAC_ALGS.includes(a)),
  };
}

export interface DiscoveryLoop {
  start(): void;
  current(): ProviderState | undefined;
  whenReady(): Promise<ProviderState>;
  close(): void;
}

/**
 * Runs `load` until it succeeds, backing off exponentially from `initialMs` to `maxMs`. A failure streak
 * is logged once when it begins and once when it ends, not per retry; nothing here ever throws.
 */
export function createDiscoveryLoop(d: {
  load: () => Promise<ProviderState>;
  log: OidcLogger;
  issuerUrl: string;
  initialMs: number;
  maxMs: number;
}): DiscoveryLoop {
  let state: ProviderState | undefined;
  let timer: NodeJS.Timeout | undefined;
  let started = false;
  let closed = false;
  let failures = 0;
  let settle: { resolve: (s: ProviderState) => void; reject: (e: Error) => void } | undefined;
  const ready = new Promise<ProviderState>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // Marks the promise handled; callers awaiting whenReady() still see a rejection.
  ready.catch(() => {});

  const attempt = async (): Promise<void> => {
    timer = undefined;
    try {
      const s = await d.load();
      if (closed) return;
      state = s;
      if (failures > 0)
        d.log.info({ issuer: d.issuerUrl, attempts: failures + 1 }, 'OIDC discovery recovered');
      else d.log.info({ issuer: d.issuerUrl }, 'OIDC provider ready');
      failures = 0;
      settle?.resolve(s);
    } catch (e) {
      if (closed) return;
      if (failures === 0) {
        d.log.error(
          { issuer: d.issuerUrl, err: (e as Error).message },
          'OIDC discovery failed; retrying in the background',
        );
      }
      const delay = Math.min(d.maxMs, d.initialMs * 2 ** Math.min(failures, 30));
      failures++;
      timer = setTimeout(() => void attempt(), delay);
    }
  };

  return {
    start: () => {
      if (started || closed) return;
      started = true;
      void attempt();
    },
    current: () => state,
    whenReady: () => ready,
    close: () => {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (!state) settle?.reject(new Error('OIDC client closed before discovery completed'));
    },
  };
}
