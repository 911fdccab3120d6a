// The auth check's own HTTP/1.1 connection handling, in front of node:http (plain HTTP listeners only).
//
// Every proxied request costs one auth request, so what node:http spends per request (an IncomingMessage
// and a ServerResponse, their streams and events) is a large share of the product's cost: measured here,
// answering the same request from node:http's own parser without those objects took ~17 µs of CPU per
// request against ~27 µs through node:http. attachWire() takes over a server's connections: each one is
// read by the same parser node:http uses (llhttp through Node's binding, with the server's header size
// limit and leniency), which, as in node:http, reads the socket's handle itself (no stream 'data' event
// or Buffer per read), and a request that the caller accepts (GET or HEAD, no body, no Expect or Upgrade,
// a Host header on HTTP/1.1) is answered here with exactly the bytes node:http would have written.
//
// Anything else (another path or method, a body, a parse error, HTTP/1.0 without keep-alive is fine but
// anything unusual) hands the connection to node:http: the bytes of the request in hand and everything
// after it are put back on the socket and node:http's own connection listener takes the socket over, for
// good. node:http then parses those bytes itself, so both see the same request and node:http answers
// errors (400, 431, 408) the way it always does. Responses keep their order on a connection: the next
// request is read only after the current one is answered.
//
// Timeouts mirror node:http's: an idle keep-alive connection is closed after the server's
// keepAliveTimeout (+1 s, as Node does), and a request whose headers are still incomplete after
// headersTimeout (or requestTimeout, if shorter) gets node:http's timeout answer (clientError).
// closeIdleConnections/closeAllConnections cover these connections too, so a server closes as before.

import {
  maxHeaderSize as defaultMaxHeaderSize,
  type IncomingHttpHeaders,
  IncomingMessage,
  type Server,
  STATUS_CODES,
} from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';

interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): undefined | Error;
  close(): void;
  /** Makes the parser the reader of a stream handle: reads are parsed natively, then kOnExecute is called. */
  consume(handle: StreamHandle): void;
  unconsume(): void;
  /** A copy of the read being parsed (valid only inside kOnExecute). */
  getCurrentBuffer(): Buffer;
  [callback: number]: unknown;
}
/** The native side of a net.Socket (libuv stream), as node:http's consuming parser uses it. */
interface StreamHandle {
  readonly isStreamBase?: boolean;
  /** Bytes read from the stream so far (counted before each read reaches its reader). */
  readonly bytesRead: number;
  /** net.Socket's own note of whether the handle is reading. */
  reading?: boolean;
  /** Set when a parser consumes the handle (node:http then reads it through 'data' events). */
  _consumed?: boolean;
  readStart(): number;
  readStop(): number;
}
interface ParserClass {
  new (): Parser;
  REQUEST: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone: number;
  kLenientAll: number;
}
interface HttpCommon {
  HTTPParser: ParserClass;
  methods: string[];
  isLenient: () => boolean;
  chunkExpression: RegExp;
  _checkInvalidHeaderChar: (v: string) => boolean;
  _checkIsHttpToken: (v: string) => boolean;
}

/** Node's parser binding and helpers; undefined where this Node does not have them (no wire then). */
const common: HttpCommon | undefined = (() => {
  try {
    const c = createRequire(import.meta.url)('_http_common') as Partial<HttpCommon>;
    const addLine = (IncomingMessage.prototype as unknown as { _addHeaderLine?: unknown })._addHeaderLine;
    return typeof c.HTTPParser === 'function' &&
      Array.isArray(c.methods) &&
      typeof c.isLenient === 'function' &&
      c.chunkExpression instanceof RegExp &&
      typeof c._checkInvalidHeaderChar === 'function' &&
      typeof c._checkIsHttpToken === 'function' &&
      typeof addLine === 'function'
      ? (c as HttpCommon)
      : undefined;
  } catch {
    return undefined;
  }
})();

/** Whether this Node offers what the wire needs (otherwise attachWire does nothing). */
export const wireAvailable = common !== undefined;

/** node:http's own header-line folding (duplicates joined or dropped, names lower-cased). */
const addHeaderLine = (
  IncomingMessage.prototype as unknown as {
    _addHeaderLine: (
      this: { joinDuplicateHeaders: boolean },
      f: string,
      v: string,
      d: IncomingHttpHeaders,
    ) => void;
  }
)._addHeaderLine;

/** One request the wire answers. */
export interface WireRequest {
  readonly method: 'GET' | 'HEAD';
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly peer: string | undefined;
}

export interface WireHandlers {
  /** Whether this request is the wire's to answer (otherwise node:http gets it and the rest of the connection). */
  accepts(method: 'GET' | 'HEAD', url: string): boolean;
  /** Answers it: must call reply.send() exactly once, now or later. */
  handle(req: WireRequest, reply: WireReply): void;
}

export interface WireStats {
  /** Requests answered on the wire. */
  answered: number;
  /** Connections handed to node:http. */
  handedOff: number;
}

const HEADER_TIMEOUT_CODE = 'ERR_HTTP_REQUEST_TIMEOUT';
/** Node keeps an idle socket this much longer than the Keep-Alive timeout it advertises. */
const KEEP_ALIVE_BUFFER_MS = 1000;
/** At most this many pieces of an incomplete request are kept before they are joined. */
const PARTIAL_PIECES = 64;
/** How often timeouts are checked; activity stamps may be this stale, so limits get this much extra. */
const SWEEP_MS = 1000;

let dateCache: string | undefined;
/** Node's Date header: one string per second. */
function utcDate(): string {
  if (dateCache === undefined) {
    const d = new Date();
    dateCache = d.toUTCString();
    setTimeout(() => {
      dateCache = undefined;
    }, 1000 - d.getMilliseconds()).unref();
  }
  return dateCache;
}

/** The reply for one wire request: ReplyLike (reply.ts), written as node:http's writeHead + end would. */
/**
 * Header names and values already checked against node:http's rules. Strings are immutable, so one that
 * passed once always passes; the auth check sends the same few names and, per session, the same value
 * strings on every request (a groups value can run to kilobytes, which the character check would
 * otherwise scan each time). Bounded: cleared when full.
 */
const checkedNames = new Set<string>();
const checkedValues = new Set<string>();
const CHECKED_MAX = 4096;

function checkHeader(c: HttpCommon, name: string, value: unknown): asserts value is string {
  if (!checkedNames.has(name)) {
    if (!c._checkIsHttpToken(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
    // What node:http's writeHead would act on itself; the auth check never sets these.
    if (name === 'connection' || name === 'transfer-encoding' || name === 'date' || name === 'trailer')
      throw new TypeError(`the wire does not write ${name}`);
    if (checkedNames.size >= CHECKED_MAX) checkedNames.clear();
    checkedNames.add(name);
  }
  if (typeof value !== 'string') throw new TypeError(`invalid value for header ${name}`);
  if (!checkedValues.has(value)) {
    if (c._checkInvalidHeaderChar(value)) throw new TypeError(`invalid value for header ${name}`);
    if (checkedValues.size >= CHECKED_MAX) checkedValues.clear();
    checkedValues.add(value);
  }
}

/** The reply for one wire request: ReplyLike (reply.ts), written as node:http's writeHead + end would. */
export class WireReply {
  statusCode = 200;
  sent = false;
  /** Header names (lower-cased) and their values, in the order first set. */
  #names: string[] = [];
  #values: (string | string[])[] = [];
  readonly #conn: Conn;
  readonly #head: boolean;
  readonly #keepAlive: boolean;
  readonly #chunkedByDefault: boolean;

  constructor(conn: Conn, head: boolean, keepAlive: boolean, chunkedByDefault: boolean) {
    this.#conn = conn;
    this.#head = head;
    this.#keepAlive = keepAlive;
    this.#chunkedByDefault = chunkedByDefault;
  }

  code(statusCode: number): this {
    this.statusCode = statusCode;
    return this;
  }

  /** Like Fastify's reply.header: names lower-cased, repeated set-cookie values appended. */
  header(name: string, value: string | string[]): this {
    const key = name.toLowerCase();
    const i = this.#names.indexOf(key);
    if (i < 0) {
      this.#names.push(key);
      this.#values.push(value);
    } else if (key === 'set-cookie') {
      this.#values[i] = ([] as string[]).concat(this.#values[i] as string | string[], value);
    } else {
      this.#values[i] = value;
    }
    return this;
  }

  /** Forgets the headers set so far (an error answer must not carry a half-built success's headers). */
  reset(): void {
    this.#names = [];
    this.#values = [];
  }

  /**
   * Fastify's content-length rules (as RawReply), then node:http's serialisation: the same validation
   * (a refused name or value throws before anything is written), status line, header order, Date,
   * Connection/Keep-Alive and close rules. One socket write for head and body.
   */
  send(payload?: string): this {
    if (this.sent) throw new Error('reply already sent');
    const c = common as HttpCommon;
    const status = this.statusCode | 0;
    if (status < 100 || status > 999) throw new RangeError(`invalid status code ${status}`);
    const hasBody = !this.#head && status >= 200 && status !== 204 && status !== 304;
    if (payload === undefined) {
      if (status >= 200 && status !== 204 && status !== 304 && !this.#head)
        this.header('content-length', '0');
    } else {
      this.header('content-length', String(Buffer.byteLength(payload)));
    }
    const names = this.#names;
    const values = this.#values;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      const value = values[i];
      if (Array.isArray(value)) {
        for (const v of value) {
          checkHeader(c, name, v);
          head += `${name}: ${v}\r\n`;
        }
      } else {
        checkHeader(c, name, value);
        head += `${name}: ${value}\r\n`;
      }
    }
    head += `Date: ${utcDate()}\r\n`;
    const conn = this.#conn;
    const contLen = names.includes('content-length');
    let last = false;
    if (this.#keepAlive && (contLen || this.#chunkedByDefault) && !conn.draining) {
      head += 'Connection: keep-alive\r\n';
      const kat = conn.wire.server.keepAliveTimeout;
      if (kat) head += `Keep-Alive: timeout=${Math.floor(kat / 1000)}\r\n`;
    } else {
      last = true;
      head += 'Connection: close\r\n';
    }
    if (!contLen && hasBody) {
      // node:http would send a chunked or close-delimited body; the auth check always has a length.
      throw new TypeError('the wire writes bodies with a content-length only');
    }
    head += '\r\n';
    this.sent = true;
    let out: string | Buffer = head;
    if (hasBody && payload !== undefined && payload.length > 0) {
      out =
        Buffer.byteLength(payload) === payload.length
          ? head + payload
          : Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(payload, 'utf8')]);
    }
    conn.respond(out, last);
    return this;
  }
}

/** Per-server state shared by its connections. */
interface Wire {
  readonly server: Server;
  readonly handlers: WireHandlers;
  readonly nodeListener: (socket: Socket) => void;
  readonly conns: Set<Conn>;
  readonly stats: WireStats;
  readonly maxHeaderSize: number;
  readonly lenient: number;
  readonly maxHeaderEntries: number;
  readonly lineCtx: { joinDuplicateHeaders: boolean };
  /** The parser's async resource (one for all: the wire's callbacks run in the socket's own context). */
  readonly resource: object;
  /** A coarse clock (ms), advanced by the sweep: activity stamps cost an assignment, not a clock read. */
  clock: number;
  draining: boolean;
}

/** libuv's "already reading" (not an error here). */
const UV_EALREADY = -(osConstants.errno.EALREADY ?? 114);

/** Restarts reading; a handle that cannot read any more (closing under us) ends the connection, as net.Socket does. */
function readOn(handle: StreamHandle, socket: Socket): void {
  handle.reading = true;
  const err = handle.readStart();
  if (err !== 0 && err !== UV_EALREADY) socket.destroy();
}

class Conn {
  readonly wire: Wire;
  readonly socket: Socket;
  readonly parser: Parser;
  readonly peer: string | undefined;
  /** The socket's stream handle, read by the parser itself (see onRead). */
  readonly handle: StreamHandle;
  /** handle.bytesRead up to the end of the last read handled: the length of each new read follows. */
  seen = 0;
  /** Reading stopped by the wire (pipelined requests behind a pending answer, or a client not reading). */
  stopped = false;
  /** The bytes of the current request from its first byte (only while it is incomplete). */
  partial: Buffer[] | undefined = undefined;
  /** Data that arrived while a request was being answered. */
  queued: Buffer[] = [];
  busy = false;
  eof = false;
  closed = false;
  draining = false;
  last: number;
  /** When the current incomplete request began (coarse clock). */
  started = 0;
  /** Headers and URL the parser flushed early (more than 32 headers, or split reads). */
  flushed: string[] = [];
  flushedUrl = '';
  /** The request whose headers just completed (set by the parser callback, read after execute). */
  got:
    | {
        method: number;
        url: string;
        headers: string[];
        major: number;
        minor: number;
        upgrade: boolean;
        keepAlive: boolean;
      }
    | undefined = undefined;
  readonly onData = (d: Buffer) => this.data(d);
  readonly onEnd = () => this.end();
  readonly onError = (e: Error) => this.clientError(e);
  readonly onClose = () => this.detach();

  constructor(wire: Wire, socket: Socket, handle: StreamHandle) {
    this.wire = wire;
    this.socket = socket;
    this.handle = handle;
    this.peer = socket.remoteAddress;
    this.last = wire.clock;
    const P = (common as HttpCommon).HTTPParser;
    const parser = new P();
    parser[P.kOnHeaders] = (headers: string[], url: string) => {
      if (this.flushed.length < wire.maxHeaderEntries) this.flushed.push(...headers);
      this.flushedUrl += url;
    };
    parser[P.kOnHeadersComplete] = (
      major: number,
      minor: number,
      headers: string[] | undefined,
      method: number,
      url: string | undefined,
      _status: unknown,
      _statusText: unknown,
      upgrade: boolean,
      keepAlive: boolean,
    ) => {
      this.got = {
        method,
        url: url ?? this.flushedUrl,
        headers: headers ?? this.flushed,
        major,
        minor,
        upgrade,
        keepAlive,
      };
      this.flushed = [];
      this.flushedUrl = '';
      // 2: no body, stop here (llhttp's upgrade pause): the request is answered (or handed off) before the
      // parser reads a byte past its headers. Requests with a body are handed off, so none is skipped.
      return 2;
    };
    parser[P.kOnBody] = () => undefined;
    parser[P.kOnMessageComplete] = () => undefined;
    parser[P.kOnExecute] = (ret: number | Error) => this.onRead(ret);
    this.parser = parser;
    this.reset();
    // 'data' keeps the socket flowing, so that its 'end' is emitted; the reads themselves go to the parser.
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    wire.conns.add(this);
    // As node:http does for plain sockets: the parser reads the handle itself, into one shared buffer,
    // instead of a fresh 64 KiB buffer, a Buffer and a stream 'data' event per read (measured here: ~6 µs
    // of CPU less per 7 KB request). EOF and read errors still reach the socket ('end', 'error').
    this.seen = handle.bytesRead;
    handle._consumed = true;
    parser.consume(handle);
  }

  /** (Re)starts the parser at a request boundary. */
  reset(): void {
    const P = (common as HttpCommon).HTTPParser;
    this.parser.initialize(P.REQUEST, this.wire.resource, this.wire.maxHeaderSize, this.wire.lenient);
  }

  /** Bytes that reached the socket's 'data' event instead of the parser (not expected while consumed). */
  data(d: Buffer): void {
    this.last = this.wire.clock;
    this.seen += d.length;
    if (this.busy) {
      this.queued.push(d);
      // A client that pipelines while an answer is pending waits for it; stop reading meanwhile.
      this.stop();
      return;
    }
    this.feed(d);
  }

  /**
   * One read, already parsed by the consuming parser: `ret` is how many of its bytes the parser took (up
   * to the end of a request's headers, where it stops), or its parse error. The bytes themselves are
   * copied out only when needed: a request spanning reads (kept for a possible hand-off), pipelined bytes
   * after the request, or a hand-off.
   */
  onRead(ret: number | Error): void {
    const wire = this.wire;
    const total = this.handle.bytesRead;
    const len = total - this.seen;
    this.seen = total;
    this.last = wire.clock;
    if (this.closed) return;
    if (this.busy) {
      // A read while an answer is pending (a pipelining client). The parser has taken it from the fresh
      // state it was left in; it is parsed again, after what was queued before it, once the answer is out.
      this.got = undefined;
      this.reset();
      this.queued.push(this.parser.getCurrentBuffer());
      this.stop();
      return;
    }
    const got = this.got;
    this.got = undefined;
    const partial = this.partial;
    if (partial === undefined) this.started = wire.clock;
    if (got === undefined) {
      const bytes = this.parser.getCurrentBuffer();
      if (ret instanceof Error) {
        this.handOff(partial === undefined ? [bytes] : [...partial, bytes]);
        return;
      }
      // Headers not complete yet (bounded: the parser refuses more than the size limit).
      this.keep(bytes);
      return;
    }
    const taken = typeof ret === 'number' ? ret : len;
    const rest = taken < len ? this.parser.getCurrentBuffer().subarray(taken) : undefined;
    const served = this.serve(got, ret, () => {
      const bytes = this.parser.getCurrentBuffer();
      return partial === undefined ? [bytes] : [...partial, bytes];
    });
    if (!served || rest === undefined) return;
    if (!this.busy) {
      this.feed(rest);
      return;
    }
    // Pipelined requests behind one whose answer is pending: read no more until it is out. (A lone request
    // answered later does not stop reading: that would cost two system calls per request.)
    this.queued.unshift(rest);
    this.stop();
  }

  /**
   * Keeps the bytes of an incomplete request (for a hand-off). A client sending a byte per read would
   * otherwise leave one Buffer per byte (tens of thousands up to the header limit): the pieces are joined
   * whenever PARTIAL_PIECES have gathered, so a connection holds at most that many.
   */
  keep(bytes: Buffer): void {
    const partial = this.partial;
    if (partial === undefined) this.partial = [bytes];
    else if (partial.length < PARTIAL_PIECES) partial.push(bytes);
    else this.partial = [Buffer.concat([...partial, bytes])];
  }

  /** Stops reading the socket until start(). */
  stop(): void {
    if (this.stopped || this.closed) return;
    this.stopped = true;
    this.handle.reading = false;
    this.handle.readStop();
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    if (this.socket.destroyed) return;
    readOn(this.handle, this.socket);
  }

  /** Parses `d` (which follows this.partial) and answers each complete request in it, in order. */
  feed(d: Buffer): void {
    const wire = this.wire;
    let chunk = d;
    while (chunk.length > 0 && !this.closed) {
      const partial = this.partial;
      if (partial === undefined) this.started = wire.clock;
      const r = this.parser.execute(chunk);
      const got = this.got as Conn['got'];
      // Not kept past this request: an idle connection holding its last request's headers (kilobytes of
      // cookies) would have them copied by every young-generation GC until its next request.
      this.got = undefined;
      if (got === undefined) {
        if (r instanceof Error) {
          this.handOff(partial === undefined ? [chunk] : [...partial, chunk]);
          return;
        }
        // Headers not complete yet: keep the bytes (bounded: the parser refuses more than the size limit).
        this.keep(chunk);
        break;
      }
      const whole = chunk;
      if (!this.serve(got, r, () => (partial === undefined ? [whole] : [...partial, whole]))) return;
      chunk = chunk.subarray(r as number);
      if (this.busy) {
        // Answered later: keep the rest until then.
        if (chunk.length > 0) this.queued.unshift(chunk);
        return;
      }
    }
    if (this.eof && !this.busy && this.queued.length === 0) this.finishEof();
  }

  /**
   * The request whose headers `got` completed (`r`: the parser's result): answered here, or the connection
   * is handed to node:http with `bytes()` (this request from its first byte, and what followed). False
   * when the connection has left the wire.
   */
  serve(got: NonNullable<Conn['got']>, r: number | Error, bytes: () => Buffer[]): boolean {
    const wire = this.wire;
    this.partial = undefined;
    // A fresh parser state for the next request: after the stop at the headers (the return value 2
    // below), llhttp stays in its upgraded mode, in which it no longer reports parse errors.
    this.reset();
    const req = typeof r === 'number' ? this.accept(got) : undefined;
    if (req === undefined) {
      this.handOff(bytes());
      return false;
    }
    const reply = new WireReply(
      this,
      req.method === 'HEAD',
      got.keepAlive,
      got.minor >= 1 || (common as HttpCommon).chunkExpression.test(String(req.headers.te ?? '')),
    );
    this.busy = true;
    wire.stats.answered++;
    try {
      wire.handlers.handle(req, reply);
    } catch {
      // The handler's own failure handling failed: no answer can be trusted, so none is sent.
      if (!reply.sent) {
        this.detach();
        this.socket.destroy();
        return false;
      }
    }
    return !this.closed;
  }

  /** The request the wire answers, or undefined when node:http must. */
  accept(got: NonNullable<Conn['got']>): WireRequest | undefined {
    const wire = this.wire;
    const method = (common as HttpCommon).methods[got.method];
    if (method !== 'GET' && method !== 'HEAD') return undefined;
    if (got.upgrade || got.major !== 1 || (got.minor !== 0 && got.minor !== 1) || wire.draining)
      return undefined;
    if (!wire.handlers.accepts(method, got.url)) return undefined;
    const raw = got.headers;
    const headers: IncomingHttpHeaders = {};
    const n = Math.min(raw.length, wire.maxHeaderEntries);
    for (let i = 0; i < n; i += 2)
      addHeaderLine.call(wire.lineCtx, raw[i] as string, raw[i + 1] as string, headers);
    // What node:http treats specially: a body, Expect, a missing Host on HTTP/1.1.
    if (
      headers['content-length'] !== undefined ||
      headers['transfer-encoding'] !== undefined ||
      headers.expect !== undefined ||
      (got.minor === 1 &&
        headers.host === undefined &&
        (wire.server as { requireHostHeader?: boolean }).requireHostHeader !== false)
    )
      return undefined;
    return { method, url: got.url, headers, peer: this.peer };
  }

  /** Writes one answer; then reads on (or closes, after a last answer). */
  respond(out: string | Buffer, last: boolean): void {
    const socket = this.socket;
    this.busy = false;
    this.last = this.wire.clock;
    if (this.closed || socket.destroyed) return;
    const flowing = typeof out === 'string' ? socket.write(out, 'latin1') : socket.write(out);
    if (last || this.draining) {
      this.queued = [];
      this.detach();
      (socket as Socket & { destroySoon(): void }).destroySoon();
      return;
    }
    if (!flowing) {
      // The client is not reading its answers: read no further requests until it does.
      this.stop();
      socket.once('drain', () => this.resume());
      return;
    }
    if (this.queued.length > 0 || this.eof || this.stopped) queueMicrotask(() => this.resume());
  }

  /** Reads on after an answer: what was queued first, then the socket. */
  resume(): void {
    if (this.closed || this.busy) return;
    if (this.queued.length > 0) {
      const q = this.queued;
      this.queued = [];
      this.feed(q.length === 1 ? (q[0] as Buffer) : Buffer.concat(q));
    } else if (this.eof) {
      this.finishEof();
    }
    if (!this.busy && !this.closed) this.start();
  }

  end(): void {
    this.eof = true;
    if (!this.busy && this.queued.length === 0) this.finishEof();
  }

  /** The client sent its last byte: an incomplete request is a parse error (node:http's), else we close. */
  finishEof(): void {
    if (this.closed) return;
    if (this.partial !== undefined) {
      const e = this.parser.finish();
      if (e instanceof Error) {
        this.clientError(e);
        return;
      }
    }
    this.detach();
    this.socket.end();
  }

  /** node:http's socketOnError: the server's clientError listeners answer, else its default answer. */
  clientError(e: Error & { code?: string }): void {
    const socket = this.socket;
    this.detach();
    socket.on('error', () => undefined);
    if (!this.wire.server.emit('clientError', e, socket)) {
      if (socket.writable) {
        socket.write(
          e.code === 'HPE_HEADER_OVERFLOW'
            ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n'
            : e.code === HEADER_TIMEOUT_CODE
              ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n'
              : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
        );
      }
      socket.destroy(e);
    }
  }

  /** node:http takes this connection over from the first byte of the request in hand. */
  handOff(bytes: Buffer[]): void {
    const socket = this.socket;
    const rest = Buffer.concat([...bytes, ...this.queued]);
    const eof = this.eof;
    const stopped = this.stopped;
    this.detach();
    this.wire.stats.handedOff++;
    socket.pause();
    // node:http reads through 'data' events then (the handle stays marked consumed, so it does not try to
    // consume it again). Reading stopped by the wire is started again: net.Socket would not restart it.
    if (stopped && !socket.destroyed) readOn(this.handle, socket);
    this.wire.nodeListener.call(this.wire.server, socket);
    // The bytes in hand go to node:http's listener first, then whatever the socket still holds.
    if (rest.length > 0) socket.emit('data', rest);
    // An end already read reaches node:http a turn later, as it would have after those bytes.
    if (eof) setImmediate(() => socket.emit('end'));
    else if (!socket.destroyed) socket.resume();
  }

  /** Stops reading requests on this socket (closing, or handed to node:http). */
  detach(): void {
    if (this.closed) return;
    this.closed = true;
    const socket = this.socket;
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    this.wire.conns.delete(this);
    const parser = this.parser;
    // Reads go back to the socket (a no-op once the handle is gone); the parser is freed a turn later,
    // never from inside its own callback.
    parser.unconsume();
    setImmediate(() => parser.close());
  }

  /** Idle: no request in progress and nothing read but not yet answered. */
  get idle(): boolean {
    return !this.busy && this.partial === undefined && this.queued.length === 0;
  }
}

/**
 * Takes over `server`'s connections (see the head of this file). Returns its counters, or undefined when
 * the wire cannot run here (this Node lacks the parser binding, or the server limits requests per socket).
 */
export function attachWire(server: Server, handlers: WireHandlers): WireStats | undefined {
  if (common === undefined || (server.maxRequestsPerSocket ?? 0) > 0) return undefined;
  const listeners = server.listeners('connection') as ((socket: Socket) => void)[];
  if (listeners.length !== 1) return undefined;
  const nodeListener = listeners[0] as (socket: Socket) => void;
  const s = server as Server & {
    insecureHTTPParser?: boolean;
    joinDuplicateHeaders?: boolean;
    maxHeaderSize?: number;
  };
  const lenient = s.insecureHTTPParser === undefined ? common.isLenient() : s.insecureHTTPParser;
  const wire: Wire = {
    server,
    handlers,
    nodeListener,
    conns: new Set(),
    stats: { answered: 0, handedOff: 0 },
    maxHeaderSize: s.maxHeaderSize || defaultMaxHeaderSize,
    lenient: lenient ? common.HTTPParser.kLenientAll : common.HTTPParser.kLenientNone,
    maxHeaderEntries: typeof server.maxHeadersCount === 'number' ? server.maxHeadersCount << 1 : 2000,
    lineCtx: { joinDuplicateHeaders: s.joinDuplicateHeaders === true },
    resource: {},
    clock: Date.now(),
    draining: false,
  };
  server.removeListener('connection', nodeListener);
  server.on('connection', (socket: Socket) => {
    const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
    if (wire.draining || !handle?.isStreamBase || handle._consumed) return nodeListener.call(server, socket);
    new Conn(wire, socket, handle);
  });

  const sweep = () => {
    const now = Date.now();
    wire.clock = now;
    const keepAlive = server.keepAliveTimeout ? server.keepAliveTimeout + KEEP_ALIVE_BUFFER_MS + SWEEP_MS : 0;
    const headers = [server.headersTimeout, server.requestTimeout].filter((x) => x > 0);
    const headersLimit = headers.length > 0 ? Math.min(...headers) + SWEEP_MS : 0;
    for (const conn of wire.conns) {
      if (conn.partial !== undefined) {
        if (headersLimit > 0 && now - conn.started >= headersLimit) {
          const e = Object.assign(new Error('Request timeout'), { code: HEADER_TIMEOUT_CODE });
          conn.clientError(e);
        }
      } else if (conn.idle && keepAlive > 0 && now - conn.last >= keepAlive) {
        conn.detach();
        conn.socket.destroy();
      }
    }
  };
  let timer: NodeJS.Timeout | undefined;
  server.on('listening', () => {
    timer ??= setInterval(sweep, SWEEP_MS).unref();
  });
  server.on('close', () => {
    if (timer) clearInterval(timer);
    timer = undefined;
  });

  // Closing: idle wire connections close with node:http's; busy ones close after their answer.
  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {
    wire.draining = true;
    for (const conn of wire.conns) {
      conn.draining = true;
      if (conn.idle) {
        conn.detach();
        (conn.socket as Socket & { destroySoon(): void }).destroySoon();
      }
    }
    closeIdle();
  };
  const closeAll = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    wire.draining = true;
    for (const conn of wire.conns) {
      conn.detach();
      conn.socket.destroy();
    }
    closeAll();
  };
  return wire.stats;
}
