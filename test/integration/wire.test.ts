// The wire (src/http/wire.ts) over real sockets: a node:http server with the wire attached, whose wire
// answers GET/HEAD /wire*, next to the same server without it. Whatever the wire does not answer must
// reach node:http as if the wire were not there: same bytes, same errors, same timeouts.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import t from 'tap';
import { attachWire, type WireReply, type WireRequest, type WireStats } from '../../src/http/wire.js';

interface Rig {
  readonly server: Server;
  readonly port: number;
  readonly stats: WireStats;
  /** The requests node:http saw (`METHOD url`). */
  readonly nodeSeen: string[];
  close(): Promise<void>;
}

const json = (headers: IncomingHttpHeaders) => JSON.stringify(headers);

/** node:http answers with the request's headers as JSON (or `text`, or a delayed answer for /slow). */
function nodeHandler(seen: string[]) {
  return (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      const body = `${req.url} ${json(req.headers)}`;
      res.writeHead(200, {
        'content-type': 'application/json',
        'x-by': 'node',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  };
}

/** The wire answers /wire (sync), /wire-async (after a few ms), /wire-utf8 (a UTF-8 body). */
function wireHandle(req: WireRequest, reply: WireReply) {
  const answer = () =>
    reply
      .code(202)
      .header('x-by', 'wire')
      .header('content-type', 'application/json')
      .send(`${req.url} ${req.url.startsWith('/wire-utf8') ? '日本 ' : ''}${json(req.headers)}`);
  if (req.url.startsWith('/wire-async')) setTimeout(answer, 5);
  else answer();
}

async function rig(withWire: boolean, tune: (s: Server) => void = () => undefined): Promise<Rig> {
  const nodeSeen: string[] = [];
  const server = createServer({ maxHeaderSize: 8 * 1024 }, nodeHandler(nodeSeen));
  tune(server);
  const stats = withWire
    ? attachWire(server, { accepts: (_m, url) => url.startsWith('/wire'), handle: wireHandle })
    : { answered: 0, handedOff: 0 };
  if (stats === undefined) throw new Error('the wire is not available on this Node');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('not listening');
  return {
    server,
    port: a.port,
    stats,
    nodeSeen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Writes `parts` (one write each, a turn apart), optionally half-closes, and collects until close. */
function exchange(
  port: number,
  parts: (string | Buffer)[],
  { end = true, gapMs = 0 }: { end?: boolean; gapMs?: number } = {},
): Promise<{ text: string; sock: Socket }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(port, '127.0.0.1', async () => {
      for (const p of parts) {
        sock.write(p);
        await new Promise((r) => setTimeout(r, gapMs));
      }
      if (end) sock.end();
    });
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1'), sock }));
    sock.on('error', reject);
  });
}

const noDate = (s: string) => s.replace(/\r\nDate: [^\r]*/g, '\r\nDate: -');
const get = (path: string, headers: string[] = ['Host: a'], method = 'GET', version = '1.1') =>
  `${method} ${path} HTTP/${version}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`;

let wired: Rig;
let plain: Rig;
t.before(async () => {
  wired = await rig(true);
  plain = await rig(false);
});
t.teardown(async () => {
  await wired?.close();
  await plain?.close();
});

/** The same bytes to both servers; their answers (Date aside). */
async function both(parts: (string | Buffer)[], opts?: { end?: boolean; gapMs?: number }) {
  const [w, p] = await Promise.all([exchange(wired.port, parts, opts), exchange(plain.port, parts, opts)]);
  return { wire: noDate(w.text), node: noDate(p.text) };
}

t.test('the wire answers its requests with node:http framing and hands the rest over', async (t) => {
  const before = { ...wired.stats };
  const seen = wired.nodeSeen.length;
  const { text } = await exchange(wired.port, [
    get('/wire?a=1') + get('/wire-async') + get('/wire', ['Host: a'], 'HEAD') + get('/node') + get('/wire'),
  ]);
  const heads = [...text.matchAll(/HTTP\/1\.1 (\d+) [^\r]*\r\n(?:[^\r]+\r\n)*?x-by: (\w+)/g)].map(
    (m) => `${m[1]} ${m[2]}`,
  );
  // In order; /node and everything after it are node:http's (a connection is handed over for good).
  t.same(heads, ['202 wire', '202 wire', '202 wire', '200 node', '200 node']);
  t.match(
    text,
    /^HTTP\/1\.1 202 Accepted\r\nx-by: wire\r\ncontent-type: application\/json\r\ncontent-length: \d+\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n\/wire\?a=1 \{"host":"a"\}HTTP/,
  );
  t.match(
    text,
    /x-by: wire\r\ncontent-type: application\/json\r\ncontent-length: (\d+)\r\n[\s\S]*?\r\n\r\nHTTP\/1\.1 200 OK/,
    'HEAD: no body',
  );
  t.same(wired.nodeSeen.slice(seen), ['GET /node', 'GET /wire']);
  t.equal(wired.stats.answered - before.answered, 3);
  t.equal(wired.stats.handedOff - before.handedOff, 1);
});

t.test('request headers: the same object node:http builds (property)', async (t) => {
  const names = [
    'Host',
    'host',
    'Cookie',
    'cookie',
    'COOKIE',
    'Set-Cookie',
    'X-Forwarded-For',
    'x-forwarded-for',
    'Authorization',
    'User-Agent',
    'X-Auth-Request-User',
    'X-Custom',
    'Accept',
    'Age',
    'From',
    'x_odd',
  ];
  const value = fc.stringMatching(/^[!-~]([ !-~]{0,20}[!-~])?$/);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom(...names), value), { maxLength: 40 }), async (hs) => {
      const lines = ['Host: h', ...hs.map(([n, v]) => `${n}: ${v}`)];
      // One connection: the wire answers the first, node:http (after the hand-over) the second.
      const { text } = await exchange(wired.port, [get('/wire', lines) + get('/node', lines)]);
      const wireJson = /\/wire (\{.*?\})HTTP\/1\.1/s.exec(text)?.[1];
      const nodeJson = /\/node (\{.*\})$/s.exec(text)?.[1];
      return wireJson !== undefined && wireJson === nodeJson;
    }),
    { numRuns: 150 },
  );
  t.pass('150 header lists: the same headers object on the wire as on node:http');
});

t.test('requests split across reads, a byte at a time, are answered by the wire', async (t) => {
  const before = { ...wired.stats };
  const req = get('/wire', ['Host: a', `Cookie: ${'c'.repeat(300)}`, 'Connection: close']);
  const { text } = await exchange(
    wired.port,
    [...req].map((ch) => Buffer.from(ch, 'latin1')),
    {
      gapMs: 1,
    },
  );
  t.match(
    text,
    /^HTTP\/1\.1 202 Accepted\r\n[\s\S]*Connection: close\r\n\r\n\/wire \{"host":"a","cookie":"c+","connection":"close"\}$/,
  );
  t.equal(wired.stats.answered - before.answered, 1);
  t.equal(wired.stats.handedOff - before.handedOff, 0);
  // A request for node:http that arrives in pieces is handed over whole.
  const other = await exchange(wired.port, [get('/no').slice(0, 7), get('/no').slice(7)], { gapMs: 5 });
  t.match(other.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\/no \{"host":"a"\}/);
  // Also a byte at a time, longer than the pieces the wire keeps before joining them.
  const slowNo = get('/no', ['Host: a', `X-Long: ${'l'.repeat(150)}`, 'Connection: close']);
  const bytewise = await exchange(
    wired.port,
    [...slowNo].map((ch) => Buffer.from(ch, 'latin1')),
    { gapMs: 1 },
  );
  t.match(
    bytewise.text,
    /^HTTP\/1\.1 200 OK\r\n[\s\S]*\/no \{"host":"a","x-long":"l{150}","connection":"close"\}$/,
  );
});

t.test(
  'what node:http treats specially reaches node:http, with the same answer as without the wire',
  async (t) => {
    const cases: [string, (string | Buffer)[]][] = [
      ['a body', [`GET /wire HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`]],
      [
        'chunked',
        [
          `GET /wire HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n`,
        ],
      ],
      ['Expect', [get('/wire', ['Host: a', 'Expect: 100-continue', 'Connection: close'])]],
      ['an unknown Expect', [get('/wire', ['Host: a', 'Expect: tea', 'Connection: close'])]],
      ['no Host on HTTP/1.1', [get('/wire', ['Connection: close'])]],
      ['Upgrade', [get('/wire', ['Host: a', 'Connection: upgrade', 'Upgrade: websocket'])]],
      ['POST', [get('/wire', ['Host: a', 'Connection: close'], 'POST')]],
      ['a parse error', [`GET /wire HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n`]],
      ['a bad version', [`GET /wire HTTP/9.1\r\nHost: a\r\n\r\n`]],
      ['headers over the size limit', [get('/wire', ['Host: a', `X-Big: ${'b'.repeat(9000)}`])]],
      ['the client ends mid-request', [`GET /wire HTTP/1.1\r\nHost: a\r\nX-Half: 1`]],
      ['HTTP/1.0', [get('/wire', ['Host: a'], 'GET', '1.0')]],
      ['HTTP/1.0 keep-alive', [get('/wire', ['Host: a', 'Connection: keep-alive'], 'GET', '1.0')]],
      ['HTTP/1.0 HEAD', [get('/wire', ['Host: a'], 'HEAD', '1.0')]],
    ];
    for (const [what, parts] of cases) {
      const { wire, node } = await both(parts);
      // node:http's own requests answer 200 (x-by: node); compare with the wire's answers rewritten to it
      // for the cases the wire itself answers (HTTP/1.0).
      const asNode = wire.replace(
        /HTTP\/1\.1 202 Accepted\r\nx-by: wire\r\ncontent-type: application\/json/g,
        'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-by: node',
      );
      t.equal(asNode, node, what);
    }
    // A good request, then garbage in the same read: node:http's parser meets the garbage before its
    // answer to the first request is written, and sends only its 400. The wire answers the first request,
    // then hands the garbage to node:http, whose 400 follows.
    const { wire, node } = await both([`${get('/wire')}GARBAGE\r\n\r\n`]);
    t.equal(node, 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    t.match(
      wire,
      /^HTTP\/1\.1 202 Accepted\r\n[\s\S]*\r\n\r\n\/wire \{"host":"a"\}HTTP\/1\.1 400 Bad Request\r\nConnection: close\r\n\r\n$/,
    );
  },
);

t.test('pipelined and slow readers: every answer, in order, without buffering without bound', async (t) => {
  const n = 3000;
  const batch = Array.from({ length: n }, (_, i) => get(`/wire${i % 7 === 0 ? '-async' : ''}?i=${i}`)).join(
    '',
  );
  const sock = connect(wired.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.pause(); // not reading: the server must stop reading too, then go on once we do
  sock.write(batch);
  await new Promise((r) => setTimeout(r, 100));
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  let text = '';
  for (let i = 0; i < 200 && (text.match(/HTTP\/1\.1 202/g) ?? []).length < n; i++) {
    sock.resume();
    await new Promise((r) => setTimeout(r, 25));
    text = Buffer.concat(chunks).toString('latin1');
  }
  sock.destroy();
  const order = [...text.matchAll(/\/wire(?:-async)?\?i=(\d+) /g)].map((m) => Number(m[1]));
  t.equal(order.length, n, 'all answered');
  t.same(
    order,
    Array.from({ length: n }, (_, i) => i),
    'in order',
  );
});

t.test(
  'the parser reads the socket itself: no stream data events for requests the wire answers',
  async (t) => {
    const r = await rig(true);
    t.teardown(() => r.close());
    let events = 0;
    let sockets = 0;
    r.server.on('connection', (s: Socket) => {
      sockets++;
      s.on('data', () => events++);
    });
    const reqs = Array.from({ length: 50 }, (_, i) => get(`/wire?i=${i}`));
    const { text } = await exchange(r.port, reqs, { gapMs: 1 });
    t.equal((text.match(/HTTP\/1\.1 202/g) ?? []).length, 50, 'all answered');
    t.equal(sockets, 1);
    t.equal(events, 0, 'the reads went to the parser, not through the socket stream');
    // Handed to node:http, the connection is read through the stream again.
    const handed = await exchange(r.port, [get('/wire'), get('/node', ['Host: a', 'Connection: close'])], {
      gapMs: 5,
    });
    t.match(handed.text, /^HTTP\/1\.1 202 [\s\S]*HTTP\/1\.1 200 OK\r\n[\s\S]*\/node \{/);
    t.ok(events > 0, 'node:http read its request from data events');
  },
);

t.test('requests arriving while an answer is pending are answered after it, in order', async (t) => {
  // Each a separate write, a turn apart: the later ones are read while /wire-async (5 ms) is pending.
  const parts = [
    get('/wire-async?i=0'),
    get('/wire?i=1'),
    get('/wire-async?i=2').slice(0, 20),
    get('/wire-async?i=2').slice(20),
    get('/wire?i=3'),
    get('/node?i=4'),
    get('/wire?i=5', ['Host: a', 'Connection: close']),
  ];
  const { text } = await exchange(wired.port, parts, { gapMs: 1, end: false });
  const order = [...text.matchAll(/\/(?:wire|node)(?:-async)?\?i=(\d+) /g)].map((m) => Number(m[1]));
  t.same(order, [0, 1, 2, 3, 4, 5], 'every answer, in order');
});

t.test('an async answer for a client that has gone: nothing breaks', async (t) => {
  const sock = connect(wired.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write(get('/wire-async'));
  sock.destroy();
  await new Promise((r) => setTimeout(r, 30));
  const { text } = await exchange(wired.port, [get('/wire', ['Host: a', 'Connection: close'])]);
  t.match(text, /^HTTP\/1\.1 202 /, 'still serving');
});

t.test('timeouts: idle keep-alive connections and slow headers close as node:http would', async (t) => {
  const r = await rig(true, (s) => {
    s.keepAliveTimeout = 300;
    s.headersTimeout = 300;
    s.requestTimeout = 1000;
  });
  t.teardown(() => r.close());
  // Idle after an answer: closed by the server without another byte.
  const idle = await exchange(r.port, [get('/wire')], { end: false });
  t.match(idle.text, /^HTTP\/1\.1 202 [\s\S]*Keep-Alive: timeout=0\r\n\r\n\/wire \{"host":"a"\}$/);
  // Headers that never complete: node:http's 408 (no clientError listener here), then closed.
  const slow = await exchange(r.port, ['GET /wire HTTP/1.1\r\nHost: a\r\n'], { end: false });
  t.equal(slow.text, 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
  t.equal(r.stats.handedOff, 0, 'the wire closed both itself');
});

t.test('closing the server closes idle wire connections; a busy one gets its answer first', async (t) => {
  const r = await rig(true);
  const idle = connect(r.port, '127.0.0.1');
  const idleClosed = new Promise((res) => idle.on('close', res));
  const idleData: Buffer[] = [];
  idle.on('data', (c: Buffer) => idleData.push(c));
  idle.write(get('/wire'));
  await new Promise((res) => setTimeout(res, 50));
  const busy = exchange(r.port, [get('/wire-async')], { end: false });
  // Until the wire has the request in hand (its answer comes 5 ms later).
  while (r.stats.answered < 2) await new Promise((res) => setImmediate(res));
  const closed = new Promise<void>((res) => r.server.close(() => res()));
  r.server.closeIdleConnections();
  await closed;
  await idleClosed;
  t.match(Buffer.concat(idleData).toString(), /^HTTP\/1\.1 202 /);
  const b = await busy;
  t.match(b.text, /^HTTP\/1\.1 202 [\s\S]*Connection: close\r\n/, 'the busy one: answered, then closed');
});
