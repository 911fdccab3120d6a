// The precompiled services and options the HTTP layer runs on; built once by src/app.ts from the config.
import type { Logger } from 'pino';
import type { DecideInput, Decision, Reason } from '../authz/decide.js';
import type { CookieCodec, CookieOptions } from '../cookies/types.js';
import type { RequestFacts } from '../redirect/request.js';
import type { Loaded } from '../sessions/loader.js';
import type { Session } from '../sessions/session.js';
import type { CookieContext, SessionStore } from '../sessions/store.js';

/** What the routes need from the OIDC client (structural; src/oidc/client.ts provides it). */
export interface LoginProvider {
  ready(): boolean;
  createLoginState(): { state: string; nonce?: string; codeVerifier?: string };
  authorizationUrl(p: {
    redirectUri: string;
    state: string;
    nonce?: string;
    codeVerifier?: string;
    overrides?: Record<string, string>;
  }): string;
  redeem(p: {
    code: string;
    redirectUri: string;
    codeVerifier?: string;
    nonce?: string;
  }): Promise<{ ok: true; session: Session } | { ok: false; code: string; detail: string }>;
  endSessionUrl(p: { idTokenHint?: string; postLogoutRedirectUri?: string }): string | undefined;
  /** Validates an OIDC Back-Channel Logout token; undefined when it is not one the IdP signed for us. */
  verifyLogoutToken(jwt: string): Promise<{ sub?: string; sid?: string } | undefined>;
}

export interface HttpOptions {
  readonly version: string;
  readonly proxyPrefix: string;
  readonly pingPaths: ReadonlySet<string>;
  /** Empty: any user agent. */
  readonly pingUserAgents: ReadonlySet<string>;
  readonly readyPath: string;
  /** Lower-case header name. */
  readonly requestIdHeader: string;
  readonly robotsTxt: string;
  readonly staticCode: number | undefined;
  readonly skipProviderButton: boolean;
  readonly forceJsonErrors: boolean;
  readonly cookieName: string;
  readonly csrfPerRequest: boolean;
  readonly csrfPerRequestLimit: number;
  readonly csrfExpireMs: number;
  readonly encodeState: boolean;
  readonly allowQuerySemicolons: boolean;
  readonly redirectUrl: string;
  readonly relativeRedirectUrl: boolean;
  readonly cookieSecure: boolean;
  readonly rpInitiatedLogout: boolean;
  readonly backendLogoutUrl: string;
  readonly showDebugOnError: boolean;
  readonly requestLogging: boolean;
  readonly authLogging: boolean;
  readonly silencePingLogging: boolean;
  readonly excludeLoggingPaths: ReadonlySet<string>;
}

export interface Observer {
  decision(status: number, reason: Reason): void;
  response(status: number, method: string, seconds: number): void;
  inFlight(delta: 1 | -1): void;
}

export interface Services {
  readonly opts: HttpOptions;
  readonly log: Logger;
  readonly now: () => number;
  readonly store: SessionStore;
  readonly loadSession: (ctx: CookieContext, authorization: string | undefined) => Loaded | Promise<Loaded>;
  readonly decide: (i: DecideInput) => Decision;
  readonly allow: (f: RequestFacts) => boolean;
  readonly trust: (f: RequestFacts) => boolean;
  readonly isApiRoute: (f: RequestFacts) => boolean;
  readonly isAjax: (headers: RequestFacts['headers']) => boolean;
  readonly chooseRedirect: (f: RequestFacts, rd: string | undefined) => string;
  readonly validRedirect: (target: string) => boolean;
  /** Compiles this request's query constraints into a predicate (shared constant when there are none). */
  readonly queryFilter: (rawQuery: string) => (s: Session) => boolean;
  readonly emailValid: (email: string) => boolean;
  readonly groupsAllowed: (groups: readonly string[]) => boolean;
  readonly oidc: LoginProvider;
  readonly csrfCodec: CookieCodec;
  readonly cookie: Omit<CookieOptions, 'domain'>;
  readonly csrfCookie: Omit<CookieOptions, 'domain'>;
  readonly cookieDomain: (host: string) => string | undefined;
  readonly signInPage: (rd: string) => string;
  /** Resolves undefined when ready, else the reason it is not. */
  readonly readiness: () => Promise<string | undefined>;
  readonly observer: Observer | undefined;
  /** Server-side GET to --backend-logout-url ({id_token} already substituted by the caller). */
  readonly backendLogout: ((url: string) => Promise<void>) | undefined;
}
