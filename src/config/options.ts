// The one option table: flag, env var, TOML key, type, default, help text and support level of every setting.
import { z } from 'zod';

/** Help groups, in the order `--help` prints them. */
export const HELP_GROUPS = [
  'server',
  'provider',
  'cookie',
  'session',
  'authorization',
  'headers',
  'logging',
  'metrics',
] as const;
export type HelpGroup = (typeof HELP_GROUPS)[number];

/**
 * How gatehouse treats an oauth2-proxy option (COMPAT.md §8.2 column "gatehouse"):
 * `supported` = implemented; `warn` = parsed, one startup warning that it has no effect; `ignore` = parsed
 * silently (meaningless without proxying); `reject` = configuration error with a hint.
 */
export type Support = 'supported' | 'warn' | 'ignore' | 'reject';

/** How a raw string (flag, env var) or TOML value becomes the config value. */
export type OptionKind = 'string' | 'bool' | 'int' | 'duration' | 'list';

/** `cookie_secret` → `cookieSecret`, at the type level, so config field names follow from the TOML keys. */
export type CamelCase<S extends string> = S extends `${infer H}_${infer T}`
  ? `${H}${Capitalize<CamelCase<T>>}`
  : S;

/** `cookie_secret` → `cookieSecret`. */
export function camelCase<S extends string>(key: S): CamelCase<S> {
  return key.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()) as CamelCase<S>;
}

/** One row of the option table. */
export interface OptionDef<K extends string = string, S extends z.ZodType = z.ZodType> {
  /** TOML key (oauth2-proxy `cfg` name); env var and config field derive from it. */
  readonly key: K;
  /** Config field: camelCase of the TOML key. */
  readonly field: CamelCase<K>;
  /** Flag name without the leading `--`. */
  readonly flag: string;
  /** `OAUTH2_PROXY_` + uppercase TOML key (COMPAT.md §8.1.3). */
  readonly env: string;
  readonly kind: OptionKind;
  /** Validates the already-typed value; durations are milliseconds. */
  readonly schema: S;
  readonly default: z.output<S>;
  readonly help: string;
  readonly group: HelpGroup;
  readonly support: Support;
  /** Not an oauth2-proxy option. */
  readonly gatehouseOnly: boolean;
  /** Masked in error messages and never shown. */
  readonly secret: boolean;
  /** Startup warning text when the option is set (deprecated upstream). */
  readonly deprecated?: string;
}

interface Meta {
  readonly group: HelpGroup;
  readonly help: string;
  readonly support?: Support;
  /** Flag name when it is not the TOML key with `_` → `-` (list keys are pluralised, flags are not). */
  readonly flag?: string;
  readonly gatehouseOnly?: boolean;
  readonly secret?: boolean;
  readonly deprecated?: string;
}

function def<K extends string, S extends z.ZodType>(
  key: K,
  kind: OptionKind,
  schema: S,
  dflt: z.output<S>,
  meta: Meta,
): OptionDef<K, S> {
  return {
    key,
    field: camelCase(key),
    flag: meta.flag ?? key.replaceAll('_', '-'),
    env: `OAUTH2_PROXY_${key.toUpperCase()}`,
    kind,
    schema,
    default: dflt,
    help: meta.help,
    group: meta.group,
    support: meta.support ?? 'supported',
    gatehouseOnly: meta.gatehouseOnly ?? false,
    secret: meta.secret ?? false,
    ...(meta.deprecated === undefined ? {} : { deprecated: meta.deprecated }),
  };
}

const str = <K extends string>(key: K, dflt: string, meta: Meta) =>
  def(key, 'string', z.string(), dflt, meta);
const strOf = <K extends string, S extends z.ZodType<string>>(
  key: K,
  schema: S,
  dflt: z.output<S>,
  meta: Meta,
) => def(key, 'string', schema, dflt, meta);
const bool = <K extends string>(key: K, dflt: boolean, meta: Meta) =>
  def(key, 'bool', z.boolean(), dflt, meta);
const int = <K extends string>(key: K, dflt: number, meta: Meta, min = 0) =>
  def(
    key,
    'int',
    z
      .number()
      .int()
      .min(min, { error: `must be an integer ≥ ${min}` }),
    dflt,
    meta,
  );
const dur = <K extends string>(key: K, dfltMs: number, meta: Meta) =>
  def(key, 'duration', z.number().nonnegative({ error: 'must not be negative' }), dfltMs, meta);
const list = <K extends string>(key: K, dflt: readonly string[], meta: Meta) =>
  def(key, 'list', z.array(z.string()).readonly(), dflt, meta);

const sameSite = () =>
  z.enum(['', 'lax', 'strict', 'none'], {
    error: 'must be one of "lax", "strict", "none" or "" (lowercase)',
  });
const codeChallenge = () => z.enum(['', 'S256', 'plain'], { error: 'must be "S256", "plain" or ""' });

/** JWS algorithms accepted by `--oidc-enabled-signing-alg` (COMPAT.md §8.2). */
export const SIGNING_ALGS = [
  'EdDSA',
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] as const;

const H = 3_600_000;
const AW = { support: 'warn' } as const;
const AI = { support: 'ignore' } as const;

/** Every option of COMPAT.md §8.2 plus gatehouse's own, in help order within each group. */
export const OPTION_LIST = [
  // ── server ──
  str('http_address', '127.0.0.1:4180', {
    group: 'server',
    help: 'listen address: [http://]host:port, :port or unix://path (gatehouse default: loopback only)',
  }),
  str('https_address', ':443', {
    group: 'server',
    help: 'TLS listen address, used when a TLS cert or key is set',
  }),
  str('tls_cert_file', '', { group: 'server', help: 'TLS certificate file (PEM)' }),
  str('tls_key_file', '', { group: 'server', help: 'TLS private key file (PEM)' }),
  strOf('tls_min_version', z.enum(['', 'TLS1.2', 'TLS1.3'], { error: 'must be "TLS1.2" or "TLS1.3"' }), '', {
    group: 'server',
    help: 'minimum TLS version: TLS1.2 (when empty) or TLS1.3',
  }),
  list('tls_cipher_suites', [], {
    ...AW,
    group: 'server',
    flag: 'tls-cipher-suite',
    help: 'TLS cipher suites',
  }),
  int('workers', 1, { group: 'server', gatehouseOnly: true, help: 'number of worker processes' }, 1),
  str('proxy_prefix', '/oauth2', { group: 'server', help: 'URL path prefix of the endpoints' }),
  str('ping_path', '/ping', { group: 'server', help: 'health-check path (empty disables)' }),
  str('ping_user_agent', '', {
    group: 'server',
    help: 'only this User-Agent makes the ping path a health check',
  }),
  str('ready_path', '/ready', {
    group: 'server',
    help: 'readiness path, checks the session store (empty disables)',
  }),
  bool('gcp_healthchecks', false, {
    group: 'server',
    help: 'also answer /liveness_check, /readiness_check and the GoogleHC/1.0 user agent',
    deprecated: 'use --ping-path and --ping-user-agent',
  }),
  bool('reverse_proxy', false, {
    group: 'server',
    help: 'trust X-Forwarded-* and the real-client-IP header from trusted proxies',
  }),
  list('trusted_proxy_ips', [], {
    group: 'server',
    flag: 'trusted-proxy-ip',
    help: 'IPs/CIDRs of proxies whose X-Forwarded-* headers count (gatehouse: empty = loopback and private ranges)',
  }),
  str('real_client_ip_header', 'X-Real-IP', {
    group: 'server',
    help: 'header with the client IP behind --reverse-proxy: X-Real-IP, X-Forwarded-For, X-ProxyUser-IP, X-Envoy-External-Address, CF-Connecting-IP',
  }),
  bool('force_https', false, { group: 'server', help: 'redirect plain-HTTP requests to HTTPS (308)' }),
  bool('allow_query_semicolons', false, { group: 'server', help: 'treat ";" as a query separator' }),
  str('request_id_header', 'X-Request-Id', {
    group: 'server',
    help: 'request header carrying the request id',
  }),
  list('upstreams', [], {
    group: 'server',
    flag: 'upstream',
    help: 'only static://<code>: the status answered on the catch-all route (gatehouse never proxies)',
  }),
  bool('force_json_errors', false, {
    group: 'server',
    help: 'answer unauthenticated catch-all requests with JSON 401',
  }),
  bool('show_debug_on_error', false, { group: 'server', help: 'show internal error details on error pages' }),
  str('custom_templates_dir', '', {
    group: 'server',
    help: 'directory with robots.txt, sign_in.html and error.html overrides',
  }),
  str('custom_sign_in_logo', '', {
    group: 'server',
    help: 'logo on the sign-in page (path or URL; "-" hides it)',
  }),
  str('banner', '', { group: 'server', help: 'sign-in page banner ("-" hides it)' }),
  str('footer', '', { group: 'server', help: 'sign-in page footer ("-" hides it)' }),
  dur('shutdown_delay', 5000, {
    group: 'server',
    gatehouseOnly: true,
    help: 'after SIGTERM keep answering this long (/ready 503, Connection: close) before closing the listener; 0 closes at once',
  }),
  dur('shutdown_timeout', 10_000, {
    group: 'server',
    gatehouseOnly: true,
    help: 'after the listener closed, how long in-flight requests may take before their connections are cut',
  }),
  bool('pass_host_header', true, { ...AW, group: 'server', help: 'proxy-only' }),
  bool('proxy_websockets', true, { ...AW, group: 'server', help: 'proxy-only' }),
  dur('flush_interval', 1000, { ...AW, group: 'server', help: 'proxy-only' }),
  dur('upstream_timeout', 30_000, { ...AW, group: 'server', help: 'proxy-only' }),
  bool('ssl_upstream_insecure_skip_verify', false, { ...AW, group: 'server', help: 'proxy-only' }),
  bool('disable_keep_alives', false, { ...AW, group: 'server', help: 'proxy-only' }),

  // ── provider ──
  strOf(
    'provider',
    // Annotated as boolean so TypeScript does not infer a type predicate that would narrow Config to 'oidc'.
    z.string().refine((v): boolean => v === 'oidc', { error: 'gatehouse supports only --provider=oidc' }),
    'google',
    { group: 'provider', help: 'OAuth provider: must be set to oidc (the only provider gatehouse supports)' },
  ),
  str('provider_display_name', '', {
    group: 'provider',
    help: 'sign-in button label (default "OpenID Connect")',
  }),
  str('client_id', '', { group: 'provider', help: 'OAuth client id (required)' }),
  str('client_secret', '', { group: 'provider', secret: true, help: 'OAuth client secret' }),
  str('client_secret_file', '', {
    group: 'provider',
    help: 'file holding the client secret (read at start)',
  }),
  str('oidc_issuer_url', '', { group: 'provider', help: 'OpenID Connect issuer URL (required)' }),
  bool('skip_oidc_discovery', false, {
    group: 'provider',
    help: 'do not fetch discovery; needs --login-url, --redeem-url and --oidc-jwks-url or --oidc-public-key-file',
  }),
  str('login_url', '', { group: 'provider', help: 'authorization endpoint' }),
  str('redeem_url', '', { group: 'provider', help: 'token endpoint' }),
  str('profile_url', '', { group: 'provider', help: 'userinfo endpoint' }),
  str('validate_url', '', { group: 'provider', help: 'access-token validation endpoint' }),
  str('oidc_jwks_url', '', { group: 'provider', help: 'JWKS endpoint' }),
  list('oidc_public_key_files', [], {
    group: 'provider',
    flag: 'oidc-public-key-file',
    help: 'PEM public key or certificate file used instead of the JWKS (repeatable; read at start)',
  }),
  str('redirect_url', '', {
    group: 'provider',
    help: 'OAuth callback URL (default <proto>://<host>/oauth2/callback)',
  }),
  bool('relative_redirect_url', false, { group: 'provider', help: 'send only the path of the callback URL' }),
  str('oidc_email_claim', 'email', { group: 'provider', help: 'claim holding the email' }),
  str('oidc_groups_claim', 'groups', { group: 'provider', help: 'claim holding the groups' }),
  str('user_id_claim', 'email', {
    group: 'provider',
    help: 'claim used as email when --oidc-email-claim is left at its default',
    deprecated: 'use --oidc-email-claim',
  }),
  list('oidc_audience_claims', ['aud'], {
    group: 'provider',
    flag: 'oidc-audience-claim',
    help: 'claims checked for the audience',
  }),
  list('oidc_extra_audiences', [], {
    group: 'provider',
    flag: 'oidc-extra-audience',
    help: 'audiences accepted besides the client id',
  }),
  def('oidc_enabled_signing_algs', 'list', z.array(z.enum(SIGNING_ALGS)).readonly(), [], {
    group: 'provider',
    flag: 'oidc-enabled-signing-alg',
    help: `ID-token signing algorithms (${SIGNING_ALGS.join(' ')})`,
  }),
  bool('insecure_oidc_allow_unverified_email', false, {
    group: 'provider',
    help: 'accept email_verified=false',
  }),
  bool('insecure_oidc_skip_issuer_verification', false, {
    group: 'provider',
    help: 'accept a discovered issuer that differs from --oidc-issuer-url',
  }),
  bool('insecure_oidc_skip_nonce', false, {
    group: 'provider',
    help: 'do not send or check a nonce (gatehouse default: false, nonce on)',
  }),
  bool('skip_claims_from_profile_url', false, {
    group: 'provider',
    help: 'do not fetch missing claims from userinfo',
  }),
  str('scope', '', { group: 'provider', help: 'OAuth scope (default "openid email profile", plus groups)' }),
  str('prompt', '', { group: 'provider', help: 'OIDC prompt parameter (replaces approval_prompt)' }),
  str('approval_prompt', 'force', { group: 'provider', help: 'approval_prompt parameter' }),
  str('acr_values', '', { group: 'provider', help: 'acr_values parameter' }),
  strOf('code_challenge_method', codeChallenge(), '', {
    group: 'provider',
    help: 'PKCE method: S256 or plain (gatehouse: S256 when discovery lists it)',
  }),
  strOf('force_code_challenge_method', codeChallenge(), '', {
    group: 'provider',
    help: 'alias of --code-challenge-method',
    deprecated: 'use --code-challenge-method',
  }),
  strOf(
    'client_auth_method',
    z.enum(['auto', 'basic', 'post'], { error: 'must be "auto", "basic" or "post"' }),
    'auto',
    {
      group: 'provider',
      gatehouseOnly: true,
      help: 'token-endpoint client authentication: client_secret_basic, client_secret_post, or auto (as discovery advertises; basic, then post once after invalid_client)',
    },
  ),
  str('auth_request_response_mode', '', { group: 'provider', help: 'response_mode parameter' }),
  bool('ssl_insecure_skip_verify', false, {
    group: 'provider',
    help: 'skip TLS verification towards the IdP',
  }),
  list('provider_ca_files', [], {
    group: 'provider',
    flag: 'provider-ca-file',
    help: 'CA files for IdP connections',
  }),
  bool('use_system_trust_store', false, {
    group: 'provider',
    help: 'also trust the system CAs with --provider-ca-file',
  }),
  str('backend_logout_url', '', {
    group: 'provider',
    help: 'URL called on sign-out; {id_token} is replaced',
  }),
  bool('oidc_rp_initiated_logout', false, {
    group: 'provider',
    gatehouseOnly: true,
    help: 'sign-out also ends the IdP session via its end_session_endpoint',
  }),
  def('oidc_request_timeout', 'duration', z.number().positive({ error: 'must be positive' }), 5000, {
    group: 'provider',
    gatehouseOnly: true,
    help: 'timeout of one request to the IdP (discovery, token, userinfo, JWKS)',
  }),
  bool('skip_provider_button', false, {
    group: 'provider',
    help: 'start the login at once instead of the sign-in page',
  }),
  bool('encode_state', false, { group: 'provider', help: 'base64url-encode the OAuth state' }),
  str('resource', '', { ...AW, group: 'provider', help: 'Azure only' }),
  list('keycloak_groups', [], {
    ...AW,
    group: 'provider',
    flag: 'keycloak-group',
    help: 'keycloak provider only',
  }),
  str('azure_tenant', '', { ...AW, group: 'provider', help: 'azure provider only' }),
  str('azure_graph_group_field', '', { ...AW, group: 'provider', help: 'azure provider only' }),
  list('entra_id_allowed_tenants', [], {
    ...AW,
    group: 'provider',
    flag: 'entra-id-allowed-tenant',
    help: 'entra-id provider only',
  }),
  bool('entra_id_federated_token_auth', false, { ...AW, group: 'provider', help: 'entra-id provider only' }),
  str('bitbucket_team', '', { ...AW, group: 'provider', help: 'bitbucket provider only' }),
  str('bitbucket_repository', '', { ...AW, group: 'provider', help: 'bitbucket provider only' }),
  str('github_org', '', { ...AW, group: 'provider', help: 'github provider only' }),
  str('github_team', '', { ...AW, group: 'provider', help: 'github provider only' }),
  str('github_repo', '', { ...AW, group: 'provider', help: 'github provider only' }),
  str('github_token', '', { ...AW, group: 'provider', secret: true, help: 'github provider only' }),
  list('github_users', [], { ...AW, group: 'provider', flag: 'github-user', help: 'github provider only' }),
  list('gitlab_groups', [], { ...AW, group: 'provider', flag: 'gitlab-group', help: 'gitlab provider only' }),
  list('gitlab_projects', [], {
    ...AW,
    group: 'provider',
    flag: 'gitlab-project',
    help: 'gitlab provider only',
  }),
  list('google_groups', [], { ...AW, group: 'provider', flag: 'google-group', help: 'google provider only' }),
  str('google_admin_email', '', { ...AW, group: 'provider', help: 'google provider only' }),
  str('google_service_account_json', '', { ...AW, group: 'provider', help: 'google provider only' }),
  bool('google_use_application_default_credentials', false, {
    ...AW,
    group: 'provider',
    help: 'google provider only',
  }),
  str('google_target_principal', '', { ...AW, group: 'provider', help: 'google provider only' }),
  str('jwt_key', '', { ...AW, group: 'provider', secret: true, help: 'login.gov provider only' }),
  str('jwt_key_file', '', { ...AW, group: 'provider', help: 'login.gov provider only' }),
  str('pubjwk_url', '', { ...AW, group: 'provider', help: 'login.gov provider only' }),

  // ── cookie ──
  str('cookie_name', '_oauth2_proxy', { group: 'cookie', help: 'session cookie name' }),
  str('cookie_secret', '', {
    group: 'cookie',
    secret: true,
    help: 'secret for cookie encryption and signing: 16, 24 or 32 bytes, or their base64url (see `gatehouse secret`)',
  }),
  str('cookie_secret_file', '', { group: 'cookie', help: 'file holding the cookie secret (used verbatim)' }),
  list('previous_cookie_secrets', [], {
    group: 'cookie',
    flag: 'previous-cookie-secret',
    gatehouseOnly: true,
    secret: true,
    help: 'older cookie secrets that still open cookies during a rotation',
  }),
  list('cookie_domains', [], {
    group: 'cookie',
    flag: 'cookie-domain',
    help: 'cookie domains (longest match wins)',
  }),
  str('cookie_path', '/', { group: 'cookie', help: 'cookie Path' }),
  dur('cookie_expire', 168 * H, {
    group: 'cookie',
    help: 'session lifetime and cookie Max-Age (0 = browser session)',
  }),
  dur('cookie_refresh', 0, { group: 'cookie', help: 'refresh the session after this age (0 = never)' }),
  bool('cookie_secure', true, { group: 'cookie', help: 'set the Secure attribute' }),
  bool('cookie_httponly', true, { group: 'cookie', help: 'set the HttpOnly attribute' }),
  strOf('cookie_samesite', sameSite(), '', {
    group: 'cookie',
    help: 'SameSite: lax, strict, none or "" (omitted)',
  }),
  bool('cookie_csrf_per_request', true, {
    group: 'cookie',
    help: 'one CSRF cookie per login so parallel logins do not clobber each other (gatehouse default: true)',
  }),
  int('cookie_csrf_per_request_limit', 10, {
    group: 'cookie',
    help: 'keep at most this many per-request CSRF cookies, 0 = unlimited (gatehouse default: 10)',
  }),
  dur('cookie_csrf_expire', 15 * 60_000, { group: 'cookie', help: 'CSRF cookie lifetime' }),
  strOf('cookie_csrf_samesite', sameSite(), '', {
    group: 'cookie',
    help: 'SameSite of the CSRF cookie ("" = --cookie-samesite)',
  }),

  // ── session ──
  strOf(
    'session_store_type',
    z.enum(['cookie', 'redis'], { error: 'must be "cookie" or "redis"' }),
    'cookie',
    {
      group: 'session',
      help: 'session store: cookie or redis',
    },
  ),
  bool('session_cookie_minimal', false, { group: 'session', help: 'do not store tokens in the session' }),
  int('session_cache_size', 10_000, {
    group: 'session',
    gatehouseOnly: true,
    help: 'opened sessions kept in memory per worker (0 disables)',
  }),
  bool('redis_session_cache', true, {
    group: 'session',
    gatehouseOnly: true,
    help: 'skip decrypting a redis session whose stored bytes are unchanged (every request still reads redis)',
  }),
  dur('redis_command_timeout', 1000, {
    group: 'session',
    gatehouseOnly: true,
    help: 'timeout of one redis command',
  }),
  str('redis_connection_url', '', {
    group: 'session',
    help: 'redis[s]://[user[:password]@]host[:port][/db]',
  }),
  str('redis_username', '', { group: 'session', help: 'redis user (overrides the URL)' }),
  str('redis_password', '', { group: 'session', secret: true, help: 'redis password (overrides the URL)' }),
  bool('redis_use_sentinel', false, { group: 'session', help: 'connect through redis sentinel' }),
  str('redis_sentinel_password', '', { group: 'session', secret: true, help: 'redis sentinel password' }),
  str('redis_sentinel_master_name', '', { group: 'session', help: 'redis sentinel master name' }),
  list('redis_sentinel_connection_urls', [], { group: 'session', help: 'redis sentinel URLs' }),
  bool('redis_use_cluster', false, { group: 'session', help: 'connect to a redis cluster' }),
  list('redis_cluster_connection_urls', [], { group: 'session', help: 'redis cluster URLs' }),
  str('redis_ca_path', '', { group: 'session', help: 'extra CA for redis TLS' }),
  bool('redis_insecure_skip_tls_verify', false, { group: 'session', help: 'skip redis TLS verification' }),
  int('redis_connection_idle_timeout', 0, {
    group: 'session',
    help: 'idle timeout in seconds (0 = client default)',
  }),

  // ── authorization ──
  list('email_domains', [], {
    group: 'authorization',
    flag: 'email-domain',
    help: 'allowed email domains (* = any email)',
  }),
  str('authenticated_emails_file', '', {
    group: 'authorization',
    help: 'file of allowed emails, one per line',
  }),
  str('htpasswd_file', '', {
    group: 'authorization',
    help: 'htpasswd file (bcrypt or {SHA}) for manual sign-in',
  }),
  list('htpasswd_user_groups', [], {
    group: 'authorization',
    flag: 'htpasswd-user-group',
    help: 'groups of htpasswd users',
  }),
  bool('display_htpasswd_form', true, { group: 'authorization', help: 'show the htpasswd form' }),
  list('allowed_groups', [], {
    group: 'authorization',
    flag: 'allowed-group',
    help: 'allowed groups (any of)',
  }),
  list('allowed_roles', [], {
    ...AW,
    group: 'authorization',
    flag: 'allowed-role',
    help: 'keycloak-oidc only',
  }),
  list('whitelist_domains', [], {
    group: 'authorization',
    flag: 'whitelist-domain',
    help: 'domains allowed as redirect targets',
  }),
  list('skip_auth_routes', [], {
    group: 'authorization',
    flag: 'skip-auth-route',
    help: '[METHOD=]regex or [METHOD!=]regex of paths that skip authentication',
  }),
  list('skip_auth_regex', [], {
    group: 'authorization',
    help: 'path regexes that skip authentication',
    deprecated: 'use --skip-auth-route',
  }),
  bool('skip_auth_preflight', false, { group: 'authorization', help: 'let OPTIONS requests through' }),
  list('api_routes', [], {
    group: 'authorization',
    flag: 'api-route',
    help: 'path regexes answered with JSON 401',
  }),
  list('trusted_ips', [], {
    group: 'authorization',
    flag: 'trusted-ip',
    help: 'client IPs/CIDRs that skip authentication',
  }),
  bool('skip_jwt_bearer_tokens', false, {
    group: 'authorization',
    help: 'accept Authorization: Bearer <JWT>',
  }),
  bool('bearer_token_login_fallback', true, {
    group: 'authorization',
    help: 'treat an invalid bearer token as no session (false: 403)',
  }),
  list('extra_jwt_issuers', [], {
    group: 'authorization',
    help: 'more bearer-token issuers as issuer=audience',
  }),

  // ── headers ──
  bool('set_xauthrequest', false, { group: 'headers', help: 'send X-Auth-Request-* response headers' }),
  bool('set_authorization_header', false, {
    group: 'headers',
    help: 'send Authorization: Bearer <id_token>',
  }),
  bool('set_basic_auth', false, { group: 'headers', help: 'send Authorization: Basic' }),
  str('basic_auth_password', '', { group: 'headers', secret: true, help: 'password of the Basic header' }),
  bool('pass_access_token', false, {
    group: 'headers',
    help: 'with --set-xauthrequest: X-Auth-Request-Access-Token',
  }),
  bool('prefer_email_to_user', false, { group: 'headers', help: 'use the email as the Basic-auth user' }),
  bool('pass_user_headers', true, {
    ...AI,
    group: 'headers',
    help: 'upstream request headers (never proxied)',
  }),
  bool('pass_basic_auth', true, {
    ...AI,
    group: 'headers',
    help: 'upstream request headers (never proxied)',
  }),
  bool('pass_authorization_header', false, { ...AW, group: 'headers', help: 'upstream request header' }),
  bool('skip_auth_strip_headers', true, {
    ...AI,
    group: 'headers',
    help: 'upstream request headers (never proxied)',
  }),
  str('signature_key', '', {
    ...AW,
    group: 'headers',
    secret: true,
    help: 'GAP-Signature of upstream requests',
  }),

  // ── logging ──
  bool('auth_logging', true, { group: 'logging', help: 'log authentication events' }),
  str('auth_logging_format', '', { ...AW, group: 'logging', help: 'Go template (gatehouse logs JSON)' }),
  bool('request_logging', true, { group: 'logging', help: 'log requests' }),
  str('request_logging_format', '', { ...AW, group: 'logging', help: 'Go template (gatehouse logs JSON)' }),
  bool('standard_logging', true, { group: 'logging', help: 'log standard messages' }),
  str('standard_logging_format', '', { ...AW, group: 'logging', help: 'Go template (gatehouse logs JSON)' }),
  bool('errors_to_info_log', false, {
    ...AW,
    group: 'logging',
    help: 'gatehouse writes every JSON log line, errors included, to stdout',
  }),
  list('exclude_logging_paths', [], {
    group: 'logging',
    flag: 'exclude-logging-path',
    help: 'paths not request-logged',
  }),
  bool('logging_local_time', true, {
    ...AW,
    group: 'logging',
    help: 'gatehouse logs epoch-millisecond timestamps (JSON)',
  }),
  bool('silence_ping_logging', false, { group: 'logging', help: 'do not log health and readiness checks' }),
  str('logging_filename', '', { ...AW, group: 'logging', help: 'log file (gatehouse logs to stdout)' }),
  int('logging_max_size', 100, { ...AW, group: 'logging', help: 'log rotation' }),
  int('logging_max_age', 7, { ...AW, group: 'logging', help: 'log rotation' }),
  int('logging_max_backups', 0, { ...AW, group: 'logging', help: 'log rotation' }),
  bool('logging_compress', false, { ...AW, group: 'logging', help: 'log rotation' }),

  // ── metrics ──
  str('metrics_address', '', { group: 'metrics', help: 'Prometheus metrics listener (empty disables)' }),
  str('metrics_secure_address', '', { group: 'metrics', help: 'TLS metrics listener' }),
  str('metrics_tls_cert_file', '', { group: 'metrics', help: 'TLS certificate of the metrics listener' }),
  str('metrics_tls_key_file', '', { group: 'metrics', help: 'TLS key of the metrics listener' }),
] as const;

type OptionUnion = (typeof OPTION_LIST)[number];

/** Config field name → its table row. */
export type OptionsByField = { readonly [D in OptionUnion as D['field']]: D };

/** Config field names. */
export type ConfigField = OptionUnion['field'];

type Shape = { [D in OptionUnion as D['field']]: D['schema'] };

/** zod schema of the whole configuration, built from the table. */
export const configSchema = z
  .object(Object.fromEntries(OPTION_LIST.map((d) => [d.field, d.schema])) as unknown as Shape)
  .readonly();

/** The validated, deeply frozen configuration (durations in milliseconds). */
export type Config = z.infer<typeof configSchema>;

/** Table rows by config field. */
export const OPTIONS: OptionsByField = Object.freeze(
  Object.fromEntries(OPTION_LIST.map((d) => [d.field, d])),
) as unknown as OptionsByField;

/** Command-line switches that are not configuration values (COMPAT.md §8.1.4). */
export interface MetaFlag {
  readonly flag: string;
  readonly short?: string;
  readonly takesValue: boolean;
  readonly help: string;
  readonly support: Support;
}

export const META_FLAGS: readonly MetaFlag[] = [
  {
    flag: 'config',
    takesValue: true,
    support: 'supported',
    help: 'TOML config file (oauth2-proxy key names)',
  },
  {
    flag: 'config-test',
    takesValue: false,
    support: 'supported',
    help: 'validate the configuration and exit',
  },
  { flag: 'version', takesValue: false, support: 'supported', help: 'print the version and exit' },
  { flag: 'help', short: 'h', takesValue: false, support: 'supported', help: 'print this help and exit' },
  { flag: 'alpha-config', takesValue: true, support: 'reject', help: 'alpha YAML config: not supported' },
  { flag: 'convert-config-to-alpha', takesValue: false, support: 'reject', help: 'not supported' },
];
