// A tiny application behind the proxy under test: answers every request with the headers it received.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the backend saw of one request. */
export interface EchoedRequest {
  method: string;
  url: string;
  /** Node's view: lower-cased names, repeated headers joined or (set-cookie) listed. */
  headers: Record<string, string | string[] | undefined>;
  /** Names and values exactly as they arrived on the wire, in order. */
  rawHeaders: string[];
  bodyLength: number;
}

export interface Backend {
  readonly port: number;
  /** host:port, the form the deploy templates' {{BACKEND}} marker takes. */
  readonly hostPort: string;
  readonly requests: EchoedRequest[];
  stop(): Promise<void>;
}

export interface BackendOptions {
  /** Status per request path (default 200): lets a test check headers that must survive a backend error. */
  status?: (url: string) => number;
  /** Set-Cookie lines the application itself sends. */
  setCookies?: readonly string[];
}

function echo(req: IncomingMessage, bodyLength: number): EchoedRequest {
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    headers: { ...req.headers },
    rawHeaders: [...req.rawHeaders],
    bodyLength,
  };
}

/** Starts the echo backend on a free 127.0.0.1 port. Its JSON body is the EchoedRequest. */
export async function startBackend(opts: BackendOptions = {}): Promise<Backend> {
  const requests: EchoedRequest[] = [];
  const server = createServer((req, res) => {
    let bodyLength = 0;
    req.on('data', (d: Buffer) => {
      bodyLength += d.length;
    });
    req.on('end', () => {
      const seen = echo(req, bodyLength);
      requests.push(seen);
      const body = JSON.stringify(seen);
      const headers: Record<string, string | string[]> = {
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
      };
      if (opts.setCookies && opts.setCookies.length > 0) headers['set-cookie'] = [...opts.setCookies];
      res.writeHead(opts.status?.(seen.url) ?? 200, headers);
      res.end(body);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  let stopped = false;
  return {
    port,
    hostPort: `127.0.0.1:${port}`,
    requests,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}
