// Raw HTTP/1.1 over node:net for hardening tests: a response-stream parser, a byte-exact client, and a plain
// node:http server that mimics gatehouse's auth decision (the reference the HTTP layer is compared with).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';

/** One answer in a server's byte stream. */
export interface Answer {
  readonly status: number;
  /** Header lines in order, names lower-cased. */
  readonly headers: readonly (readonly [string, string])[];
  /** 1xx: sent before the final answer and takes no request's turn. */
  readonly interim: boolean;
}

export interface Parsed {
  readonly answers: Answer[];
  /** Bytes after the last whole answer (an incomplete answer, or what follows a 101). */
  readonly rest: number;
  /** Set when the bytes are not a valid HTTP/1.x response stream. */
  readonly error: string | undefined;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/;

/**
 * Splits a server's byte stream into answers, framing each body as a client must (RFC 9112 §6.3): no body
 * for HEAD, 1xx, 204 and 304; else chunked, else Content-Length, else up to the close. `methods[i]` is the
 * method of the i-th request (1xx answers take no turn); `ended` says the server has closed.
 */
export function parseAnswers(data: Buffer, methods: readonly string[], ended: boolean): Parsed {
  const answers: Answer[] = [];
  let pos = 0;
  let turn = 0;
  const done = (error?: string): Parsed => ({ answers, rest: data.length - pos, error });
  while (pos < data.length) {
    const end = data.indexOf(CRLF2, pos);
    if (end < 0) return done();
    const [first = '', ...lines] = data.toString('latin1', pos, end).split('\r\n');
    const m = STATUS_LINE.exec(first);
    if (!m) return done(`not a status line: ${JSON.stringify(first.slice(0, 80))}`);
    const status = Number(m[1]);
    const headers: [string, string][] = [];
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (colon <= 0) return done(`not a header line: ${JSON.stringify(line.slice(0, 80))}`);
      headers.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()]);
    }
    let at = end + 4;
    const interim = status >= 100 && status < 200;
    if (interim) {
      answers.push({ status, headers, interim });
      pos = at;
      if (status === 101) return done(); // the rest is another protocol
      continue;
    }
    const method = methods[turn] ?? 'GET';
    const header = (name: string) => headers.filter(([n]) => n === name).map(([, v]) => v);
    const te = header('transfer-encoding').join(',').toLowerCase();
    const cl = header('content-length');
    if (method === 'HEAD' || status === 204 || status === 304) {
      // no body
    } else if (te !== '') {
      if (!/(^|,)\s*chunked\s*$/.test(te)) {
        if (!ended) return done();
        at = data.length;
      } else {
        // chunk-size [; ext] CRLF data CRLF ... 0 CRLF trailers CRLF
        for (;;) {
          const eol = data.indexOf('\r\n', at);
          if (eol < 0) return done();
          const size = Number.parseInt(data.toString('latin1', at, eol).split(';')[0] ?? '', 16);
          if (!Number.isFinite(size) || size < 0) return done('bad chunk size');
          if (size === 0) {
            // Trailer lines, then an empty line (no trailers: the CRLF after "0" starts it).
            const trailerEnd = data.indexOf(CRLF2, eol);
            if (trailerEnd < 0) return done();
            at = trailerEnd + 4;
            break;
          }
          if (data.length < eol + 2 + size + 2) return done();
          at = eol + 2 + size + 2;
        }
      }
    } else if (cl.length > 0) {
      const n = Number(cl[0]);
      if (!Number.isSafeInteger(n) || n < 0 || cl.some((v) => v !== cl[0])) return done('bad content-length');
      if (data.length < at + n) return done();
      at += n;
    } else if (ended) {
      at = data.length;
    } else {
      return done();
    }
    answers.push({ status, headers, interim });
    turn++;
    pos = at;
  }
  return done();
}

/** What came back on one connection. */
export interface Outcome {
  readonly answers: Answer[];
  /** The server closed the connection (FIN or reset) before we gave up waiting. */
  readonly closed: boolean;
  readonly error: string | undefined;
  readonly rest: number;
  /** The raw bytes, for failure messages. */
  readonly raw: Buffer;
}

export interface ExchangeOptions {
  /** Methods of the requests sent, in order (for HEAD framing). */
  readonly methods: readonly string[];
  /** Delay between pieces, ms (0: one turn of the event loop, so a piece is mostly a read of its own). */
  readonly gapMs?: number;
  /** Stop waiting for the close this long after the last piece is written, ms. Default 3000. */
  readonly waitMs?: number;
}

/**
 * Writes `pieces` to a fresh connection to 127.0.0.1:`port` exactly as given (Nagle off) and reads until
 * the server closes or `waitMs` pass. Never half-closes: a client FIN makes node:http drop pipelined
 * requests it has not answered yet, which would depend on timing.
 */
export function exchange(
  port: number,
  pieces: readonly (string | Buffer)[],
  o: ExchangeOptions,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const sock = connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    const finish = (closed: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(chunks);
      const p = parseAnswers(raw, o.methods, closed);
      resolve({ answers: p.answers, closed, error: p.error, rest: p.rest, raw });
    };
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => finish(true));
    // A reset after the server's answer (it closed with our bytes unread) is a close like any other.
    sock.on('error', () => finish(true));
    sock.once('connect', async () => {
      for (let i = 0; i < pieces.length && !finished; i++) {
        if (i > 0 && o.gapMs !== undefined) {
          await new Promise((r) => (o.gapMs ? setTimeout(r, o.gapMs) : setImmediate(r)));
        }
        if (!finished && !sock.destroyed) sock.write(pieces[i] as string | Buffer);
      }
      if (!finished) timer = setTimeout(() => finish(false), o.waitMs ?? 3000);
    });
  });
}

/** Parses a Cookie header as gatehouse does (src/cookies/chunks.ts): first occurrence of a name wins. */
function cookiesOf(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (name !== '' && !out.has(name)) out.set(name, eq < 0 ? '' : part.slice(eq + 1).trim());
  }
  return out;
}

export interface ReferenceOptions {
  /** The one valid session: cookie name → value (all chunks of a split session). */
  readonly session: ReadonlyMap<string, string>;
  readonly authPath: string;
  readonly pingPath: string;
}

/**
 * A plain node:http server with gatehouse's limits (maxHeaderSize 64 KiB; every timeout at node:http's
 * default, which is what gatehouse runs with) answering like gatehouse with the same framing: the auth path
 * (with any query, any method) → 202 (empty, Content-Length: 0 except on HEAD) when the Cookie header
 * carries exactly the session, else 401 `Unauthorized\n`; the ping path → 200 `OK`; anything else → 404.
 */
export async function startReference(o: ReferenceOptions): Promise<{ server: Server; port: number }> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const send = (status: number, body: string) => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
      res.end(body);
    };
    if (path === o.pingPath) return send(200, 'OK');
    if (path !== o.authPath) return send(404, '404 page not found\n');
    const cookies = cookiesOf(req.headers.cookie);
    if ([...o.session].every(([k, v]) => cookies.get(k) === v)) {
      // gatehouse's 202: no body, Content-Length: 0 except on HEAD (Fastify's rule, src/http/reply.ts).
      res.writeHead(202, req.method === 'HEAD' ? {} : { 'content-length': 0 });
      return res.end();
    }
    return send(401, 'Unauthorized\n');
  };
  const server = createServer({ maxHeaderSize: 64 * 1024 }, handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('not listening');
  return { server, port: a.port };
}

/** Closes a node:http server and every connection it still has. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
