// The fetch used towards the IdP; with --ssl-insecure-skip-verify, one that skips TLS certificate checks (COMPAT.md §8.2).
import { request as httpsRequest } from 'node:https';

export type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

const NULL_BODY = new Set([101, 204, 205, 304]);

/**
 * A minimal fetch over node:https with certificate verification off, for `--ssl-insecure-skip-verify`
 * (Node's built-in fetch cannot turn it off without undici's Agent). Plain http goes through global fetch.
 */
function insecureFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  if (url.protocol !== 'https:') return globalThis.fetch(input, init);
  const headers = new Headers(init.headers);
  const body = init.body === undefined || init.body === null ? undefined : String(init.body);
  if (body !== undefined && !headers.has('content-length')) {
    headers.set('content-length', String(Buffer.byteLength(body)));
  }
  return new Promise<Response>((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: init.method ?? 'GET',
        headers: Object.fromEntries(headers.entries()),
        rejectUnauthorized: false,
        ...(init.signal ? { signal: init.signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (Array.isArray(v)) for (const x of v) h.append(k, x);
            else if (v !== undefined) h.set(k, v);
          }
          const status = res.statusCode ?? 502;
          resolve(new Response(NULL_BODY.has(status) ? null : Buffer.concat(chunks), { status, headers: h }));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Redirects a metadata fetch follows before giving up (Go's http.Client, which oauth2-proxy uses, stops at 10). */
export const MAX_METADATA_REDIRECTS = 5;

const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

/**
 * A metadata GET that did not end in a usable answer: carries the status and `Location` so the log line can say
 * where the IdP pointed (issue #21: "unexpected HTTP response status code" alone is not actionable).
 */
export class MetadataFetchError extends Error {
  readonly status: number;
  readonly location: string | undefined;
  constructor(message: string, status: number, location: string | undefined) {
    super(message);
    this.name = 'MetadataFetchError';
    this.status = status;
    this.location = location;
  }
}

const requestUrl = (input: string | URL | Request): string =>
  typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;

/**
 * Wraps `fetchFn` for discovery and JWKS documents (GET, no credentials): follows up to `max` redirects,
 * http→https and same-scheme ones, never https→http. Anything else is answered as is. Token, userinfo and
 * other credentialed requests do not use this (a redirect there must never carry a secret elsewhere).
 */
export function followRedirects(fetchFn: FetchFn, max = MAX_METADATA_REDIRECTS): FetchFn {
  return async (input, init = {}) => {
    const method = (init.method ?? 'GET').toUpperCase();
    let url = requestUrl(input);
    if (method !== 'GET') return fetchFn(input, init);
    for (let hop = 0; ; hop++) {
      const res = await fetchFn(url, { ...init, redirect: 'manual' });
      if (!REDIRECT_STATUS.has(res.status)) return res;
      const location = res.headers.get('location') ?? undefined;
      await res.body?.cancel().catch(() => undefined);
      const where = location === undefined ? 'no Location' : `Location: ${location.slice(0, 300)}`;
      if (location === undefined)
        throw new MetadataFetchError(
          `${url} answered ${res.status} without a Location`,
          res.status,
          undefined,
        );
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new MetadataFetchError(
          `${url} answered ${res.status} with a bad ${where}`,
          res.status,
          location,
        );
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new MetadataFetchError(`${url} redirects to a non-HTTP URL (${where})`, res.status, location);
      }
      if (new URL(url).protocol === 'https:' && next.protocol === 'http:') {
        throw new MetadataFetchError(
          `${url} answered ${res.status} redirecting from https to http, which is refused (${where})`,
          res.status,
          location,
        );
      }
      if (hop >= max) {
        throw new MetadataFetchError(
          `${url} answered ${res.status}: more than ${max} redirects (${where})`,
          res.status,
          location,
        );
      }
      url = next.href;
    }
  };
}

/** The fetch to give openid-client and jose. */
export function createIdpFetch(o: { sslInsecureSkipVerify: boolean }): FetchFn {
  return o.sslInsecureSkipVerify ? insecureFetch : (input, init) => globalThis.fetch(input, init);
}
