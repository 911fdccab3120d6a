// Redirect-target validation: the open-redirect rules, the whitelist matcher and a Go-compatible URL parser.
import { parseIp } from '../authz/ip.js';

/** COMPAT §4.3 rule 2: slash, then only RE2 whitespace (`[\t\n\f\r ]` plus `\v`) or 1-2 dots, then slash. */
const SLASH_TRICK = /[/\\](?:[\t\n\v\f\r ]*|\.{1,2})[/\\]/;

/** Host/port as Go's `URL.Hostname()` / `URL.Port()` report them. */
export interface HostPort {
  readonly hostname: string;
  readonly port: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function hexVal(c: number): number {
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57;
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** Go's `shouldEscape(c, encodeHost)` is false for these ASCII characters (besides alphanumerics). */
const HOST_OK = new Set('!$&\'()*+,;=:[]<>"-_.~');
/** Go's `validUserinfo` characters besides alphanumerics. */
const USERINFO_OK = new Set("-._:~!$&'()*+,;=%@");

/** Every `%` starts a `%XY` escape (Go's `unescape` for path, fragment and userinfo). */
function escapesOk(s: string): boolean {
  for (let i = s.indexOf('%'); i !== -1; i = s.indexOf('%', i + 1)) {
    if (i + 2 >= s.length || !isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) return false;
  }
  return true;
}

/** Go's `validOptionalPort`: empty, or `:` followed by digits only. */
function validOptionalPort(p: string): boolean {
  if (p === '') return true;
  if (p.charCodeAt(0) !== 0x3a) return false;
  for (let i = 1; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Go's `unescape(s, encodeHost)`: escapes only for non-ASCII bytes or `%25`; no other ASCII outside HOST_OK. */
function unescapeHost(s: string, zone: boolean): string | undefined {
  if (!s.includes('%')) {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80 && !isAlnum(c) && !HOST_OK.has(s[i]!)) return undefined;
    }
    return s;
  }
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      if (i + 2 >= s.length || !isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) return undefined;
      const v = hexVal(s.charCodeAt(i + 1)) * 16 + hexVal(s.charCodeAt(i + 2));
      const isPct25 = v === 0x25;
      if (!zone && v < 0x80 && !isPct25) return undefined;
      if (zone && !isPct25 && v !== 0x20 && v < 0x80 && !isAlnum(v) && !HOST_OK.has(String.fromCharCode(v))) {
        return undefined;
      }
      bytes.push(v);
      i += 2;
      continue;
    }
    if (c < 0x80) {
      if (!isAlnum(c) && !HOST_OK.has(s[i]!)) return undefined;
      bytes.push(c);
      continue;
    }
    // Keep already-decoded non-ASCII text as its UTF-8 bytes, like Go's byte strings.
    const cp = s.codePointAt(i)!;
    if (cp > 0xffff) i++;
    for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) bytes.push(b);
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    // Invalid UTF-8 could only ever compare equal to nothing in Go; refusing it is the closed choice.
    return undefined;
  }
}

/** Go's `parseHost`, plus the Go 1.25 rule that a bracketed host must be an IPv6 literal. */
function parseHost(host: string): string | undefined {
  if (host.charCodeAt(0) === 0x5b) {
    const close = host.lastIndexOf(']');
    if (close < 0 || !validOptionalPort(host.slice(close + 1))) return undefined;
    const zone = host.slice(0, close).indexOf('%25');
    const literal = host.slice(1, zone === -1 ? close : zone);
    if (!literal.includes(':') || parseIp(literal) === undefined) return undefined;
    if (zone !== -1) {
      const a = unescapeHost(host.slice(0, zone), false);
      const b = unescapeHost(host.slice(zone, close), true);
      const c = unescapeHost(host.slice(close), false);
      return a === undefined || b === undefined || c === undefined ? undefined : a + b + c;
    }
    return unescapeHost(host, false);
  }
  // Brackets anywhere else are never a real host (closed deviation; Go 1.25 rejects most of these too).
  if (host.includes('[') || host.includes(']')) return undefined;
  const colon = host.lastIndexOf(':');
  if (colon !== -1 && !validOptionalPort(host.slice(colon))) return undefined;
  return unescapeHost(host, false);
}

function validUserinfo(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80 || (!isAlnum(c) && !USERINFO_OK.has(s[i]!))) return false;
  }
  return true;
}

/** Go's `URL.Hostname()`/`Port()` split of a decoded host. */
function splitDecodedHost(host: string): HostPort {
  let hostname = host;
  let port = '';
  const colon = host.lastIndexOf(':');
  if (colon !== -1 && validOptionalPort(host.slice(colon))) {
    hostname = host.slice(0, colon);
    port = host.slice(colon + 1);
  }
  if (hostname.startsWith('[') && hostname.endsWith(']')) hostname = hostname.slice(1, -1);
  return { hostname, port };
}

/**
 * Parses an absolute `http://` / `https://` URL the way Go's `net/url.Parse` does for redirect validation
 * (COMPAT §4.3.1): control characters, bad `%` escapes and non-numeric ports are errors; `\` is an ordinary
 * character (and therefore invalid inside a host); the host follows the LAST `@`; IPv6 is bracketed.
 * Returns undefined on any parse failure; never throws.
 */
export function parseHttpUrl(s: string): HostPort | undefined {
  let start: number;
  if (s.startsWith('http://')) start = 7;
  else if (s.startsWith('https://')) start = 8;
  else return undefined;
  // Go checks the part before '#' only; refusing control characters everywhere is the closed superset.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return undefined;
  }
  const hash = s.indexOf('#');
  const beforeFrag = hash === -1 ? s : s.slice(0, hash);
  if (hash !== -1 && !escapesOk(s.slice(hash + 1))) return undefined;
  const q = beforeFrag.indexOf('?', start);
  const rest = q === -1 ? beforeFrag.slice(start) : beforeFrag.slice(start, q);
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const at = authority.lastIndexOf('@');
  if (at !== -1) {
    const userinfo = authority.slice(0, at);
    if (!validUserinfo(userinfo) || !escapesOk(userinfo)) return undefined;
  }
  const host = parseHost(authority.slice(at + 1));
  if (host === undefined) return undefined;
  if (!escapesOk(path)) return undefined;
  return splitDecodedHost(host);
}

interface WhitelistEntry {
  readonly exactDot: string;
  readonly exactStar: string;
  readonly suffix: string | undefined;
  /** `*` = any port; '' = the URL must carry no explicit port. */
  readonly port: string;
}

/** oauth2-proxy's `SplitHostPort` for whitelist entries: split only when the suffix is a valid port or `*`. */
function splitEntry(entry: string): { host: string; port: string } {
  let host = entry;
  let port = '';
  const colon = entry.lastIndexOf(':');
  if (colon !== -1) {
    const suffix = entry.slice(colon);
    if (suffix === ':*' || validOptionalPort(suffix)) {
      host = entry.slice(0, colon);
      port = entry.slice(colon + 1);
    }
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port };
}

/**
 * Compiles `--whitelist-domain` entries into a `(hostname, port)` matcher (COMPAT §4.4, `IsEndpointAllowed`).
 * Case-sensitive; `.d` and `*.d` match the apex and subdomains on a dot boundary; an entry port `*` allows
 * any port, a given port only that port, no port only URLs without an explicit port. A bare `*`, and
 * entries that are empty once their `.`/`*.` prefix is removed, match nothing; an empty hostname never
 * matches.
 */
export function compileWhitelist(entries: readonly string[]): (hostname: string, port: string) => boolean {
  const compiled: WhitelistEntry[] = [];
  for (const entry of entries) {
    const { host, port } = splitEntry(entry);
    const exactDot = host.startsWith('.') ? host.slice(1) : host;
    const exactStar = host.startsWith('*.') ? host.slice(2) : host;
    if (host === '' || host === '*' || exactDot === '' || exactStar === '') continue;
    const suffix = host.startsWith('.') ? host : host.startsWith('*.') ? host.slice(1) : undefined;
    compiled.push({ exactDot, exactStar, suffix, port });
  }
  return (hostname: string, port: string): boolean => {
    if (typeof hostname !== 'string' || hostname === '') return false;
    for (const e of compiled) {
      const hostOk =
        hostname === e.exactDot ||
        hostname === e.exactStar ||
        (e.suffix !== undefined && hostname.endsWith(e.suffix));
      if (hostOk && (e.port === '*' || e.port === port)) return true;
    }
    return false;
  };
}

/**
 * Builds `isValidRedirect` (COMPAT §4.3): a local path that starts with exactly one `/` and has no
 * slash-whitespace-slash or slash-dots-slash run anywhere, or an `http(s)://` URL that parses like Go's
 * `net/url` and whose host and port pass the whitelist (§4.4). Everything else is invalid.
 */
export function createRedirectValidator(whitelist: readonly string[]): (target: string) => boolean {
  const allowed = compileWhitelist(whitelist);
  return (target: string): boolean => {
    if (typeof target !== 'string' || target === '') return false;
    if (target.charCodeAt(0) === 0x2f) {
      return target.charCodeAt(1) !== 0x2f && !SLASH_TRICK.test(target);
    }
    const u = parseHttpUrl(target);
    return u !== undefined && allowed(u.hostname, u.port);
  };
}
