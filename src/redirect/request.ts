// The per-request view used by redirect and authz rules, and when X-Forwarded-* may be believed (COMPAT §4.1).
import { compileIpMatcher, DEFAULT_TRUSTED_PROXY_RANGES } from '../authz/ip.js';
import { GatehouseError } from '../errors.js';

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/** What the redirect and authorization rules may look at in one request. All of it is attacker-controlled. */
export interface RequestFacts {
  readonly method: string;
  /** The request target as received (path+query, still percent-encoded). */
  readonly rawUrl: string;
  /** Node's header map: lowercase names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** TCP peer IP; undefined for a unix-socket peer. */
  readonly peer: string | undefined;
  /** The request arrived over TLS (the request scheme is then https). */
  readonly isTls?: boolean;
}

/** Decides whether a request is a "trusted forwarded request"; also exposes the proxy-IP check itself. */
export type ForwardedTrust = ((facts: RequestFacts) => boolean) & {
  /** Whether one address is a trusted proxy (used to walk X-Forwarded-For from the right). */
  readonly isTrustedProxy: (ip: string) => boolean;
};

/** First value of a header (Go's `Header.Get`); `name` must be lowercase. */
export function getHeader(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  name: string,
): string | undefined {
  const v = headers[name];
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return typeof v[0] === 'string' ? v[0] : undefined;
  return undefined;
}

/** A unix-socket peer: Node reports no address; Go reports `@` or a socket path (COMPAT §4.1.3). */
export function isUnixPeer(peer: string | undefined): boolean {
  return peer === undefined || peer === '@' || (typeof peer === 'string' && peer.startsWith('/'));
}

/**
 * Builds the "trusted forwarded request" test of the COMPAT conventions and §0.1/§4.1.3: `--reverse-proxy`
 * on AND (the peer is a unix socket OR the peer IP is inside `--trusted-proxy-ip`). An empty list means
 * gatehouse's default private and loopback ranges (§0.1), never everything. Throws a GatehouseError
 * (`ERR_CONFIG_INVALID`) at start-up for an invalid entry; the returned function never throws.
 */
export function createForwardedTrust(opts: {
  reverseProxy: boolean;
  trustedProxyIps: readonly string[];
}): ForwardedTrust {
  const list = opts.trustedProxyIps.length > 0 ? opts.trustedProxyIps : DEFAULT_TRUSTED_PROXY_RANGES;
  const matcher = compileIpMatcher(list);
  if (matcher instanceof Error) {
    throw new GatehouseError('ERR_CONFIG_INVALID', `--trusted-proxy-ip: ${matcher.message}`);
  }
  const reverseProxy = opts.reverseProxy;
  const trust = (facts: RequestFacts): boolean => {
    if (!reverseProxy) return false;
    if (isUnixPeer(facts.peer)) return true;
    return matcher(facts.peer as string);
  };
  return Object.assign(trust, { isTrustedProxy: matcher });
}

/**
 * The origin-form (path+query) of a request target. Absolute-form targets (`http://host/p?q`) lose their
 * scheme and authority, as Go's `URL.RequestURI()` does; anything else is returned as is.
 */
export function requestTarget(rawUrl: string): string {
  if (rawUrl.charCodeAt(0) === 0x2f) return rawUrl;
  const m = ABSOLUTE_FORM.exec(rawUrl);
  if (m === null) return rawUrl;
  const rest = rawUrl.slice(m[0].length);
  return rest.charCodeAt(0) === 0x2f ? rest : `/${rest}`;
}

/** Request scheme per COMPAT §4.1.1: `X-Forwarded-Proto` when trusted and non-empty. */
export function effectiveProto(facts: RequestFacts, trusted: boolean): string {
  if (trusted) {
    const v = getHeader(facts.headers, 'x-forwarded-proto');
    if (v) return v;
  }
  return facts.isTls === true ? 'https' : 'http';
}

/** Request host per COMPAT §4.1.1: `X-Forwarded-Host` when trusted and non-empty, else `Host` (with port). */
export function effectiveHost(facts: RequestFacts, trusted: boolean): string {
  if (trusted) {
    const v = getHeader(facts.headers, 'x-forwarded-host');
    if (v) return v;
  }
  return getHeader(facts.headers, 'host') ?? '';
}

/** Request URI per COMPAT §4.1.1: `X-Forwarded-Uri` when trusted and non-empty, else the raw path+query. */
export function effectiveUri(facts: RequestFacts, trusted: boolean): string {
  if (trusted) {
    const v = getHeader(facts.headers, 'x-forwarded-uri');
    if (v) return v;
  }
  return requestTarget(facts.rawUrl);
}
