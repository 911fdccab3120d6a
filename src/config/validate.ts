// Cross-field startup checks of COMPAT.md §8.3 and the startup warnings; reports through a Problems sink.
import { accessSync, constants, statSync } from 'node:fs';
// Validated with the very code that matches requests, so start-up and runtime cannot disagree.
import { parseSkipAuthRoute } from '../authz/allow.js';
import { compileIpMatcher } from '../authz/ip.js';
import { compileLinearRegex } from '../authz/regex.js';
import { readPublicKeyFile } from '../oidc/keys.js';
import { tryParseListenAddress } from './listen.js';
import { type Config, type ConfigField, OPTION_LIST } from './options.js';
import { cookieSecretError } from './secret.js';
import { parseStaticUpstream } from './upstream.js';

/** Where checks report; the loader formats each message with the flag, env var and value. */
export interface Problems {
  /** `value` overrides the value shown (e.g. one bad list item); null hides it. */
  error(field: ConfigField, message: string, value?: string | null): void;
  /** An error about a combination of options; no value is shown. */
  conflict(fields: readonly ConfigField[], message: string): void;
  warn(message: string): void;
  /** Whether the option was set by a flag, env var or the file (not left at its default). */
  isSet(field: ConfigField): boolean;
}

/** RFC 6265 cookie-name token characters. */
const COOKIE_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Real-client-IP headers oauth2-proxy can parse (COMPAT.md §5.4.5), compared case-insensitively. */
const REAL_IP_HEADERS = [
  'x-forwarded-for',
  'x-real-ip',
  'x-proxyuser-ip',
  'x-envoy-external-address',
  'cf-connecting-ip',
];

const UPSTREAM_HINT =
  'gatehouse answers forward-auth requests only and never proxies traffic; use --upstream=static://202 (or ' +
  'none) and let the fronting proxy forward requests, see deploy/nginx (auth_request) and deploy/traefik (ForwardAuth)';

function readableFile(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return 'is not a regular file';
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (e) {
    return e instanceof Error && 'code' in e ? `cannot be read (${String(e.code)})` : 'cannot be read';
  }
}

function httpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '';
  } catch {
    return false;
  }
}

/** Go's url.Parse accepts absolute URLs and paths; control characters and spaces are refused. */
function parsableRedirectUrl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return false;
  }
  if (s.startsWith('/')) return !s.startsWith('//') || httpUrl(`http:${s}`);
  return httpUrl(s);
}

function redisUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '';
  } catch {
    return false;
  }
}

function checkCookie(c: Config, p: Problems): void {
  if (c.cookieSecret === '') {
    p.error('cookieSecret', 'missing setting: cookie-secret or cookie-secret-file', null);
  } else {
    const why = cookieSecretError(c.cookieSecret);
    if (why)
      p.error(
        c.cookieSecretFile !== '' && !p.isSet('cookieSecret') ? 'cookieSecretFile' : 'cookieSecret',
        why,
      );
  }
  for (const old of c.previousCookieSecrets) {
    const why = cookieSecretError(old);
    if (why) p.error('previousCookieSecrets', why.replace('cookie_secret', 'previous cookie secret'), old);
  }
  if (c.cookieExpire !== 0 && c.cookieRefresh >= c.cookieExpire) {
    p.conflict(
      ['cookieRefresh', 'cookieExpire'],
      'cookie_refresh must be less than cookie_expire (or expire 0)',
    );
  }
  if (!COOKIE_TOKEN.test(c.cookieName) || c.cookieName.length > 256) {
    p.error('cookieName', 'invalid cookie name: must be an RFC 6265 token of at most 256 characters');
  }
}

function checkProvider(c: Config, p: Problems): void {
  if (c.clientId === '') p.error('clientId', 'missing setting: client-id', null);
  if (c.clientSecret === '' && c.clientSecretFile === '') {
    p.error('clientSecret', 'missing setting: client-secret or client-secret-file', null);
  }
  if (c.oidcIssuerUrl === '') p.error('oidcIssuerUrl', 'missing setting: oidc-issuer-url', null);
  else if (!httpUrl(c.oidcIssuerUrl)) p.error('oidcIssuerUrl', 'must be an http(s) URL');
  for (const f of ['loginUrl', 'redeemUrl', 'profileUrl', 'validateUrl', 'oidcJwksUrl'] as const) {
    if (c[f] !== '' && !httpUrl(c[f])) p.error(f, 'must be an http(s) URL');
  }
  const keyFiles = c.oidcPublicKeyFiles.length > 0;
  if (c.skipOidcDiscovery) {
    if (c.loginUrl === '') p.conflict(['skipOidcDiscovery', 'loginUrl'], 'missing setting: login-url');
    if (c.redeemUrl === '') p.conflict(['skipOidcDiscovery', 'redeemUrl'], 'missing setting: redeem-url');
    if (c.oidcJwksUrl === '' && !keyFiles)
      p.conflict(
        ['skipOidcDiscovery', 'oidcJwksUrl', 'oidcPublicKeyFiles'],
        'missing setting: oidc-jwks-url or oidc-public-key-file',
      );
  }
  if (keyFiles && c.oidcJwksUrl !== '') {
    p.conflict(
      ['oidcJwksUrl', 'oidcPublicKeyFiles'],
      'oidc-jwks-url and oidc-public-key-file are mutually exclusive',
    );
  }
  for (const path of c.oidcPublicKeyFiles) {
    const key = readPublicKeyFile(path);
    if (key instanceof Error) p.error('oidcPublicKeyFiles', key.message, path);
  }
  if (c.redirectUrl !== '' && !parsableRedirectUrl(c.redirectUrl)) {
    p.error('redirectUrl', 'unparsable redirect URL: expected an http(s) URL or an absolute path');
  }
  for (const alg of c.oidcEnabledSigningAlgs) {
    if (alg.startsWith('HS'))
      p.error(
        'oidcEnabledSigningAlgs',
        `${alg} ID tokens are keyed with the client secret and gatehouse verifies ID tokens only with the IdP's ` +
          "public keys: set the client's ID-token algorithm at the IdP to RS256 (or another asymmetric one) and " +
          'list that here',
        alg,
      );
  }
  for (const entry of c.extraJwtIssuers) {
    if (!entry.includes('=')) p.error('extraJwtIssuers', 'expected issuer=audience', entry);
  }
}

function checkAuthorization(c: Config, p: Problems): void {
  if (c.emailDomains.length === 0 && c.authenticatedEmailsFile === '' && c.htpasswdFile === '') {
    p.conflict(
      ['emailDomains', 'authenticatedEmailsFile'],
      'missing setting for email validation: email-domain or authenticated-emails-file required ' +
        '(use --email-domain=* to authorize all email addresses)',
    );
  }
  for (const f of ['authenticatedEmailsFile', 'htpasswdFile'] as const) {
    const why = c[f] === '' ? undefined : readableFile(c[f]);
    if (why) p.error(f, `file ${why}`);
  }
  for (const route of c.skipAuthRoutes) {
    const r = compileLinearRegex(parseSkipAuthRoute(route).regex);
    if (r instanceof Error) p.error('skipAuthRoutes', `invalid regex: ${r.message}`, route);
  }
  for (const f of ['skipAuthRegex', 'apiRoutes'] as const) {
    for (const src of c[f]) {
      const r = compileLinearRegex(src);
      if (r instanceof Error) p.error(f, `invalid regex: ${r.message}`, src);
    }
  }
  for (const f of ['trustedIps', 'trustedProxyIps'] as const) {
    for (const ip of c[f]) {
      if (compileIpMatcher([ip]) instanceof Error) p.error(f, 'not an IP address or CIDR', ip);
    }
  }
  if (c.reverseProxy && !REAL_IP_HEADERS.includes(c.realClientIpHeader.toLowerCase())) {
    p.error(
      'realClientIpHeader',
      'with --reverse-proxy it must be X-Real-IP, X-Forwarded-For, X-ProxyUser-IP, X-Envoy-External-Address or CF-Connecting-IP',
    );
  }
}

function checkSession(c: Config, p: Problems): void {
  if (c.sessionCookieMinimal) {
    const needsTokens = [
      ['cookieRefresh', c.cookieRefresh > 0],
      ['passAccessToken', c.passAccessToken],
      ['setAuthorizationHeader', c.setAuthorizationHeader],
      ['passAuthorizationHeader', c.passAuthorizationHeader],
    ] as const;
    for (const [f, on] of needsTokens) {
      if (on)
        p.conflict(
          ['sessionCookieMinimal', f],
          'session-cookie-minimal stores no tokens, so this cannot work',
        );
    }
  }
  if (c.sessionStoreType !== 'redis') return;
  if (c.redisUseSentinel && c.redisUseCluster) {
    p.conflict(['redisUseSentinel', 'redisUseCluster'], 'options are mutually exclusive');
  }
  if (c.redisUseSentinel) {
    if (c.redisSentinelMasterName === '')
      p.error('redisSentinelMasterName', 'required with --redis-use-sentinel', null);
    if (c.redisSentinelConnectionUrls.length === 0) {
      p.error('redisSentinelConnectionUrls', 'required with --redis-use-sentinel', null);
    }
  }
  if (c.redisUseCluster && c.redisClusterConnectionUrls.length === 0) {
    p.error('redisClusterConnectionUrls', 'required with --redis-use-cluster', null);
  }
  if (!c.redisUseSentinel && !c.redisUseCluster && c.redisConnectionUrl === '') {
    p.error('redisConnectionUrl', 'required with --session-store-type=redis', null);
  }
  if (c.redisConnectionUrl !== '' && !redisUrl(c.redisConnectionUrl)) {
    p.error('redisConnectionUrl', 'expected redis://… or rediss://…', null);
  }
  for (const f of ['redisSentinelConnectionUrls', 'redisClusterConnectionUrls'] as const) {
    for (const u of c[f]) if (!redisUrl(u)) p.error(f, 'expected redis://… or rediss://…', null);
  }
}

function checkServer(c: Config, p: Problems): void {
  for (const f of ['httpAddress', 'httpsAddress', 'metricsAddress', 'metricsSecureAddress'] as const) {
    if (c[f] === '' && f !== 'httpAddress') continue;
    const r = tryParseListenAddress(c[f]);
    if (r instanceof Error) p.error(f, `invalid listen address: ${r.message}`);
  }
  for (const [cert, key] of [
    ['tlsCertFile', 'tlsKeyFile'],
    ['metricsTlsCertFile', 'metricsTlsKeyFile'],
  ] as const) {
    if ((c[cert] === '') !== (c[key] === '')) p.conflict([cert, key], 'must be set together');
  }
  if (c.upstreams.length > 1) p.error('upstreams', `at most one static://<code> upstream; ${UPSTREAM_HINT}`);
  for (const u of c.upstreams) {
    if (parseStaticUpstream(u) === undefined) {
      p.error('upstreams', `only static://<status code> is supported: ${UPSTREAM_HINT}`, u);
    }
  }
}

function collectWarnings(c: Config, p: Problems): void {
  for (const d of OPTION_LIST) {
    if (!p.isSet(d.field)) continue;
    if (d.support === 'warn')
      p.warn(`--${d.flag} has no effect in gatehouse (${d.help}); accepted and ignored`);
    if (d.deprecated !== undefined) p.warn(`--${d.flag} is deprecated: ${d.deprecated}`);
  }
  if (c.reverseProxy && c.trustedIps.length > 0) {
    p.warn('--trusted-ip with --reverse-proxy: the client IP comes from the --real-client-ip-header header');
  }
  if (c.setBasicAuth && c.setAuthorizationHeader) {
    p.warn(
      '--set-basic-auth and --set-authorization-header both set: one Authorization header "Basic …,Bearer …"',
    );
  }
  if (c.reverseProxy && c.trustedProxyIps.length === 0) {
    p.warn(
      '--reverse-proxy without --trusted-proxy-ip: trusting only loopback and private ranges ' +
        '(127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7)',
    );
  }
}

/** Runs every config-only startup check of COMPAT.md §8.3 and collects the startup warnings. */
export function checkConfig(c: Config, p: Problems): void {
  checkCookie(c, p);
  checkProvider(c, p);
  checkAuthorization(c, p);
  checkSession(c, p);
  checkServer(c, p);
  collectWarnings(c, p);
}
