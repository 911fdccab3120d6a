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

/** The fetch to give openid-client and jose. */
export function createIdpFetch(o: { sslInsecureSkipVerify: boolean }): FetchFn {
  return o.sslInsecureSkipVerify ? insecureFetch : (input, init) => globalThis.fetch(input, init);
}
