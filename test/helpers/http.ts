// Raw HTTP requests against a local gatehouse and readers for the headers it answers with.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface RawRequest {
  readonly method?: string;
  /** Sent exactly as given (fetch would normalise it). */
  readonly path: string;
  readonly headers?: Record<string, string | string[]>;
  /** Source address of the socket, e.g. `127.0.0.2` to be a different loopback peer. */
  readonly localAddress?: string;
}

/** One request to 127.0.0.1:`port` over a fresh socket with the exact path, method, headers and source address given. */
export function raw(port: number, o: RawRequest): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: o.method ?? 'GET',
        path: o.path,
        headers: o.headers ?? {},
        agent: false,
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const IDENTITY = /^(gap-auth|x-auth-request-.*|authorization)$/;

/** The identity headers of a response (COMPAT.md §2), by lowercase name. */
export const identity = (h: IncomingHttpHeaders): Record<string, unknown> =>
  Object.fromEntries(Object.entries(h).filter(([k]) => IDENTITY.test(k)));

/** The Set-Cookie values of a response (none → []). */
export const setCookies = (h: IncomingHttpHeaders): string[] => h['set-cookie'] ?? [];

/** Whether the response clears cookie `name` (empty value, Max-Age=0). */
export const clears = (h: IncomingHttpHeaders, name = '_oauth2_proxy'): boolean =>
  setCookies(h).some((c) => c.startsWith(`${name}=;`) && /;\s*Max-Age=0(;|$)/.test(c));
