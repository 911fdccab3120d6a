// Stand-in for gatehouse's forward-auth contract (COMPAT §1.5-1.8, §2, §3.5) and Traefik's ForwardAuth request shape.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EchoedRequest } from './backend.js';

/**
 * Session cookie values the stand-in understands. A request carries one in `_oauth2_proxy` (or split
 * over `_oauth2_proxy_0..N`, joined as COMPAT §3.5.2 says); the value picks the answer of /oauth2/auth.
 */
export const STAND_IN_SESSION = {
  /** 202 without Set-Cookie (the common case). */
  quiet: 'stand-in-quiet',
  /** 202 plus a refreshed session small enough for one `_oauth2_proxy` cookie. */
  unsplit: 'stand-in-unsplit',
  /** 202 plus a refreshed session split into `_oauth2_proxy_0` and `_oauth2_proxy_1` (~4000 bytes each). */
  split: 'stand-in-split',
  /** 403, as when an allowed_groups query constraint fails (§1.5.1 step 5). */
  forbidden: 'stand-in-forbidden',
} as const;

/** The identity every valid stand-in session carries. */
export const STAND_IN_IDENTITY = {
  user: 'stand-in-sub-1234',
  email: 'alice@example.test',
  groups: ['admins', 'dev-team'],
  preferredUsername: 'alice',
} as const;

export const COOKIE_NAME = '_oauth2_proxy';
const FAMILY = /^_oauth2_proxy(?:_\d+)?$/;
const MAX_SET_COOKIE = 4000;

export interface StandInOptions {
  /** `--cookie-domain` for the stand-in's cookies (default: none, host-only). */
  cookieDomain?: string;
  /** `--skip-provider-button`: /oauth2/sign_in redirects to the IdP instead of rendering the page. */
  skipProviderButton?: boolean;
  /** `--upstream=static://<code>`: the catch-all answers like oauth2-proxy's Traefik mode (§1.6). */
  staticUpstream?: number;
}

/** One answer the stand-in gave. */
export interface StandInAnswer {
  path: string;
  status: number;
  setCookies: string[];
}

export interface StandInAuth {
  readonly port: number;
  /** host:port, the form the deploy templates' {{GATEHOUSE}} marker takes. */
  readonly hostPort: string;
  readonly url: string;
  readonly requests: EchoedRequest[];
  readonly answers: StandInAnswer[];
  /** The access token the stand-in hands out (random per start). */
  readonly accessToken: string;
  stop(): Promise<void>;
}

/** Cookie pairs of a Cookie header in order; values are kept raw. */
export function parseCookieHeader(header: string | undefined): Array<[string, string]> {
  if (!header) return [];
  const out: Array<[string, string]> = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    out.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
  }
  return out;
}

/** The session value per COMPAT §3.5.2: `_oauth2_proxy` alone wins, else `_0.._N` up to the first gap. */
export function readSessionValue(pairs: ReadonlyArray<[string, string]>): string | null {
  const first = new Map<string, string>();
  for (const [k, v] of pairs) if (!first.has(k)) first.set(k, v);
  const whole = first.get(COOKIE_NAME);
  if (whole !== undefined) return whole;
  let joined = '';
  for (let i = 0; ; i += 1) {
    const part = first.get(`${COOKIE_NAME}_${i}`);
    if (part === undefined) return i === 0 ? null : joined;
    joined += part;
  }
}

/** Name of a Set-Cookie line. */
export function setCookieName(line: string): string {
  return line.slice(0, line.indexOf('='));
}

function attributes(domain: string | undefined, maxAge: number): string {
  return `; Path=/${domain ? `; Domain=${domain}` : ''}; Max-Age=${maxAge}; HttpOnly; Secure; SameSite=Lax`;
}

/** Set-Cookie lines for a session value, split per COMPAT §3.5.1 (each full line ≤ 4000 characters). */
export function sessionSetCookies(value: string, domain?: string): string[] {
  const attrs = attributes(domain, 604800);
  const whole = `${COOKIE_NAME}=${value}${attrs}`;
  if (whole.length <= MAX_SET_COOKIE) return [whole];
  const lines: string[] = [];
  let rest = value;
  for (let i = 0; rest.length > 0; i += 1) {
    const prefix = `${COOKIE_NAME}_${i}=`;
    const room = MAX_SET_COOKIE - prefix.length - attrs.length;
    lines.push(`${prefix}${rest.slice(0, room)}${attrs}`);
    rest = rest.slice(room);
  }
  return lines;
}

function clearingCookie(name: string, domain: string | undefined): string {
  return `${name}=${attributes(domain, 0)}`;
}

function randomValue(length: number): string {
  return randomBytes(Math.ceil((length * 3) / 4) + 3)
    .toString('base64url')
    .slice(0, length);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A deliberately small redirect check: local absolute paths only (the real one is COMPAT §4.3). */
function localPath(s: string | null | undefined): string | null {
  if (!s?.startsWith('/') || s.startsWith('//') || s.startsWith('/\\')) return null;
  return /[\s\\]/.test(s) ? null : s;
}

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Reads the rd a sign-in page (the stand-in's or gatehouse's) carries, or null. */
export function signInPageRd(html: string): string | null {
  const m = /name="rd" value="([^"]*)"/.exec(html);
  if (!m || m[1] === undefined) return null;
  // One pass, so an escaped `&amp;lt;` stays `&lt;`.
  return m[1].replace(/&(?:#(\d+)|([a-z]+));/g, (whole, n: string | undefined, name: string | undefined) =>
    n !== undefined ? String.fromCharCode(Number(n)) : (NAMED_ENTITIES[name ?? ''] ?? whole),
  );
}

/**
 * Starts the stand-in auth server on a free port. It mimics gatehouse's contract: /oauth2/auth answers
 * 202 with X-Auth-Request-* headers (and Set-Cookie on a refresh), plain 401 without a session, never a
 * redirect; /oauth2/sign_in and /oauth2/start give simple pages and redirects; /ping and /ready answer OK.
 */
export async function startStandInAuth(opts: StandInOptions = {}): Promise<StandInAuth> {
  const requests: EchoedRequest[] = [];
  const answers: StandInAnswer[] = [];
  const accessToken = `at-${randomValue(40)}`;
  // Values handed out by refreshes: replaying one is a valid, quiet session.
  const issued = new Set<string>();
  const domain = opts.cookieDomain;

  type Reply = { status: number; headers?: Record<string, string>; setCookies?: string[]; body?: string };

  const identityHeaders = (): Record<string, string> => ({
    'X-Auth-Request-User': STAND_IN_IDENTITY.user,
    'X-Auth-Request-Email': STAND_IN_IDENTITY.email,
    'X-Auth-Request-Groups': STAND_IN_IDENTITY.groups.join(','),
    'X-Auth-Request-Preferred-Username': STAND_IN_IDENTITY.preferredUsername,
    'X-Auth-Request-Access-Token': accessToken,
    'GAP-Auth': STAND_IN_IDENTITY.email,
  });

  const plain = (status: number, setCookies: string[] = []): Reply => ({
    status,
    headers: { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' },
    setCookies,
    body: status === 401 ? 'Unauthorized\n' : 'Forbidden\n',
  });

  /** Clearing cookies for family members the request carries that `written` does not replace. */
  const clearStale = (pairs: ReadonlyArray<[string, string]>, written: readonly string[]) => {
    const keep = new Set(written.map(setCookieName));
    const names = [...new Set(pairs.map(([k]) => k))].filter((k) => FAMILY.test(k) && !keep.has(k));
    return names.map((n) => clearingCookie(n, domain));
  };

  const refreshed = (pairs: ReadonlyArray<[string, string]>, length: number): string[] => {
    const value = randomValue(length);
    issued.add(value);
    const lines = sessionSetCookies(value, domain);
    return [...lines, ...clearStale(pairs, lines)];
  };

  // Session lookup shared by /oauth2/auth and the static catch-all. null = no session.
  const decide = (pairs: ReadonlyArray<[string, string]>): Reply | null => {
    const value = readSessionValue(pairs);
    if (value === null) return null;
    if (value === STAND_IN_SESSION.forbidden) return plain(403);
    if (value === STAND_IN_SESSION.quiet || issued.has(value))
      return { status: 202, headers: identityHeaders() };
    if (value === STAND_IN_SESSION.unsplit) {
      return { status: 202, headers: identityHeaders(), setCookies: refreshed(pairs, 200) };
    }
    if (value === STAND_IN_SESSION.split) {
      // Two chunks: the first line exactly 4000 characters, the second a little shorter.
      const attrs = attributes(domain, 604800).length;
      const length = MAX_SET_COOKIE * 2 - 2 * (COOKIE_NAME.length + 3 + attrs) - 10;
      return { status: 202, headers: identityHeaders(), setCookies: refreshed(pairs, length) };
    }
    // Unknown or tampered cookie: cleared, no session (§1.5.3).
    return { status: -1, setCookies: clearStale(pairs, []) };
  };

  const redirectTarget = (req: IncomingMessage, url: URL): string =>
    localPath(url.searchParams.get('rd')) ??
    localPath(headerValue(req.headers, 'x-auth-request-redirect')) ??
    '/';

  const startLogin = (rd: string, extra: string[] = []): Reply => {
    const state = `${randomValue(43)}:${rd}`;
    const idp = new URL('https://idp.invalid/authorize');
    idp.searchParams.set('client_id', 'stand-in');
    idp.searchParams.set('response_type', 'code');
    idp.searchParams.set('state', state);
    return {
      status: 302,
      headers: { Location: idp.href, 'Cache-Control': 'no-cache, no-store, must-revalidate, max-age=0' },
      setCookies: [...extra, `${COOKIE_NAME}_csrf=${randomValue(60)}${attributes(domain, 900)}`],
    };
  };

  const signInPage = (status: number, rd: string, setCookies: string[]): Reply => ({
    status,
    headers: {
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-cache, no-store, must-revalidate, max-age=0',
    },
    setCookies,
    body: `<!DOCTYPE html><title>Sign in</title><form method="GET" action="/oauth2/start"><input type="hidden" name="rd" value="${escapeHtml(rd)}"><button>Sign in with Stand-in</button></form>\n`,
  });

  const route = (req: IncomingMessage): Reply => {
    const url = new URL(req.url ?? '/', 'http://stand-in.invalid');
    const pairs = parseCookieHeader(headerValue(req.headers, 'cookie'));
    switch (url.pathname) {
      case '/ping':
      case '/ready':
        return { status: 200, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'OK' };
      case '/oauth2/auth': {
        const d = decide(pairs);
        if (d === null) return plain(401);
        return d.status === -1 ? plain(401, d.setCookies) : d;
      }
      case '/oauth2/sign_in': {
        const rd = redirectTarget(req, url);
        const clear = clearStale(pairs, []);
        if (opts.skipProviderButton) return startLogin(rd, clear);
        return signInPage(200, rd === '/oauth2/sign_in' ? '/' : rd, clear);
      }
      case '/oauth2/start':
        return startLogin(redirectTarget(req, url));
      default: {
        if (opts.staticUpstream === undefined) {
          return {
            status: 404,
            headers: { 'Content-Type': 'text/plain; charset=utf-8' },
            body: '404 page not found\n',
          };
        }
        const d = decide(pairs);
        if (d !== null && d.status === 202) {
          return { ...d, status: opts.staticUpstream, body: 'Authenticated' };
        }
        if (d !== null && d.status === 403) return d;
        const clear = d?.setCookies ?? [];
        const accept = req.headers.accept?.split(',').map((s) => s.trim()) ?? [];
        if (accept.includes('application/json')) {
          return {
            status: 401,
            headers: { 'Content-Type': 'application/json' },
            setCookies: clear,
            body: '{}',
          };
        }
        const uri = headerValue(req.headers, 'x-forwarded-uri') ?? url.pathname + url.search;
        if (opts.skipProviderButton) return startLogin(localPath(uri) ?? '/', clear);
        return signInPage(403, localPath(uri) ?? '/', [...new Set([...clear, ...clearStale(pairs, [])])]);
      }
    }
  };

  const server = createServer((req, res) => {
    let bodyLength = 0;
    req.on('data', (d: Buffer) => {
      bodyLength += d.length;
    });
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: { ...req.headers },
        rawHeaders: [...req.rawHeaders],
        bodyLength,
      });
      const r = route(req);
      const setCookies = r.setCookies ?? [];
      answers.push({ path: (req.url ?? '').split('?')[0] ?? '', status: r.status, setCookies });
      const headers: Record<string, string | string[]> = { ...r.headers };
      if (setCookies.length > 0) headers['Set-Cookie'] = setCookies;
      const body = req.method === 'HEAD' ? '' : (r.body ?? '');
      headers['Content-Length'] = String(Buffer.byteLength(r.body ?? ''));
      res.writeHead(r.status, headers);
      res.end(body);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  let stopped = false;
  return {
    port,
    hostPort: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests,
    answers,
    accessToken,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

// ---------------------------------------------------------------------------------------------------
// Traefik ForwardAuth (pkg/middlewares/auth/forward.go): the exact request it sends, and what it does
// with the answer. No Traefik binary is available here, so tests replay its behaviour against the
// stand-in now and against the real gatehouse later.

/** The client's request as Traefik received it. */
export interface TraefikIncomingRequest {
  method: string;
  /** Host header value. */
  host: string;
  /** Request target as sent: path plus query. */
  requestUri: string;
  headers: Readonly<Record<string, string | readonly string[]>>;
  /** Peer address, `ip:port`. */
  remoteAddr: string;
  tls?: boolean;
}

/** The forwardAuth middleware options that shape the exchange (names as in Traefik's dynamic config). */
export interface TraefikForwardAuthConfig {
  address: string;
  trustForwardHeader?: boolean;
  authRequestHeaders?: readonly string[];
  authResponseHeaders?: readonly string[];
  /** Traefik v3+: auth-response cookies (by name) added to the response sent to the client. */
  addAuthCookiesToResponse?: readonly string[];
}

export interface ForwardAuthRequest {
  method: 'GET';
  url: string;
  /** Header lines in the order Traefik's Go client writes them (names in Go's canonical form). */
  headers: Array<[string, string]>;
}

export interface ForwardAuthAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  setCookies: string[];
  body: string;
}

export type TraefikOutcome =
  | { kind: 'deny'; status: number; headers: Record<string, string | string[]>; body: string }
  | { kind: 'allow'; backendHeaders: Record<string, string[]>; clientSetCookies: string[] };

const HOP_HEADERS = [
  'Connection',
  'Keep-Alive',
  'Proxy-Authenticate',
  'Proxy-Authorization',
  'Te',
  'Trailers',
  'Transfer-Encoding',
  'Upgrade',
];
// Go's Request.Write takes these from fields, never from the header map.
const GO_WRITE_EXCLUDED = ['Host', 'User-Agent', 'Content-Length', 'Transfer-Encoding', 'Trailer'];

/** Go's textproto.CanonicalMIMEHeaderKey for token names: `x_auth_request_user` → `X_auth_request_user`. */
export function canonicalHeaderKey(name: string): string {
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) return name;
  return name.toLowerCase().replace(/(^|-)([a-z])/g, (_, sep: string, c: string) => sep + c.toUpperCase());
}

function toMultiMap(headers: Readonly<Record<string, string | readonly string[]>>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [k, v] of Object.entries(headers)) {
    const key = canonicalHeaderKey(k);
    out.set(key, [...(out.get(key) ?? []), ...(typeof v === 'string' ? [v] : v)]);
  }
  return out;
}

/**
 * The request Traefik's ForwardAuth middleware sends to `address` for one client request: always GET
 * with no body, the client's headers minus hop-by-hop ones (filtered by authRequestHeaders when set),
 * and X-Forwarded-For/-Method/-Proto/-Host/-Uri computed from the request, or taken from the client's
 * own X-Forwarded-* only when trustForwardHeader is on.
 */
export function traefikForwardAuthRequest(
  incoming: TraefikIncomingRequest,
  config: TraefikForwardAuthConfig,
): ForwardAuthRequest {
  const trust = config.trustForwardHeader ?? false;
  const src = toMultiMap(incoming.headers);
  const h = new Map(src);
  for (const conn of src.get('Connection') ?? []) {
    for (const name of conn.split(',')) h.delete(canonicalHeaderKey(name.trim()));
  }
  for (const name of HOP_HEADERS) h.delete(name);
  if (config.authRequestHeaders && config.authRequestHeaders.length > 0) {
    const allowed = new Set(config.authRequestHeaders.map(canonicalHeaderKey));
    for (const k of [...h.keys()]) if (!allowed.has(k)) h.delete(k);
  }
  const first = (name: string) => src.get(name)?.[0] ?? '';

  const clientIp = incoming.remoteAddr.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  const prior = src.get('X-Forwarded-For');
  h.set('X-Forwarded-For', [trust && prior ? `${prior.join(', ')}, ${clientIp}` : clientIp]);
  const pick = (name: string, own: string) => {
    const theirs = first(name);
    if (theirs !== '' && trust) h.set(name, [theirs]);
    else if (own !== '') h.set(name, [own]);
    else h.delete(name);
  };
  pick('X-Forwarded-Method', incoming.method);
  pick('X-Forwarded-Proto', incoming.tls ? 'https' : 'http');
  if (trust && first('X-Forwarded-Port') !== '') h.set('X-Forwarded-Port', [first('X-Forwarded-Port')]);
  pick('X-Forwarded-Host', incoming.host);
  pick('X-Forwarded-Uri', incoming.requestUri);

  const target = new URL(config.address);
  const lines: Array<[string, string]> = [['Host', target.host]];
  lines.push(['User-Agent', first('User-Agent') || 'Go-http-client/1.1']);
  for (const [k, vs] of h) {
    if (GO_WRITE_EXCLUDED.includes(k)) continue;
    for (const v of vs) lines.push([k, v]);
  }
  if (!h.has('Accept-Encoding')) lines.push(['Accept-Encoding', 'gzip']);
  return { method: 'GET', url: target.href, headers: lines };
}

/** Sends a ForwardAuth request (as built by traefikForwardAuthRequest) and collects the answer. */
export function sendForwardAuthRequest(
  req: ForwardAuthRequest,
  timeoutMs = 5000,
): Promise<ForwardAuthAnswer> {
  const url = new URL(req.url);
  return new Promise((ok, fail) => {
    const r = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method: 'GET',
        headers: req.headers.flat(),
        setHost: false,
        timeout: timeoutMs,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () =>
          ok({
            status: res.statusCode ?? 0,
            headers: res.headers,
            setCookies: res.headers['set-cookie'] ?? [],
            body,
          }),
        );
      },
    );
    r.on('timeout', () => r.destroy(new Error('forward-auth request timed out')));
    r.on('error', fail);
    r.end();
  });
}

/**
 * What Traefik does with the auth answer: outside 2xx the client gets the auth server's status,
 * headers (minus hop-by-hop) and body; on 2xx each authResponseHeaders name is deleted from the
 * client's request and replaced by the auth answer's values, and (v3+) the auth cookies named in
 * addAuthCookiesToResponse are added to the client's response.
 */
export function traefikForwardAuthOutcome(
  incoming: TraefikIncomingRequest,
  config: TraefikForwardAuthConfig,
  answer: ForwardAuthAnswer,
): TraefikOutcome {
  if (answer.status < 200 || answer.status >= 300) {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(answer.headers)) {
      const key = canonicalHeaderKey(k);
      if (v === undefined || HOP_HEADERS.includes(key)) continue;
      headers[key] = v;
    }
    return { kind: 'deny', status: answer.status, headers, body: answer.body };
  }
  const backend = toMultiMap(incoming.headers);
  for (const name of config.authResponseHeaders ?? []) {
    const key = canonicalHeaderKey(name);
    backend.delete(key);
    const v = answer.headers[key.toLowerCase()];
    if (v !== undefined) backend.set(key, Array.isArray(v) ? [...v] : [v]);
  }
  const wanted = new Set(config.addAuthCookiesToResponse ?? []);
  return {
    kind: 'allow',
    backendHeaders: Object.fromEntries(backend),
    clientSetCookies: answer.setCookies.filter((c) => wanted.has(setCookieName(c))),
  };
}

// Traefik's other moving parts around ForwardAuth: the entryPoint's forwarded-headers handler
// (pkg/middlewares/forwardedheaders), the service reverse proxy, and the errors middleware
// (pkg/middlewares/customerrors). With these, a test replays a whole request through a router's chain.

// Headers the entryPoint manages; from an untrusted client they are deleted, `_` spellings included.
const MANAGED_X_HEADERS = [
  'X-Forwarded-Proto',
  'X-Forwarded-Scheme',
  'X-Forwarded-For',
  'X-Forwarded-Host',
  'X-Forwarded-Port',
  'X-Forwarded-Server',
  'X-Forwarded-Uri',
  'X-Forwarded-Method',
  'X-Forwarded-Prefix',
  'X-Forwarded-Tls-Client-Cert',
  'X-Forwarded-Tls-Client-Cert-Info',
  'X-Scheme',
  'X-Real-Ip',
];

function peerIp(remoteAddr: string): string {
  return remoteAddr.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
}

/**
 * What the routers see after the entryPoint: unless the peer is in forwardedHeaders.trustedIPs, every
 * client-sent X-Forwarded-* / X-Real-Ip (any spelling) is deleted; then X-Real-Ip, X-Forwarded-Proto,
 * -Port, -Host and -Server are filled in where empty, and repeated X-Forwarded-For values are joined.
 */
export function traefikEntryPoint(
  incoming: TraefikIncomingRequest,
  opts: { trusted?: boolean; hostname?: string } = {},
): TraefikIncomingRequest {
  const h = toMultiMap(incoming.headers);
  if (!opts.trusted) {
    for (const k of [...h.keys()]) {
      if (MANAGED_X_HEADERS.includes(canonicalHeaderKey(k.replaceAll('_', '-')))) h.delete(k);
    }
  }
  const setIfEmpty = (name: string, value: string) => {
    if ((h.get(name)?.[0] ?? '') === '') h.set(name, [value]);
  };
  setIfEmpty('X-Real-Ip', peerIp(incoming.remoteAddr));
  setIfEmpty('X-Forwarded-Proto', incoming.tls ? 'https' : 'http');
  const port = /:(\d+)$/.exec(incoming.host)?.[1];
  setIfEmpty('X-Forwarded-Port', port ?? (h.get('X-Forwarded-Proto')?.[0] === 'https' ? '443' : '80'));
  setIfEmpty('X-Forwarded-Host', incoming.host);
  const xff = h.get('X-Forwarded-For');
  if (xff && xff.length > 0) h.set('X-Forwarded-For', [xff.join(', ')]);
  h.set('X-Forwarded-Server', [opts.hostname ?? 'traefik']);
  return { ...incoming, headers: Object.fromEntries(h) };
}

/**
 * The request a router's service (loadBalancer, passHostHeader on) sends upstream for `incoming`: same
 * method and target, the Host kept, hop-by-hop headers dropped, and the peer appended to X-Forwarded-For
 * (a request the errors middleware built itself has no peer, so nothing is appended).
 */
export function traefikServiceRequest(
  incoming: TraefikIncomingRequest,
  serviceUrl: string,
): ForwardAuthRequest {
  const h = toMultiMap(incoming.headers);
  for (const conn of h.get('Connection') ?? []) {
    for (const name of conn.split(',')) h.delete(canonicalHeaderKey(name.trim()));
  }
  for (const name of HOP_HEADERS) h.delete(name);
  if (incoming.remoteAddr !== '') {
    const prior = h.get('X-Forwarded-For');
    const ip = peerIp(incoming.remoteAddr);
    h.set('X-Forwarded-For', [prior && prior.length > 0 ? `${prior.join(', ')}, ${ip}` : ip]);
  }
  const lines: Array<[string, string]> = [['Host', incoming.host]];
  lines.push(['User-Agent', h.get('User-Agent')?.[0] || 'Go-http-client/1.1']);
  for (const [k, vs] of h) {
    if (GO_WRITE_EXCLUDED.includes(k)) continue;
    for (const v of vs) lines.push([k, v]);
  }
  if (!h.has('Accept-Encoding')) lines.push(['Accept-Encoding', 'gzip']);
  const url = new URL(incoming.requestUri, serviceUrl);
  return { method: 'GET', url: url.href, headers: lines };
}

/** The errors middleware's options (names as in Traefik's dynamic config). */
export interface TraefikErrorsConfig {
  status: readonly string[];
  service: string;
  query?: string;
}

/** Whether the errors middleware replaces an answer with this status ("401", "500-599"). */
export function traefikErrorsCatches(config: TraefikErrorsConfig, status: number): boolean {
  return config.status.some((range) => {
    const [lo = '', hi = lo] = range.split('-');
    return status >= Number(lo) && status <= Number(hi);
  });
}

/** Go's url.QueryEscape: only A-Z a-z 0-9 - _ . ~ stay, a space becomes '+'. */
export function goQueryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replaceAll('%20', '+');
}

/**
 * The page request of the errors middleware for a caught `status`: GET <query> on the client's Host, with
 * `{status}` and `{url}` (url.QueryEscape of the request's URL, which for a server request is its
 * path and query) replaced and every client header copied. Its answer goes to the client with `status`.
 */
export function traefikErrorsPageRequest(
  incoming: TraefikIncomingRequest,
  config: TraefikErrorsConfig,
  serviceUrl: string,
  status: number,
): ForwardAuthRequest {
  const query = `/${(config.query ?? '').replace(/^\//, '')}`
    .replaceAll('{status}', String(status))
    .replaceAll('{url}', goQueryEscape(incoming.requestUri));
  return traefikServiceRequest({ ...incoming, method: 'GET', requestUri: query, remoteAddr: '' }, serviceUrl);
}
