// Set-Cookie serialization, the Cookie header parser and session-cookie splitting/joining/clearing (COMPAT.md §3.1, §3.5).
import type { CookieOptions } from './types.js';

/** Longest full Set-Cookie string one cookie (or chunk) may have (COMPAT.md §3.5.1). */
export const MAX_SET_COOKIE_LENGTH = 4000;
/** Longest cookie name, chunk suffix included (COMPAT.md §3.5.1). */
export const MAX_COOKIE_NAME_LENGTH = 256;

const SAME_SITE_OUTPUT: Readonly<Record<CookieOptions['sameSite'], string>> = {
  '': '',
  lax: '; SameSite=Lax',
  strict: '; SameSite=Strict',
  none: '; SameSite=None',
};

/** Everything after `name=value`, in oauth2-proxy's (Go's) attribute order (COMPAT.md §3.1.2). */
function attributes(o: CookieOptions): string {
  let s = '';
  if (o.path) s += `; Path=${o.path}`;
  if (o.domain) {
    const d = o.domain.charCodeAt(0) === 0x2e ? o.domain.slice(1) : o.domain;
    if (d) s += `; Domain=${d}`;
  }
  // Go renders a negative MaxAge as Max-Age=0; fractions cannot be expressed.
  if (o.maxAge !== undefined) s += `; Max-Age=${o.maxAge > 0 ? Math.floor(o.maxAge) : 0}`;
  if (o.httpOnly) s += '; HttpOnly';
  if (o.secure) s += '; Secure';
  return s + SAME_SITE_OUTPUT[o.sameSite];
}

/**
 * One Set-Cookie header value (COMPAT.md §3.1.1, §3.1.2): `name=value; Path=…; Domain=…; Max-Age=…;
 * HttpOnly; Secure; SameSite=…`, empty attributes omitted, a leading '.' of Domain dropped, never
 * `Expires`. `maxAge: 0` renders `Max-Age=0` (a clearing cookie).
 */
export function serializeCookie(name: string, value: string, o: CookieOptions): string {
  return `${name}=${value}${attributes(o)}`;
}

/**
 * Name of chunk `index` of a split cookie (COMPAT.md §3.5.1): `<name>_<index>`, with the base name
 * cut from the right when the whole would exceed 256 characters.
 */
export function splitCookieName(name: string, index: number): string {
  const suffix = `_${index}`;
  const overflow = name.length + suffix.length - MAX_COOKIE_NAME_LENGTH;
  return overflow > 0 ? name.slice(0, Math.max(0, name.length - overflow)) + suffix : name + suffix;
}

/**
 * Set-Cookie values for a possibly oversized cookie (COMPAT.md §3.5.1): one `<name>` cookie when its
 * full Set-Cookie string is ≤ 4000 characters, else chunks `<name>_0…` whose Set-Cookie strings are
 * exactly 4000 characters except the last. Values must be ASCII (lengths are characters).
 */
export function splitSetCookies(name: string, value: string, o: CookieOptions): string[] {
  const attrs = attributes(o);
  const whole = `${name}=${value}${attrs}`;
  if (whole.length <= MAX_SET_COOKIE_LENGTH) return [whole];
  const out: string[] = [];
  let offset = 0;
  for (let index = 0; offset < value.length; index++) {
    const chunkName = splitCookieName(name, index);
    // Always make progress, even if absurd attributes leave no room (then parts exceed the limit).
    const room = Math.max(1, MAX_SET_COOKIE_LENGTH - chunkName.length - 1 - attrs.length);
    const end = Math.min(value.length, offset + room);
    out.push(`${chunkName}=${value.slice(offset, end)}${attrs}`);
    offset = end;
  }
  return out;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * Parses a Cookie request header into name → value (COMPAT.md §3.5.2). The first occurrence of a
 * duplicated name wins; parts without a name are skipped; a part without `=` is a cookie with an
 * empty value, and one pair of surrounding double quotes is removed, as Go's net/http does. Values
 * are not URL-decoded. Never throws.
 */
export function parseCookieHeader(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (typeof header !== 'string') return out;
  const len = header.length;
  let pos = 0;
  while (pos < len) {
    let semi = header.indexOf(';', pos);
    if (semi === -1) semi = len;
    let eq = header.indexOf('=', pos);
    if (eq === -1 || eq > semi) eq = semi;
    let ns = pos;
    let ne = eq;
    while (ns < ne && isSpace(header.charCodeAt(ns))) ns++;
    while (ne > ns && isSpace(header.charCodeAt(ne - 1))) ne--;
    if (ne > ns) {
      const name = header.slice(ns, ne);
      if (!out.has(name)) {
        let vs = eq < semi ? eq + 1 : semi;
        let ve = semi;
        while (vs < ve && isSpace(header.charCodeAt(vs))) vs++;
        while (ve > vs && isSpace(header.charCodeAt(ve - 1))) ve--;
        if (ve - vs >= 2 && header.charCodeAt(vs) === 0x22 && header.charCodeAt(ve - 1) === 0x22) {
          vs++;
          ve--;
        }
        out.set(name, header.slice(vs, ve));
      }
    }
    pos = semi + 1;
  }
  return out;
}

/**
 * The session cookie value as the browser sent it (COMPAT.md §3.5.2): a cookie named exactly
 * `<name>` alone is used; otherwise the values of `<name>_0`, `<name>_1`, … (names as
 * {@link splitCookieName} makes them) are joined up to the first missing index. undefined when none.
 */
export function readChunked(name: string, cookies: ReadonlyMap<string, string>): string | undefined {
  return readChunks(name, cookies)?.join('');
}

/**
 * The pieces {@link readChunked} joins, in order: `[value]` for a cookie named exactly `<name>`, else the
 * values of `<name>_0`, `<name>_1`, … up to the first missing index. undefined when none. For callers that
 * can compare a known value against the pieces without building the joined string.
 */
export function readChunks(name: string, cookies: ReadonlyMap<string, string>): string[] | undefined {
  const whole = cookies.get(name);
  if (whole !== undefined) return [whole];
  const first = cookies.get(splitCookieName(name, 0));
  if (first === undefined) return undefined;
  const parts = [first];
  for (let index = 1; ; index++) {
    const part = cookies.get(splitCookieName(name, index));
    if (part === undefined) return parts;
    parts.push(part);
  }
}

/** True when `value` is exactly the concatenation of `parts` (without building the concatenation). */
export function equalsJoined(value: string, parts: readonly string[]): boolean {
  if (parts.length === 1) return value === parts[0];
  let total = 0;
  for (const p of parts) total += p.length;
  if (total !== value.length) return false;
  let at = 0;
  for (const p of parts) {
    // A slice of a flat string is a view; comparing it with === is a memory compare, unlike
    // startsWith(p, at), which V8 runs character by character.
    if (value.slice(at, at + p.length) !== p) return false;
    at += p.length;
  }
  return true;
}

/**
 * True when `cookieName` is `<name>` or `<name>_<digits>` (COMPAT.md §3.5.3), or a chunk name that
 * {@link splitCookieName} truncated, so that chunks of a 255/256-character name are cleared too.
 */
export function isSessionCookieName(name: string, cookieName: string): boolean {
  if (cookieName === name) return true;
  const us = cookieName.lastIndexOf('_');
  if (us < 0 || us === cookieName.length - 1) return false;
  for (let i = us + 1; i < cookieName.length; i++) {
    const c = cookieName.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  if (us === name.length && cookieName.startsWith(name)) return true;
  return us < name.length && cookieName === splitCookieName(name, Number(cookieName.slice(us + 1)));
}

/**
 * Names of the request cookies that belong to the session cookie `name`, in header order
 * (COMPAT.md §3.5.3): `<name>` and `<name>_<digits>`. Matching is literal (no regex built from the
 * name, so characters such as '.' in a cookie name match only themselves).
 */
export function presentSessionCookieNames(name: string, cookies: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const cookieName of cookies.keys()) if (isSessionCookieName(name, cookieName)) out.push(cookieName);
  return out;
}

/** Clearing Set-Cookie values (empty value, `Max-Age=0`, same attributes) for `names` (COMPAT.md §3.1.1, §3.5.3). */
export function clearingSetCookies(names: readonly string[], o: CookieOptions): string[] {
  const attrs = attributes({ ...o, maxAge: 0 });
  return names.map((n) => `${n}=${attrs}`);
}
