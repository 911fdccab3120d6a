// The few reply operations the auth check uses, and a reply that writes them straight to node:http.
//
// GET/HEAD /oauth2/auth is answered without Fastify's request/reply machinery (see server.ts, fastAuth):
// it is the request every proxied request costs, and Fastify's routing, hooks and reply object were a
// measured share of it. RawReply writes the answer exactly as Fastify's reply.send() would (same header
// names and order, the same content-length rules), so a proxy cannot tell the two apart; an integration
// test compares the answers of both paths byte for byte.
import type { IncomingMessage, ServerResponse } from 'node:http';

/** What the auth check writes through; Fastify's reply has these, and so does RawReply. */
export interface ReplyLike {
  code(statusCode: number): unknown;
  header(name: string, value: string | string[]): unknown;
  send(payload?: string): unknown;
}

export class RawReply implements ReplyLike {
  statusCode = 200;
  sent = false;
  #headers: Record<string, string | string[]> = {};
  readonly #head: boolean;
  readonly #res: ServerResponse;

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.#head = req.method === 'HEAD';
    this.#res = res;
  }

  code(statusCode: number): this {
    this.statusCode = statusCode;
    return this;
  }

  /** Like Fastify's reply.header: names lower-cased, repeated set-cookie values appended. */
  header(name: string, value: string | string[]): this {
    const key = name.toLowerCase();
    const prev = this.#headers[key];
    if (key === 'set-cookie' && prev !== undefined) {
      this.#headers[key] = ([] as string[]).concat(prev, value);
    } else {
      this.#headers[key] = value;
    }
    return this;
  }

  /** Forgets the headers set so far (an error answer must not carry a half-built success's headers). */
  reset(): void {
    this.#headers = {};
    // A writeHead that threw (a header Node refused) has already set the status text; let the next one
    // choose its own rather than send "500 Accepted".
    this.#res.statusMessage = '';
  }

  /** Fastify's rules: no payload → content-length 0 (except HEAD, 1xx, 204, 304); else its byte length. */
  send(payload?: string): this {
    const h = this.#headers;
    const status = this.statusCode;
    if (payload === undefined) {
      if (status >= 200 && status !== 204 && status !== 304 && !this.#head) h['content-length'] = '0';
    } else {
      h['content-length'] = String(Buffer.byteLength(payload));
    }
    const res = this.#res;
    res.writeHead(status, h);
    this.sent = true;
    // One write() for head and body. res.end(payload), and res.write(payload) then res.end(), both cork the
    // socket and add an empty final chunk, which the uncork sends as a two-buffer writev (measured: ~30 %
    // of a 401's CPU time here). Uncorking right after write() sends head and body as one buffer, and
    // end() then has nothing left to add. write() corks only when the socket was not corked already, so
    // this undoes its own cork and no one else's.
    if (payload !== undefined) {
      const socket = res.socket;
      const corked = socket !== null && socket.writableCorked > 0;
      res.write(payload);
      if (socket !== null && !corked && socket.writableCorked > 0) socket.uncork();
    }
    res.end();
    return this;
  }
}
