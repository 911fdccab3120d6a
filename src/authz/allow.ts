// Requests that skip authentication (COMPAT §5.4), `--api-route` matching (§1.6.3) and ajax detection (§0.5).

import { GatehouseError } from '../errors.js';
import { effectiveUri, getHeader, isUnixPeer, type RequestFacts } from '../redirect/request.js';
import { compileIpMatcher } from './ip.js';
import { compileLinearRegex } from './regex.js';
import { goUnescape } from './unescape.js';

/** One `--skip-auth-route` split into its parts (COMPAT §5.4.2). */
export interface SkipAuthRoute {
  readonly method: string;
  readonly negate: boolean;
  readonly regex: string;
}

/** A trust function; when it also knows the proxy list, X-Forwarded-For is walked past trusted hops. */
export type TrustLike = ((f: RequestFacts) => boolean) & {
  readonly isTrustedProxy?: (ip: string) => boolean;
};

/** Allowed values of `--real-client-ip-header` (COMPAT §5.4.5), lowercased as Node names headers. */
const REAL_IP_HEADERS: ReadonlySet<string> = new Set([
  'x-forwarded-for',
  'x-real-ip',
  'x-proxyuser-ip',
  'x-envoy-external-address',
  'cf-connecting-ip',
]);

/**
 * Splits a `--skip-auth-route` (COMPAT §5.4.2): at the first `=` or `!=`; no separator → all methods;
 * method = uppercased left side (empty = all); negate when `!=` occurs ANYWHERE in the string [Q].
 */
export function parseSkipAuthRoute(s: string): SkipAuthRoute {
  const negate = s.includes('!=');
  const eq = s.indexOf('=');
  if (eq === -1) return { method: '', negate, regex: s };
  const left = eq > 0 && s[eq - 1] === '!' ? s.slice(0, eq - 1) : s.slice(0, eq);
  return { method: left.toUpperCase(), negate, regex: s.slice(eq + 1) };
}

const decodePath = (s: string): string | undefined => goUnescape(s, false);
const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?]*/;

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * The path that skip-auth routes are matched against (COMPAT §5.4.3): cut at the first literal `#`,
 * parse, take the percent-DECODED path, cut again at the first `#` (so `%23` truncates too). When parsing
 * fails (bad escape, control character) the raw text before `?` is used. The query never takes part
 * (GHSA-7rh7-c77v-6434), nor does the fragment (GHSA-pxq7-h93f-9jrg). A leading `//` is kept as path
 * (closed deviation: Go would read it as an authority and match only the rest). Never throws.
 */
export function requestPath(uri: string): string {
  if (typeof uri !== 'string') return '';
  const hash = uri.indexOf('#');
  let s = hash === -1 ? uri : uri.slice(0, hash);
  const q = s.indexOf('?');
  if (q !== -1) s = s.slice(0, q);
  if (hasControlChar(s)) return s;
  if (s.charCodeAt(0) !== 0x2f) {
    const abs = ABSOLUTE.exec(s);
    if (abs !== null) s = s.slice(abs[0].length);
  }
  const decoded = decodePath(s);
  if (decoded === undefined) return s;
  const cut = decoded.indexOf('#');
  return cut === -1 ? decoded : decoded.slice(0, cut);
}

/** Go's `net.SplitHostPort` host part when the value is `host:port` / `[v6]:port`; else the value itself. */
function stripPort(v: string): string {
  if (v.charCodeAt(0) === 0x5b) {
    const close = v.indexOf(']');
    return close !== -1 && v[close + 1] === ':' && v.indexOf(':', close + 2) === -1 ? v.slice(1, close) : v;
  }
  const colon = v.indexOf(':');
  return colon !== -1 && v.indexOf(':', colon + 1) === -1 ? v.slice(0, colon) : v;
}

interface CompiledRoute {
  readonly method: string;
  readonly negate: boolean;
  readonly re: RegExp;
}

/** Options of {@link createAllowRules}. */
export interface AllowRuleOptions {
  readonly skipAuthRoutes: readonly string[];
  readonly skipAuthRegex: readonly string[];
  readonly skipAuthPreflight: boolean;
  readonly trustedIps: readonly string[];
  readonly reverseProxy: boolean;
  readonly realClientIpHeader: string;
  readonly trust: TrustLike;
}

/**
 * Compiles the "allowed request" test of COMPAT §5.4.1: (a) `--skip-auth-preflight` and `OPTIONS`; (b) a
 * skip-auth route or regex matches (method as received, regex on {@link requestPath} of the §4.1.1 uri,
 * `X-Forwarded-Uri` only when trusted: GHSA-7x63-xv5r-3p2x); (c) the client IP is in `--trusted-ip`.
 * The client IP is the TCP peer without `--reverse-proxy` (a unix-socket peer is not trusted); with it, the
 * `--real-client-ip-header` value, read ONLY when the peer is a trusted proxy (documented safe deviation
 * of §5.4.5). For `X-Forwarded-For` that is the right-most entry that is not itself a trusted proxy
 * (§0.1, never the client-controlled left-most); for the other headers the first element, trimmed,
 * without `:port`. Missing or garbage → not trusted. Returns an Error for invalid configuration.
 */
export function createAllowRules(opts: AllowRuleOptions): ((facts: RequestFacts) => boolean) | Error {
  const routes: CompiledRoute[] = [];
  for (const r of opts.skipAuthRegex) {
    const re = compileLinearRegex(r);
    if (re instanceof Error) return new Error(`--skip-auth-regex: ${re.message}`);
    routes.push({ method: '', negate: false, re });
  }
  for (const s of opts.skipAuthRoutes) {
    const parsed = parseSkipAuthRoute(s);
    const re = compileLinearRegex(parsed.regex);
    if (re instanceof Error) return new Error(`--skip-auth-route: ${re.message}`);
    routes.push({ method: parsed.method, negate: parsed.negate, re });
  }
  let ipMatcher: ((ip: string) => boolean) | undefined;
  if (opts.trustedIps.length > 0) {
    const m = compileIpMatcher(opts.trustedIps);
    if (m instanceof Error) return new Error(`--trusted-ip: ${m.message}`);
    ipMatcher = m;
  }
  const header = opts.realClientIpHeader.toLowerCase();
  if (opts.reverseProxy && !REAL_IP_HEADERS.has(header)) {
    return new Error(
      `--real-client-ip-header: unsupported header ${JSON.stringify(opts.realClientIpHeader)}`,
    );
  }
  const { trust, reverseProxy, skipAuthPreflight } = opts;
  const isTrustedProxy = trust.isTrustedProxy;
  const xff = header === 'x-forwarded-for';

  const clientIp = (facts: RequestFacts): string | undefined => {
    if (!reverseProxy) return isUnixPeer(facts.peer) ? undefined : facts.peer;
    if (!trust(facts)) return undefined;
    const raw = getHeader(facts.headers, header);
    if (!raw) return undefined;
    if (!xff) {
      const comma = raw.indexOf(',');
      return stripPort((comma === -1 ? raw : raw.slice(0, comma)).trim());
    }
    // Every hop appends its peer, so only entries added by trusted proxies are believable: walk left
    // from the end while the entry is itself a trusted proxy.
    const entries = raw.split(',');
    for (let k = entries.length - 1; k >= 0; k--) {
      const ip = stripPort(entries[k]!.trim());
      if (isTrustedProxy === undefined || k === 0 || !isTrustedProxy(ip)) return ip;
    }
    return undefined;
  };

  return (facts: RequestFacts): boolean => {
    if (skipAuthPreflight && facts.method === 'OPTIONS') return true;
    if (routes.length > 0) {
      const path = requestPath(effectiveUri(facts, trust(facts)));
      for (const r of routes) {
        if (r.method !== '' && r.method !== facts.method) continue;
        if (r.re.test(path) !== r.negate) return true;
      }
    }
    if (ipMatcher !== undefined) {
      const ip = clientIp(facts);
      if (ip !== undefined && ipMatcher(ip)) return true;
    }
    return false;
  };
}

/**
 * Compiles `--api-route` regexes (COMPAT §1.6.3), matched against the request URI with its query:
 * `X-Forwarded-Uri` for trusted forwarded requests, else the request's own path and query. Throws a
 * GatehouseError (`ERR_CONFIG_INVALID`) at start-up for an invalid regex; the matcher never throws.
 */
export function createApiRouteMatcher(
  regexes: readonly string[],
  trust: (f: RequestFacts) => boolean,
): (facts: RequestFacts) => boolean {
  const compiled: RegExp[] = [];
  for (const r of regexes) {
    const re = compileLinearRegex(r);
    if (re instanceof Error) throw new GatehouseError('ERR_CONFIG_INVALID', `--api-route: ${re.message}`);
    compiled.push(re);
  }
  if (compiled.length === 0) return () => false;
  return (facts: RequestFacts): boolean => {
    const uri = effectiveUri(facts, trust(facts));
    for (const re of compiled) if (re.test(uri)) return true;
    return false;
  };
}

/**
 * Ajax detection (COMPAT §0.5, overriding §1.6.2): some `Accept` value, split on `,`, has the media type
 * `application/json`, with or without parameters (case-insensitive).
 */
export function isAjax(headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  const v = headers.accept;
  if (v === undefined) return false;
  const values = typeof v === 'string' ? [v] : Array.isArray(v) ? v : [];
  for (const value of values) {
    if (typeof value !== 'string') continue;
    for (const item of value.split(',')) {
      const semi = item.indexOf(';');
      const type = (semi === -1 ? item : item.slice(0, semi)).trim().toLowerCase();
      if (type === 'application/json') return true;
    }
  }
  return false;
}
