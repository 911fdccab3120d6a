// The OIDC client's public contract: options, results and the OidcClient interface (COMPAT.md §6).
import type { KeyObject } from 'node:crypto';
import type { Session } from '../sessions/session.js';

/** Provider options, one field per oauth2-proxy flag (COMPAT.md §8.2, §6). */
export interface OidcOptions {
  issuerUrl: string;
  /** `--oidc-request-timeout` in ms: the bound of every request to the IdP (default 5 s). */
  requestTimeoutMs?: number;
  clientId: string;
  clientSecret: string;
  skipDiscovery: boolean;
  loginUrl: string;
  redeemUrl: string;
  profileUrl: string;
  jwksUrl: string;
  /** `--oidc-public-key-file` keys; when given they replace the JWKS (as oauth2-proxy's static key set). */
  publicKeys: readonly KeyObject[];
  /** '' → 'openid email profile' (+ ' groups' when allowedGroups is non-empty), §6.2. */
  scope: string;
  allowedGroups: readonly string[];
  codeChallengeMethod: '' | 'S256' | 'plain';
  skipNonce: boolean;
  emailClaim: string;
  groupsClaim: string;
  userIdClaim: string;
  audienceClaims: readonly string[];
  extraAudiences: readonly string[];
  allowUnverifiedEmail: boolean;
  skipIssuerVerification: boolean;
  enabledSigningAlgs: readonly string[];
  skipClaimsFromProfileUrl: boolean;
  /** 'issuer=audience' entries, §6.9. */
  extraJwtIssuers: readonly string[];
  prompt: string;
  approvalPrompt: string;
  acrValues: string;
  responseMode: string;
  sslInsecureSkipVerify: boolean;
  /** `--client-auth-method` (gatehouse-only): auto (default), basic or post. */
  clientAuthMethod: 'auto' | 'basic' | 'post';
}

export interface OidcLogger {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
  error(o: object, msg: string): void;
}

export interface OidcDeps {
  log: OidcLogger;
  /** Milliseconds since the epoch; defaults to Date.now. */
  now?: () => number;
  /** Discovery retry back-off bounds in ms (defaults 500 → 30 000). */
  retry?: { initialMs?: number; maxMs?: number };
}

/** Why a code redemption failed; each maps to a callback error page (COMPAT.md §1.9). */
export type RedeemFailure =
  | 'exchange_failed'
  | 'id_token_invalid'
  | 'nonce_mismatch'
  | 'unverified_email'
  | 'missing_email'
  /** The IdP signs ID tokens with HS256/384/512, which gatehouse never accepts (issue #21). */
  | 'id_token_hmac';

export type RedeemResult =
  | { ok: true; session: Session }
  | { ok: false; code: RedeemFailure; detail: string };

export type RefreshResult = { ok: true; session: Session } | { ok: false; fatal: boolean; detail: string };

export interface LoginState {
  /** csrfStateHash of §1.8.4 (43 characters); the route appends `:<redirect>`. */
  state: string;
  nonce?: string;
  codeVerifier?: string;
}

export interface AuthorizationUrlParams {
  redirectUri: string;
  state: string;
  nonce?: string;
  codeVerifier?: string;
  /** Replaces configured login parameters (prompt / approval_prompt / acr_values) only. */
  overrides?: Record<string, string>;
}

export interface RedeemParams {
  code: string;
  redirectUri: string;
  codeVerifier?: string;
  nonce?: string;
  callbackParams?: URLSearchParams;
}

export interface OidcClient {
  /** Begins discovery in the background, retried with capped exponential back-off. */
  start(): void;
  ready(): boolean;
  /** Resolves once discovery succeeded; rejects if the client is closed first. */
  whenReady(): Promise<void>;
  /** Stops retries. */
  close(): void;
  pkceMethod(): 'S256' | 'plain' | undefined;
  createLoginState(): LoginState;
  authorizationUrl(p: AuthorizationUrlParams): string;
  redeem(p: RedeemParams): Promise<RedeemResult>;
  refresh(s: Session): Promise<RefreshResult>;
  endSessionUrl(p: { idTokenHint?: string; postLogoutRedirectUri?: string }): string | undefined;
  verifyBearer(token: string): Promise<Session | undefined>;
  /** A recently verified, unexpired token's session without verifying again (undefined: verify). */
  cachedBearer(token: string): Session | undefined;
  verifyLogoutToken(jwt: string): Promise<{ sub?: string; sid?: string } | undefined>;
}
