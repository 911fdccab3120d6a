// Small HTTP helpers shared by the routes: strict form parsing, cookie-domain choice, canned replies.
import type { ReplyLike } from './reply.js';

/** Parses a query/form string like Go's url.ParseQuery: bad escapes and (unless allowed) ';' are errors. */
export function parseFormStrict(raw: string, allowSemicolons: boolean): URLSearchParams | Error {
  const out = new URLSearchParams();
  if (raw === '') return out;
  if (!allowSemicolons && raw.includes(';')) return new Error('invalid semicolon separator in query');
  for (const pair of raw.split(allowSemicolons ? /[&;]/ : '&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const k = eq < 0 ? pair : pair.slice(0, eq);
    const v = eq < 0 ? '' : pair.slice(eq + 1);
    try {
      out.append(decodeURIComponent(k.replace(/\+/g, ' ')), decodeURIComponent(v.replace(/\+/g, ' ')));
    } catch {
      return new Error('invalid URL escape in query');
    }
  }
  return out;
}

/** The raw query of a request target ('' when none). */
export function rawQueryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
}

/**
 * Compiles cookie-domain selection (COMPAT.md §3.1.3 as amended by §0.6): host without port, label
 * boundary, longest match wins; no match with a non-empty list falls back to the shortest domain.
 */
export function createCookieDomainChooser(
  domains: readonly string[],
  warn: (host: string) => void,
): (host: string) => string | undefined {
  if (domains.length === 0) return () => undefined;
  const sorted = [...domains].sort((a, b) => b.length - a.length);
  const bare = sorted.map((d) => (d.startsWith('.') ? d.slice(1) : d).toLowerCase());
  const last = sorted[sorted.length - 1];
  return (rawHost) => {
    const host = stripPort(rawHost).toLowerCase();
    for (let i = 0; i < sorted.length; i++) {
      const d = bare[i] as string;
      if (host === d || (host.endsWith(d) && host.charCodeAt(host.length - d.length - 1) === 46))
        return sorted[i];
    }
    warn(rawHost);
    return last;
  };
}

/** Removes a `:port` suffix, keeping bracketed IPv6 hosts intact. */
export function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end < 0 ? host : host.slice(0, end + 1);
  }
  const c = host.lastIndexOf(':');
  return c < 0 ? host : host.slice(0, c);
}

export const NO_CACHE: Readonly<Record<string, string>> = {
  'cache-control': 'no-cache, no-store, must-revalidate, max-age=0',
  expires: 'Thu, 01 Jan 1970 00:00:00 UTC',
  'x-accel-expires': '0',
};

/** Go's http.Error output: plain text, nosniff, status text plus newline (COMPAT.md conventions). */
export function plain<R extends ReplyLike>(reply: R, status: 401 | 403 | 400 | 404 | 500 | 503): R {
  const text =
    status === 401
      ? 'Unauthorized'
      : status === 403
        ? 'Forbidden'
        : status === 400
          ? 'Bad Request'
          : status === 404
            ? 'Not Found'
            : status === 503
              ? 'Service Unavailable'
              : 'Internal Server Error';
  reply.code(status);
  reply.header('content-type', 'text/plain; charset=utf-8');
  reply.header('x-content-type-options', 'nosniff');
  reply.send(`${text}\n`);
  return reply;
}

/**
 * Percent-encodes what Node refuses in a header (anything outside printable ASCII), so a validated
 * redirect such as `/日本` becomes `/%E6%97%A5%E6%9C%AC` instead of an exception and a 500.
 */
export function headerSafeUrl(url: string): string {
  return url.replace(/[^\x21-\x7e]/gu, (ch) => encodeURIComponent(ch));
}
