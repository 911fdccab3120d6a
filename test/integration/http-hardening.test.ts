// The HTTP layer is as safe as plain node:http (DESIGN.md rule 11): hostile byte streams sent over raw TCP
// to gatehouse (real IdP, real login) and to a plain node:http server with the same limits that mimics the
// auth decision (test/helpers/raw-http.ts) get the same framing: the same answers in the same order, and
// the same close. No stream ever yields a 202 without alice's session at the exact auth path. Three of the
// four failures of the removed hand-written connection layer (wire.ts) come first; the fourth (memory
// floods) and the other resource cases are in http-hardening-flood.test.ts.
import { createServer, type ServerResponse } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { startGatehouse } from '../helpers/gatehouse.js';
import { closeServer, exchange, type Outcome, parseAnswers, startReference } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const AUTH = '/oauth2/auth';

let s: Stack;
/** alice's session cookie(s) as a Cookie header value. */
let A: string;
let refPort: number;

t.before(async () => {
  s = await startStack();
  const { jar } = await s.login('alice');
  const session = new Map(jar.sessionNames().map((n) => [n, jar.cookies.get(n) as string]));
  if (session.size === 0) throw new Error('login gave no session cookie');
  A = [...session].map(([k, v]) => `${k}=${v}`).join('; ');
  const ref = await startReference({ session, authPath: AUTH, pingPath: '/ping' });
  refPort = ref.port;
  t.teardown(() => closeServer(ref.server));
});
t.teardown(() => s?.close());

type Headers = readonly (readonly [string, string])[];

/** One request, byte for byte: `Host: x` first unless `host` is false. */
const rq = (
  method: string,
  target: string,
  headers: Headers = [],
  o: { version?: string; body?: string; host?: boolean } = {},
) =>
  `${method} ${target} HTTP/${o.version ?? '1.1'}\r\n${o.host === false ? '' : 'Host: x\r\n'}${headers
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n${o.body ?? ''}`;

const cookie = (): [string, string] => ['Cookie', A];
/** `n` filler header lines `x0: a` … */
const fill = (n: number, from = 0): [string, string][] =>
  Array.from({ length: n }, (_, i) => [`x${from + i}`, 'a'] as [string, string]);
/** The request a smuggler hopes to have answered: alice's session at the auth path. */
const smuggled = () => rq('GET', AUTH, [cookie()]);

/** Closing canaries on the same connection: no cookie → 401, then alice's → 202, and the server closes. */
const CANARY = () => rq('GET', AUTH) + rq('GET', AUTH, [cookie(), ['Connection', 'close']]);
/** A closing canary that may not yield a 202: no cookie → 401, and the server closes. */
const CANARY_401 = () => rq('GET', AUTH, [['Connection', 'close']]);

/** A refusal by a route other than the auth check: gatehouse's catch-all says 403 or 404, the mimic 404. */
const norm = (status: number) => (status === 403 ? 404 : status);

interface Framing {
  /** Statuses in order (1xx included). */
  readonly statuses: (number | string)[];
  readonly closed: boolean;
  readonly error: string | undefined;
}

const framing = (o: Outcome, statuses: boolean): Framing => ({
  statuses: o.answers.map((a) => (statuses ? norm(a.status) : a.interim ? `${a.status}` : 'final')),
  closed: o.closed,
  error: o.error,
});

const count202 = (o: Outcome) => o.answers.filter((a) => a.status === 202).length;

interface Case {
  readonly name: string;
  /** The case's bytes; the canaries are appended (only the 401 one with `canary: '401'`). */
  readonly bytes: string | Buffer;
  /** Methods of the case's requests, in order (HEAD answers have no body). */
  readonly methods: readonly string[];
  /** Requests in the case that carry alice's session at the exact auth path (the most 202s it may yield). */
  readonly allowed202: number;
  /** Compare only framing (count, order, close), not statuses: the mimic knows only exact paths. */
  readonly framingOnly?: boolean;
  readonly canary?: 'both' | '401';
  /** How long to wait for a close that may not come (ms). */
  readonly waitMs?: number;
}

/** Fresh-connection canaries on gatehouse: 401 without a cookie, then 202 with alice's, then a close. */
async function freshCanary(t: Test, what: string) {
  const o = await exchange(s.port, [CANARY()], { methods: ['GET', 'GET'] });
  t.same(framing(o, true), { statuses: [401, 202], closed: true, error: undefined }, `${what}: fresh canary`);
}

/**
 * Sends one case (with the same-connection canaries) to gatehouse and to the reference server, asserts the
 * same framing and the 202 bound, then checks gatehouse on a fresh connection.
 */
async function check(t: Test, c: Case): Promise<{ gh: Outcome; ref: Outcome }> {
  const both = c.canary !== '401';
  const bytes = Buffer.concat([
    Buffer.isBuffer(c.bytes) ? c.bytes : Buffer.from(c.bytes, 'latin1'),
    Buffer.from(both ? CANARY() : CANARY_401(), 'latin1'),
  ]);
  const o = {
    methods: [...c.methods, 'GET', 'GET'],
    ...(c.waitMs !== undefined ? { waitMs: c.waitMs } : {}),
  };
  const [gh, ref] = await Promise.all([exchange(s.port, [bytes], o), exchange(refPort, [bytes], o)]);
  const full = !c.framingOnly;
  t.same(framing(gh, full), framing(ref, full), `${c.name}: the same framing as node:http`, {
    gatehouse: JSON.stringify(gh.raw.toString('latin1').slice(0, 1500)),
  });
  t.ok(
    count202(gh) <= c.allowed202 + (both ? 1 : 0),
    `${c.name}: no 202 without alice's session at the auth path (${count202(gh)})`,
  );
  await freshCanary(t, c.name);
  return { gh, ref };
}

const statusesOf = (o: Outcome) => o.answers.map((a) => a.status);

t.test('the answer parser frames bodies as a client must', async (t) => {
  const statuses = (raw: string, methods: string[], ended: boolean) => {
    const p = parseAnswers(Buffer.from(raw, 'latin1'), methods, ended);
    return { statuses: p.answers.map((a) => a.status), rest: p.rest, error: p.error };
  };
  // A body that looks like an answer is skipped by its length, whichever framing gives it.
  const fake = 'HTTP/1.1 202 Accepted\r\n\r\n';
  const cl = `HTTP/1.1 401 Unauthorized\r\nContent-Length: ${fake.length}\r\n\r\n${fake}`;
  const chunked = `HTTP/1.1 401 x\r\nTransfer-Encoding: chunked\r\n\r\n${fake.length.toString(16)}\r\n${fake}\r\n0\r\nA: b\r\n\r\n`;
  t.same(statuses(cl + chunked, ['GET', 'GET'], false), { statuses: [401, 401], rest: 0, error: undefined });
  // HEAD: no body whatever Content-Length says (so what follows is the next answer); 1xx take no
  // request's turn; 204 has no body.
  const head = 'HTTP/1.1 401 x\r\nContent-Length: 13\r\n\r\n';
  const more = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n';
  t.same(statuses(head + more + cl, ['HEAD', 'GET', 'GET'], false).statuses, [401, 100, 204, 401]);
  t.same(statuses(cl, ['HEAD'], true), { statuses: [401, 202], rest: 0, error: undefined });
  // Without a length the body runs to the close; an incomplete answer is left over, not counted.
  t.same(statuses(`HTTP/1.1 400 x\r\n\r\n${fake}`, ['GET'], true).statuses, [400]);
  t.same(statuses(cl.slice(0, -3), ['GET'], false).statuses, []);
  t.match(statuses('HTTP/1.1 401 x\r\n\r\nGARBAGE\r\n\r\n', ['HEAD'], false).error, /not a status line/);
});

t.test('regression: smuggling a request past the header-count limit', async (t) => {
  // The removed wire read at most a fixed number of header lines and lost Content-Length after them, so
  // the body was parsed as the next request on the connection. node:http refuses more than 1,000 header
  // lines with a 431 (Node 22 and 24); 900 fillers stay under that and the body is read as a body.
  for (const n of [1000, 900]) {
    const body = smuggled();
    const head = [...fill(n), ['Content-Length', String(body.length)]] as const;
    const { gh: cl } = await check(t, {
      name: `${n} filler lines, Content-Length body`,
      bytes: rq('GET', AUTH, head, { body }),
      methods: ['GET'],
      allowed202: 0,
      canary: '401',
    });
    t.equal(count202(cl), 0, `${n} + Content-Length: no 202 on that connection`);
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const { gh: te } = await check(t, {
      name: `${n} filler lines, chunked body`,
      bytes: rq('GET', AUTH, [...fill(n), ['Transfer-Encoding', 'chunked']], { body: chunked }),
      methods: ['GET'],
      allowed202: 0,
      canary: '401',
    });
    t.equal(count202(te), 0, `${n} + chunked: no 202 on that connection`);
    const { gh: h10 } = await check(t, {
      name: `${n} filler lines, HTTP/1.0 keep-alive with a body`,
      bytes: rq('GET', AUTH, [['Connection', 'keep-alive'], ...head], { version: '1.0', body }),
      methods: ['GET'],
      allowed202: 0,
      canary: '401',
    });
    t.equal(count202(h10), 0, `${n} + HTTP/1.0 keep-alive: no 202 on that connection`);
    if (n === 900) {
      // Under the limit the request is answered (401: no cookie) and the connection stays usable: the
      // body was a body. Then the no-cookie canary (401) and the close; the smuggled request is never answered.
      t.same(statusesOf(cl), [401, 401], 'the body was a body');
    } else {
      t.same(statusesOf(cl), [431], '1,002 header lines: 431 and the close');
    }
  }
  // node:http's maxHeadersCount (default 2000, 0 = no limit) is not a gatehouse setting: src/http/server.ts
  // creates its server with maxHeaderSize only, so there is no "maxHeadersCount 0" gatehouse to test.
});

/** An issuer whose every HTTP request is held until `release()`; `asked` resolves at the first one. */
async function heldIssuer(t: Test) {
  const held: ServerResponse[] = [];
  let onAsk: () => void = () => undefined;
  const asked = new Promise<void>((r) => {
    onAsk = r;
  });
  let released = false;
  const server = createServer((_req, res) => {
    if (released) return void res.writeHead(404).end();
    held.push(res);
    onAsk();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => closeServer(server));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    asked,
    release() {
      released = true;
      for (const res of held) res.writeHead(404).end();
    },
  };
}

t.test('regression: a request read while an answer is pending is parsed once', async (t) => {
  // The first request's answer waits on I/O: its bearer token is checked against an extra issuer whose
  // discovery document the test holds back (fallback on: then no cookie → 401). The next request, with 41
  // header lines, arrives in two pieces while it waits. The removed wire reset its parser on such reads
  // and parsed them again later, but kept what node's parser had already flushed (32 header lines and the
  // URL, when a piece holds more than 32 lines): the URL was read twice and the query filter failed (403).
  const jwt = [
    Buffer.from('{"alg":"RS256","kid":"k"}').toString('base64url'),
    Buffer.from('{"sub":"x","exp":9999999999}').toString('base64url'),
    'c2lnbmF0dXJl',
  ].join('.');
  const first = rq('GET', AUTH, [['Authorization', `Bearer ${jwt}`]]);
  for (const [target, cut] of [
    [`${AUTH}?allowed_groups=admins`, 'x10: a'],
    [`${AUTH}?allowed_groups=admins`, 'x36: a'],
    [`${AUTH}?allowed_groups=admins`, 'x38: '],
    [AUTH, 'x36: a'],
  ] as const) {
    const what = `${target}, split before "${cut}"`;
    const issuer = await heldIssuer(t);
    const gh = await startGatehouse(s, [
      '--email-domain=example.com',
      '--skip-jwt-bearer-tokens',
      `--extra-jwt-issuers=${issuer.url}=gatehouse`,
    ]);
    t.teardown(() => gh.close());
    const second = rq('GET', target, [...fill(40), cookie()]);
    const at = second.indexOf(cut);
    const chunks: Buffer[] = [];
    const sock = connect(gh.port, '127.0.0.1');
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    await new Promise<void>((r) => sock.once('connect', r));
    sock.write(first);
    await issuer.asked;
    sock.write(second.slice(0, at));
    await new Promise((r) => setTimeout(r, 30));
    sock.write(second.slice(at) + CANARY());
    await new Promise((r) => setTimeout(r, 30));
    t.equal(Buffer.concat(chunks).length, 0, `${what}: nothing is answered while the first is pending`);
    issuer.release();
    await closed;
    const p = parseAnswers(Buffer.concat(chunks), ['GET', 'GET', 'GET', 'GET'], true);
    t.same(
      p.answers.map((a) => a.status),
      [401, 202, 401, 202],
      `${what}: the bearer request 401, the split one 202, then the canaries; each once, in order`,
    );
    t.equal(p.rest, 0, `${what}: nothing else on the connection`);
  }
});

t.test('regression: more header lines than node:http allows get node:http’s answer', async (t) => {
  // node:http (22 and 24) answers 431 above 1,000 header lines; whatever the running Node does, gatehouse
  // must do the same, and never a 202 that node:http would not give.
  for (const [name, headers] of [
    ['cookie last', [...fill(1500), cookie()]],
    ['cookie first', [cookie(), ...fill(1500)]],
    ['cookie in the middle of 2,500', [...fill(1250), cookie(), ...fill(1250, 1250)]],
  ] as const) {
    const { gh, ref } = await check(t, {
      name: `1,500 header lines, ${name}`,
      bytes: rq('GET', AUTH, headers),
      methods: ['GET'],
      allowed202: 1,
    });
    t.ok(count202(gh) <= count202(ref), `${name}: no 202 that node:http would not give`);
  }
});

/** Runs cases one after another (each against both servers, with its canaries). */
async function matrix(t: Test, cases: readonly Case[]) {
  for (const c of cases) await check(t, c);
}

const get = (target: string, headers: Headers = [], o: Parameters<typeof rq>[3] = {}): Case => ({
  name: `GET ${JSON.stringify(target)} ${JSON.stringify(headers.map(([k]) => k))}`,
  bytes: rq('GET', target, headers, o),
  methods: ['GET'],
  allowed202:
    (target === AUTH || target.startsWith(`${AUTH}?`)) && headers.some(([k]) => k === 'Cookie') ? 1 : 0,
});

t.test('matrix: message length (Content-Length, Transfer-Encoding, bodies on GET)', async (t) => {
  const body = smuggled();
  const chunk = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
  const len = String(body.length);
  /** GET /oauth2/auth with these headers and this body; only the outer request may be answered 202. */
  const framed = (name: string, headers: Headers, b: string, version = '1.1'): Case => ({
    name,
    bytes: rq('GET', AUTH, headers, { body: b, version }),
    methods: ['GET'],
    allowed202: headers.some(([k]) => k === 'Cookie') ? 1 : 0,
  });
  const CL = (v: string): [string, string] => ['Content-Length', v];
  const TE = (v: string): [string, string] => ['Transfer-Encoding', v];
  await matrix(t, [
    framed('CL and TE', [CL(len), TE('chunked')], chunk),
    framed('TE and CL', [TE('chunked'), CL('3')], chunk),
    framed('CL and TE, the session outside', [cookie(), CL(len), TE('chunked')], chunk),
    framed('two equal CL', [CL(len), CL(len)], body),
    framed('CL list', [CL(`${len}, ${len}`)], body),
    framed('two different CL', [CL(len), CL('0')], body),
    framed('CL 0 then a different CL', [CL('0'), CL(len)], body),
    framed('negative CL', [CL('-1')], body),
    framed('signed CL', [CL(`+${len}`)], body),
    framed('hex CL', [CL(`0x${body.length.toString(16)}`)], body),
    framed('CL with junk', [CL(`${len}a`)], body),
    framed('empty CL', [CL('')], body),
    framed('huge CL', [CL('99999999999999999999')], body),
    framed('CL in spaces', [CL(`  ${len}  `)], body),
    framed('a body on GET', [CL(len)], body),
    framed('a body on GET with the session', [cookie(), CL(len)], body),
    framed('chunked GET', [TE('chunked')], chunk),
    framed('chunked GET, chunk extension', [TE('chunked')], chunk.replace('\r\n', ';a=b\r\n')),
    framed('chunked GET, bad chunk size', [TE('chunked')], `zz\r\n${body}\r\n0\r\n\r\n`),
    framed('chunked GET, trailer', [TE('chunked')], `0\r\nCookie: ${A}\r\n\r\n`),
    framed('chunked GET, LF only', [TE('chunked')], chunk.replaceAll('\r\n', '\n')),
    framed('TE twice', [TE('chunked'), TE('chunked')], chunk),
    framed('TE chunked, chunked', [TE('chunked, chunked')], chunk),
    framed('TE gzip, chunked', [TE('gzip, chunked')], chunk),
    framed('TE chunked, gzip', [TE('chunked, gzip')], chunk),
    framed('TE identity', [TE('identity')], body),
    framed('TE xchunked', [TE('xchunked')], body),
    framed('TE with a tab', [TE('\tchunked')], chunk),
    framed('TE, upper case', [TE('CHUNKED')], chunk),
    framed('TE in a Transfer_Encoding', [['Transfer_Encoding', 'chunked']], chunk),
    framed('TE on HTTP/1.0', [TE('chunked')], chunk, '1.0'),
    framed('CL on HTTP/1.0 keep-alive', [['Connection', 'keep-alive'], CL(len)], body, '1.0'),
    {
      name: 'POST with a body, then the session',
      bytes: rq('POST', AUTH, [CL('5')], { body: 'hello' }) + smuggled(),
      methods: ['POST', 'GET'],
      allowed202: 1,
    },
  ]);
});

t.test('matrix: header syntax and size', async (t) => {
  const withSession = (name: string, lines: string, allowed202 = 1): Case => ({
    name,
    bytes: `GET ${AUTH} HTTP/1.1\r\n${lines}\r\n`,
    methods: ['GET'],
    allowed202,
  });
  const big = 'a'.repeat(66 * 1024);
  await matrix(t, [
    withSession('obs-fold before the session', `Host: x\r\nX-A: a\r\n b\r\nCookie: ${A}\r\n`),
    withSession('obs-fold inside the cookie', `Host: x\r\nCookie: x=1;\r\n ${A}\r\n`),
    withSession('obs-fold, tab', `Host: x\r\nX-A: a\r\n\tb\r\nCookie: ${A}\r\n`),
    withSession('bare LF line ends', `Host: x\nCookie: ${A}\n`.replace(/\n$/, '\r\n')),
    { ...withSession('bare LF everywhere', ''), bytes: `GET ${AUTH} HTTP/1.1\nHost: x\nCookie: ${A}\n\n` },
    withSession('bare CR in a header line', `Host: x\r\nX-A: a\rCookie: ${A}\r\n`, 0),
    withSession('bare CR ending a header line', `Host: x\rCookie: ${A}\r\n`, 0),
    withSession('NUL in a header value', `Host: x\r\nX-A: a\0b\r\nCookie: ${A}\r\n`),
    withSession('NUL in the cookie', `Host: x\r\nCookie: ${A}\0\r\n`),
    withSession('NUL in a header name', `Host: x\r\nX\0A: a\r\nCookie: ${A}\r\n`),
    withSession('space before the colon', `Host: x\r\nCookie : ${A}\r\n`, 0),
    withSession('tab before the colon', `Host: x\r\nCookie\t: ${A}\r\n`, 0),
    withSession('space before the name (first line)', `Host: x\r\n Cookie: ${A}\r\n`, 0),
    withSession('no colon', `Host: x\r\nCookie ${A}\r\n`, 0),
    withSession('empty name', `Host: x\r\n: a\r\nCookie: ${A}\r\n`),
    withSession('bad name character', `Host: x\r\nX(A): a\r\nCookie: ${A}\r\n`),
    withSession('DEL in a value', `Host: x\r\nX-A: a\x7fb\r\nCookie: ${A}\r\n`),
    withSession('Latin-1 in a value', `Host: x\r\nX-A: \xe9\xff\r\nCookie: ${A}\r\n`),
    withSession('Cookie_ is not Cookie', `Host: x\r\nCookie_: ${A}\r\n`, 0),
    withSession('cOOKIE is Cookie', `Host: x\r\ncOOKIE: ${A}\r\n`),
    withSession('two Cookie headers', `Host: x\r\nCookie: a=b\r\nCookie: ${A}\r\n`),
    withSession('the session behind other cookies', `Host: x\r\nCookie: a=b; c=d; ${A}\r\n`),
    withSession('no Host', `Cookie: ${A}\r\n`),
    withSession('two Host headers', `Host: x\r\nHost: y\r\nCookie: ${A}\r\n`),
    withSession('Host with a space', `Host: x y\r\nCookie: ${A}\r\n`),
    withSession('one header over 64 KiB', `Host: x\r\nX-Big: ${big}\r\nCookie: ${A}\r\n`),
    withSession('the session, then over 64 KiB', `Host: x\r\nCookie: ${A}\r\nX-Big: ${big}\r\n`),
    withSession(
      'many headers, just under 64 KiB',
      `Host: x\r\nCookie: ${A}\r\n${Array.from({ length: 60 }, (_, i) => `x${i}: ${'b'.repeat(1000)}\r\n`).join('')}`,
    ),
    withSession(
      'many headers, just over 64 KiB',
      `Host: x\r\nCookie: ${A}\r\n${Array.from({ length: 66 }, (_, i) => `x${i}: ${'b'.repeat(1000)}\r\n`).join('')}`,
    ),
    withSession(
      '1,001 header lines, the session first',
      `Cookie: ${A}\r\n${fill(1000)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}`,
    ),
    withSession(
      '1,001 header lines, the session last',
      `${fill(1000)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}Cookie: ${A}\r\n`,
    ),
    withSession(
      '1,000 header lines, the session last',
      `Host: x\r\n${fill(998)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}Cookie: ${A}\r\n`,
    ),
    { ...get(`${AUTH}?${'q'.repeat(70 * 1024)}`, [cookie()]), name: 'a 70 KiB URL' },
  ]);
});

t.test('matrix: request line, targets and methods', async (t) => {
  const c = [cookie()] as const;
  const target = (tgt: string, allowed202: number): Case => ({
    ...get(tgt, c),
    allowed202,
    // The mimic knows only the exact auth path; gatehouse's other routes answer as they will (its catch-all:
    // 403 or 404). Compared: the framing; asserted: no 202 off the auth path.
    framingOnly: allowed202 === 0,
  });
  await matrix(t, [
    // COMPAT.md §1.1.2–1.1.3: the auth path is the exact escaped path, with any query.
    target(`${AUTH}?`, 1),
    target(`${AUTH}?x=1`, 1),
    target(`${AUTH}?#`, 1),
    target(`${AUTH}?a=%zz`, 1),
    target(`${AUTH}/`, 0),
    target(`/${AUTH}`, 0),
    target('/oauth2/%61uth', 0),
    target(`${AUTH}%2f`, 0),
    target('/oauth2%2Fauth', 0),
    target(`${AUTH};x`, 0),
    target(`${AUTH}#`, 0),
    target(`${AUTH}#?`, 0),
    target('/OAUTH2/AUTH', 0),
    target('/oauth2/./auth', 0),
    target('/oauth2/x/../auth', 0),
    target(`${AUTH}x`, 0),
    target(`${AUTH}%00`, 0),
    target(`${AUTH}\\`, 0),
    target(`http://x${AUTH}`, 0),
    target(`http://x:80${AUTH}?a`, 0),
    target(`https://x${AUTH}`, 0),
    target(`//x${AUTH}`, 0),
    target('x:80', 0),
    target('*', 0),
    target('', 0),
    target(`${AUTH}\0`, 0),
    target(`${AUTH} x`, 0),
    target(`${AUTH}\x7f`, 0),
    target(`${AUTH}\xe9`, 0),
    {
      ...get(AUTH, c),
      name: 'two spaces',
      bytes: `GET  ${AUTH} HTTP/1.1\r\nHost: x\r\nCookie: ${A}\r\n\r\n`,
    },
    {
      ...get(AUTH, c),
      name: 'trailing space',
      bytes: `GET ${AUTH} HTTP/1.1 \r\nHost: x\r\nCookie: ${A}\r\n\r\n`,
    },
    { ...get(AUTH, c), name: 'tab', bytes: `GET\t${AUTH} HTTP/1.1\r\nHost: x\r\nCookie: ${A}\r\n\r\n` },
    { ...get(AUTH, c), name: 'no version', bytes: `GET ${AUTH}\r\n\r\n` },
    { ...get(AUTH, c), name: 'http/1.1', bytes: `GET ${AUTH} http/1.1\r\nHost: x\r\nCookie: ${A}\r\n\r\n` },
    ...['1.2', '2.0', '3.0', '0.9', '1.10', '11'].map(
      (version): Case => ({ ...get(AUTH, c, { version }), name: `HTTP/${version}`, allowed202: 1 }),
    ),
    ...['get', 'GeT', 'FOO', 'G ET', 'GET\0', 'PRI', 'SEARCH', 'BREW', 'PURGE', 'LINK'].map(
      (m): Case => ({
        name: `method ${JSON.stringify(m)}`,
        bytes: rq(m, AUTH, c),
        methods: [m],
        allowed202: 1,
      }),
    ),
    ...['OPTIONS', 'TRACE', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD'].map(
      (m): Case => ({ name: m, bytes: rq(m, AUTH, c), methods: [m], allowed202: 1 }),
    ),
    // Fastify refuses QUERY without a Content-Type (RFC 10008 §2) with a 400 before any route: a refusal
    // where node:http's mimic answers, in the same framing. With one, it is the auth check's like any method.
    { name: 'QUERY', bytes: rq('QUERY', AUTH, c), methods: ['QUERY'], allowed202: 1, framingOnly: true },
    {
      name: 'QUERY with a Content-Type',
      bytes: rq('QUERY', AUTH, [...c, ['Content-Type', 'text/plain']]),
      methods: ['QUERY'],
      allowed202: 1,
    },
    {
      name: 'OPTIONS *',
      bytes: rq('OPTIONS', '*', c),
      methods: ['OPTIONS'],
      allowed202: 0,
      framingOnly: true,
    },
    { name: 'CONNECT', bytes: rq('CONNECT', 'x:443', c), methods: ['CONNECT'], allowed202: 0, waitMs: 500 },
    { name: 'CONNECT to the auth path', bytes: rq('CONNECT', AUTH, c), methods: ['CONNECT'], allowed202: 0 },
  ]);
});

t.test('matrix: HTTP/1.0, Expect, Upgrade, keep-alive', async (t) => {
  const c = cookie();
  const one = (name: string, bytes: string, methods = ['GET'], more: Partial<Case> = {}): Case => ({
    name,
    bytes,
    methods,
    allowed202: methods.length,
    ...more,
  });
  await matrix(t, [
    one('HTTP/1.0', rq('GET', AUTH, [c], { version: '1.0' })),
    one('HTTP/1.0 without Host', rq('GET', AUTH, [c], { version: '1.0', host: false })),
    one('HTTP/1.0 keep-alive', rq('GET', AUTH, [c, ['Connection', 'keep-alive']], { version: '1.0' })),
    one(
      'HTTP/1.0 keep-alive, HEAD',
      rq('HEAD', AUTH, [c, ['Connection', 'keep-alive']], { version: '1.0' }),
      ['HEAD'],
    ),
    one(
      'HTTP/1.0 keep-alive, no session',
      rq('GET', AUTH, [['Connection', 'keep-alive']], { version: '1.0' }),
    ),
    one('HTTP/1.1 Connection: close', rq('GET', AUTH, [c, ['Connection', 'close']])),
    one('Connection: close, keep-alive', rq('GET', AUTH, [c, ['Connection', 'close, keep-alive']])),
    one('Connection: keep-alive, close', rq('GET', AUTH, [c, ['Connection', 'keep-alive, close']])),
    one('Expect: 100-continue', rq('GET', AUTH, [c, ['Expect', '100-continue']])),
    one(
      'Expect: 100-continue, POST with a body',
      rq('POST', AUTH, [c, ['Expect', '100-continue'], ['Content-Length', '5']], { body: 'hello' }),
      ['POST'],
    ),
    one(
      'Expect: 100-continue on HTTP/1.0',
      rq('GET', AUTH, [c, ['Expect', '100-continue']], { version: '1.0' }),
    ),
    one('an unknown Expect', rq('GET', AUTH, [c, ['Expect', 'x-unknown']])),
    one(
      'an unknown Expect with a body',
      rq('POST', AUTH, [c, ['Expect', 'x'], ['Content-Length', '5']], { body: 'hello' }),
      ['POST'],
    ),
    // Without an 'upgrade' listener node:http answers the request and reads nothing more on the connection
    // (neither server closes it: the wait is short).
    one(
      'Upgrade: websocket',
      rq('GET', AUTH, [c, ['Connection', 'Upgrade'], ['Upgrade', 'websocket']]),
      ['GET'],
      {
        waitMs: 400,
      },
    ),
    one(
      'Upgrade: h2c',
      rq('GET', AUTH, [
        c,
        ['Connection', 'Upgrade, HTTP2-Settings'],
        ['Upgrade', 'h2c'],
        ['HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA'],
      ]),
      ['GET'],
      { waitMs: 400 },
    ),
    one('Upgrade without Connection: Upgrade', rq('GET', AUTH, [c, ['Upgrade', 'websocket']])),
    one(
      'Upgrade: websocket, no session',
      rq('GET', AUTH, [
        ['Connection', 'Upgrade'],
        ['Upgrade', 'websocket'],
      ]),
      ['GET'],
      {
        waitMs: 400,
        allowed202: 0,
      },
    ),
    one('the h2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', ['PRI'], { allowed202: 0 }),
    one(
      'a session request, then one without a cookie',
      rq('GET', AUTH, [c]) + rq('GET', AUTH),
      ['GET', 'GET'],
      {
        allowed202: 1,
      },
    ),
    one(
      'a session request, then one with an empty cookie',
      rq('GET', AUTH, [c]) + rq('GET', AUTH, [['Cookie', '']]),
      ['GET', 'GET'],
      {
        allowed202: 1,
      },
    ),
    one('HEAD with a session, then GET without', rq('HEAD', AUTH, [c]) + rq('GET', AUTH), ['HEAD', 'GET'], {
      allowed202: 1,
    }),
  ]);
});

/** One request of a generated pipeline. */
interface Piece {
  readonly bytes: string;
  readonly method: string;
  /** Carries alice's session at the auth path. */
  readonly deserves202: boolean;
}

const TARGETS = {
  auth: AUTH,
  'auth?q': `${AUTH}?x=1`,
  ping: '/ping',
  other: '/app/x',
  'post-auth': AUTH,
  'post-other': '/x',
} as const;

const pieceArb: fc.Arbitrary<Piece> = fc
  .record({
    kind: fc.constantFrom(...(Object.keys(TARGETS) as (keyof typeof TARGETS)[])),
    head: fc.boolean(),
    session: fc.boolean(),
    // More than 32 header lines makes node's parser hand them over in batches.
    fillers: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 40 })),
  })
  .map(({ kind, head, session, fillers }) => {
    const post = kind.startsWith('post');
    const method = post ? 'POST' : head ? 'HEAD' : 'GET';
    const target = TARGETS[kind];
    const headers: [string, string][] = [...fill(fillers), ...(session ? [cookie()] : [])];
    if (post) headers.push(['Content-Type', 'application/octet-stream'], ['Content-Length', '5']);
    return {
      bytes: rq(method, target, headers, post ? { body: 'hello' } : {}),
      method,
      deserves202: session && (kind === 'auth' || kind === 'auth?q' || kind === 'post-auth'),
    };
  });

const pipelineCase = (pieces: readonly Piece[]): Case => ({
  name: `pipeline of ${pieces.length}`,
  bytes: pieces.map((p) => p.bytes).join(''),
  methods: pieces.map((p) => p.method),
  allowed202: pieces.filter((p) => p.deserves202).length,
});

t.test('matrix: pipelining 2, 10 and 50 deep', async (t) => {
  for (const [depth, numRuns] of [
    [2, 40],
    [10, 15],
    [50, 5],
  ] as const) {
    await fc.assert(
      fc.asyncProperty(fc.array(pieceArb, { minLength: depth, maxLength: depth }), async (pieces) => {
        const c = pipelineCase(pieces);
        const { gh } = await check(t, c);
        // Every request answered, in order: alice's 202 exactly where it is deserved, then the canaries.
        const want = [...pieces.map((p) => p.deserves202), false, true];
        const got = gh.answers.map((a) => a.status === 202);
        if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`202s at ${got} for ${want}`);
      }),
      { numRuns },
    );
  }
});

t.test('matrix: every split of a pipelined sequence, and byte by byte', async (t) => {
  const short = [
    rq('GET', AUTH, [['X-A', '1']]),
    rq('HEAD', '/ping'),
    rq('POST', '/x', [['Content-Length', '5']], { body: 'hello' }),
    rq('GET', `${AUTH}?x=1`, fill(3)),
  ].join('');
  const withSession = [rq('HEAD', AUTH), rq('GET', AUTH, [...fill(34), cookie()]), rq('GET', AUTH)].join('');
  for (const [what, bytes, methods] of [
    [`${short.length} bytes, no session`, short, ['GET', 'HEAD', 'POST', 'GET']],
    [`${withSession.length} bytes, alice's session in the middle`, withSession, ['HEAD', 'GET', 'GET']],
  ] as const) {
    const all = Buffer.from(bytes + CANARY(), 'latin1');
    const o = { methods: [...methods, 'GET', 'GET'] };
    const expected = framing(await exchange(refPort, [all], o), true);
    t.same(framing(await exchange(s.port, [all], o), true), expected, `${what}: one piece`);
    // Two pieces, cut at every byte of the sequence (the canaries ride with the second); inside the
    // session's value (1.4 KB of base64, where one cut is much like the next) at every 16th.
    const value = bytes.indexOf(A);
    const cuts = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1).filter(
      (cut) => value < 0 || cut <= value || cut >= value + A.length || cut % 16 === 0,
    );
    const differ: number[] = [];
    for (const cut of cuts) {
      const got = await exchange(s.port, [all.subarray(0, cut), all.subarray(cut)], { ...o, gapMs: 0 });
      if (JSON.stringify(framing(got, true)) !== JSON.stringify(expected)) differ.push(cut);
    }
    t.same(differ, [], `${what}: ${cuts.length} two-piece splits answer as node:http does`);
    // Random cuts into many pieces.
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 12 }),
        async (cuts) => {
          const at = [0, ...cuts.sort((a, b) => a - b), all.length];
          const pieces = at.slice(1).map((end, i) => all.subarray(at[i], end));
          const got = framing(await exchange(s.port, pieces, { ...o, gapMs: 0 }), true);
          if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(JSON.stringify(got));
        },
      ),
      { numRuns: 50 },
    );
    const bytewise = [...all].map((b) => Buffer.of(b));
    t.same(
      framing(await exchange(s.port, bytewise, { ...o, gapMs: 0 }), true),
      expected,
      `${what}: byte by byte`,
    );
  }
  await freshCanary(t, 'after the splits');
});
