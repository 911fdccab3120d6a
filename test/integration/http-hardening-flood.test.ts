// One connection cannot exhaust gatehouse: 100 MiB floods (leading CRLFs, whitespace before a header
// value) and a client that pipelines without reading leave its memory bounded and other clients answered;
// slowloris connections hold up no one, and node:http's headersTimeout closes them on gatehouse's server as
// on a plain one. The CRLF and whitespace floods are the fourth failure of the removed wire (it grew by
// hundreds of MiB); the framing matrix is in http-hardening.test.ts.
//
// Memory is measured on gatehouse as a child process (`node dist/cli.js`, /proc/<pid>/status VmRSS): in
// process, the test's own flood buffers, sockets and garbage would be counted with the server's, and a
// growth of a few tens of MiB could not be told apart from the test's noise.
import { connect, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { startGatehouse } from '../helpers/gatehouse.js';
import { closeServer, exchange, parseAnswers, startReference } from '../helpers/raw-http.js';
import { type Child, spawnGatehouse } from '../helpers/spawn-gatehouse.js';
import { type Stack, startStack } from '../helpers/stack.js';

const AUTH = '/oauth2/auth';
const MiB = 1024 * 1024;
/** Most the server's RSS may grow while one connection floods it (the bound). */
const RSS_BOUND = 64 * MiB;
/** Other clients must be answered within a second meanwhile (the bound). */
const LATENCY_BOUND_MS = 1000;

let s: Stack;
/** gatehouse as a child process. */
let gh: Child;
/** A plain node:http server that mimics the auth decision (test/helpers/raw-http.ts). */
let refPort: number;
/** alice's session as a Cookie header value. */
let A: string;
/** Started first: it takes up to 30 s (see startSlowloris), which the other tests overlap. */
let slowloris: ReturnType<typeof startSlowloris>;

t.before(async () => {
  s = await startStack();
  const { jar } = await s.login('alice');
  const session = new Map(jar.sessionNames().map((n) => [n, jar.cookies.get(n) as string]));
  A = [...session].map(([k, v]) => `${k}=${v}`).join('; ');
  const ref = await startReference({ session, authPath: AUTH, pingPath: '/ping' });
  t.teardown(() => closeServer(ref.server));
  refPort = ref.port;
  slowloris = startSlowloris();
  // Awaited in its own test; a failure must not go unhandled before then.
  slowloris.catch(() => undefined);
  gh = await spawnGatehouse(s.idp.issuer);
  await warmUp();
});
t.teardown(async () => {
  gh?.kill();
  await s?.close();
});

/** On a fresh connection: 401 without a cookie, then 202 with alice's session, then the close. */
const CANARY = () =>
  `GET ${AUTH} HTTP/1.1\r\nHost: x\r\n\r\nGET ${AUTH} HTTP/1.1\r\nHost: x\r\nCookie: ${A}\r\nConnection: close\r\n\r\n`;

async function canary(port: number): Promise<{ ok: boolean; ms: number }> {
  const started = performance.now();
  const o = await exchange(port, [CANARY()], { methods: ['GET', 'GET'], waitMs: 10_000 });
  const ms = performance.now() - started;
  return { ok: o.closed && o.answers.map((a) => a.status).join() === '401,202', ms };
}

/** A 1 KiB request without a session (401). */
const PADDED = Buffer.from(`GET ${AUTH} HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(990)}\r\n\r\n`);

/**
 * 20,000 pipelined requests, read as they come. Under such a load V8 grows its young generation to its
 * maximum (tens of MiB of RSS on Node 24), which is no one connection's doing: baselines are taken after.
 */
async function warmUp() {
  const n = 20_000;
  const burst = Buffer.concat([...Array.from({ length: n }, () => PADDED), Buffer.from(CANARY())]);
  const o = await exchange(gh.port, [burst], { methods: [], waitMs: 30_000 });
  if (o.answers.length !== n + 2) throw new Error(`warm-up: ${o.answers.length} answers`);
}

interface Pressure {
  /** Peak RSS growth over the baseline while it lasted, bytes. */
  readonly growth: number;
  /** Slowest answer to another client meanwhile, ms. */
  readonly worstMs: number;
  readonly canaries: number;
  /** Canaries answered wrongly or not at all. */
  readonly failures: number;
}

/**
 * Runs `load` while sampling the child's RSS every 25 ms and sending canaries on fresh connections, one
 * after another, recording the slowest.
 */
async function underPressure(load: () => Promise<void>): Promise<Pressure> {
  for (let i = 0; i < 20; i++) await canary(gh.port);
  const base = gh.rss();
  let peak = base;
  const sampler = setInterval(() => {
    peak = Math.max(peak, gh.rss());
  }, 25);
  let done = false;
  let worstMs = 0;
  let canaries = 0;
  let failures = 0;
  const poller = (async () => {
    while (!done) {
      const c = await canary(gh.port);
      canaries++;
      worstMs = Math.max(worstMs, c.ms);
      if (!c.ok) failures++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    await load();
  } finally {
    done = true;
    await poller;
    clearInterval(sampler);
  }
  peak = Math.max(peak, gh.rss());
  return { growth: peak - base, worstMs, canaries, failures };
}

function report(t: Test, what: string, p: Pressure, o: { latency: boolean }) {
  const mib = (n: number) => (n / MiB).toFixed(1);
  t.comment(`${what}: RSS +${mib(p.growth)} MiB; slowest of ${p.canaries} others ${p.worstMs.toFixed(0)} ms`);
  t.ok(p.growth <= RSS_BOUND, `${what}: RSS grew ${mib(p.growth)} MiB (at most 64)`);
  t.ok(p.canaries > 0, `${what}: other clients were tried meanwhile`);
  t.equal(p.failures, 0, `${what}: every other client answered correctly`);
  if (o.latency) t.ok(p.worstMs < LATENCY_BOUND_MS, `${what}: every other client answered within a second`);
}

/** Writes `head`, then `unit` until `total` bytes are out or the server closes; respects backpressure. */
async function flood(head: string, unit: Buffer, total: number): Promise<{ sent: number; closed: boolean }> {
  const sock = connect(gh.port, '127.0.0.1');
  let closed = false;
  const gone = new Promise<void>((r) => {
    sock.on('close', () => {
      closed = true;
      r();
    });
  });
  sock.on('error', () => undefined);
  sock.on('data', () => undefined);
  await new Promise<void>((r) => sock.once('connect', r));
  sock.write(head);
  let sent = head.length;
  while (sent < total && !closed) {
    sent += unit.length;
    if (!sock.write(unit)) await Promise.race([new Promise((r) => sock.once('drain', r)), gone]);
  }
  const byServer = closed;
  sock.destroy();
  await gone;
  return { sent, closed: byServer };
}

for (const [what, head, fill] of [
  ['CRLF flood (before a request line)', '', '\r\n'],
  ['whitespace flood (before a header value)', `GET ${AUTH} HTTP/1.1\r\nHost: x\r\nX-A:`, ' '],
] as const) {
  t.test(`${what}: 100 MiB from one connection`, async (t) => {
    const unit = Buffer.alloc(MiB, fill);
    let result = { sent: 0, closed: false };
    const p = await underPressure(async () => {
      result = await flood(head, unit, 100 * MiB);
    });
    // node:http skips both without counting them against maxHeaderSize; it would close the connection at
    // headersTimeout (60 s), long after the flood is over.
    t.comment(`${what}: ${(result.sent / MiB).toFixed(0)} MiB sent; closed by the server: ${result.closed}`);
    report(t, what, p, { latency: true });
    t.ok((await canary(gh.port)).ok, `${what}: answered correctly afterwards`);
  });
}

t.test('a client that pipelines and never reads: gatehouse stops reading it', async (t) => {
  // 1 KiB requests written as fast as the connection takes them, no answer read. node:http stops reading
  // a connection whose answers back up, so the writes stall once the kernel's buffers are full (tens of
  // MiB on loopback); had the server read on, all 256 MiB would have gone out.
  const unit = Buffer.concat(Array.from({ length: 64 }, () => PADDED));
  let sent = 0;
  let stalled = false;
  const sock = connect(gh.port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  sock.pause();
  sock.on('error', () => undefined);
  await new Promise<void>((r) => sock.once('connect', r));
  const p = await underPressure(async () => {
    while (sent < 256 * MiB && !stalled) {
      sent += unit.length;
      if (!sock.write(unit)) {
        stalled = !(await Promise.race([
          new Promise<boolean>((r) => sock.once('drain', () => r(true))),
          new Promise<boolean>((r) => setTimeout(() => r(false), 2000)),
        ]));
      }
    }
  });
  t.ok(stalled, `the server stopped reading (${(sent / MiB).toFixed(1)} MiB written)`);
  // No latency bound: node:http takes up to 32 reads (2 MiB, ~2,000 requests here) from one connection
  // per turn of the event loop, so others wait while the backlog is worked off (up to ~1.5 s on a
  // loaded 2-core machine); they are answered, correctly.
  report(t, 'never-reading client', p, { latency: false });
  // Now read, after closing canaries: each request written is answered once, in order (401: no session),
  // then the canaries, then the close.
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.write(CANARY());
  sock.resume();
  await new Promise<void>((r) => sock.on('close', () => r()));
  const n = sent / PADDED.length;
  const statuses = parseAnswers(Buffer.concat(chunks), [], true).answers.map((a) => a.status);
  t.equal(statuses.length, n + 2, `${n} requests and 2 canaries, each answered once`);
  t.ok(
    statuses.slice(0, n).every((x) => x === 401),
    'the requests: 401 each',
  );
  t.same(statuses.slice(n), [401, 202], 'then the canaries');
});

t.test('a client that never reads: 3,000 pipelined requests, all answered once it reads', async (t) => {
  // ~4 MB of requests written at once, then nothing read for a while: others are answered meanwhile, and
  // when the client reads, every request has its answer, once and in order, as from node:http.
  const n = 3000;
  const bytes = `GET ${AUTH} HTTP/1.1\r\nHost: x\r\nCookie: ${A}\r\n\r\n`.repeat(n) + CANARY();
  const methods = Array.from({ length: n + 2 }, () => 'GET');
  for (const [name, port] of [
    ['gatehouse', gh.port],
    ['node:http', refPort],
  ] as const) {
    const sock = connect(port, '127.0.0.1');
    t.teardown(() => sock.destroy());
    sock.pause();
    await new Promise<void>((r) => sock.once('connect', r));
    sock.write(bytes);
    await new Promise((r) => setTimeout(r, 300));
    t.ok((await canary(port)).ok, `${name}: another client is answered while this one does not read`);
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.resume();
    await closed;
    const p = parseAnswers(Buffer.concat(chunks), methods, true);
    const statuses = p.answers.map((a) => a.status);
    t.equal(statuses.length, n + 2, `${name}: every request answered once`);
    t.equal(statuses.filter((x) => x === 202).length, n + 1, `${name}: 3,000 + 1 202s`);
    t.same(statuses.slice(-2), [401, 202], `${name}: the canaries last, in order`);
    t.equal(p.rest, 0, `${name}: nothing else`);
  }
});

t.test('slowloris: headers dribbled a byte at a time hold up no one', async (t) => {
  // 20 connections each send a request a byte every 200 ms for 3 s (node:http's headersTimeout is far
  // off; see the next test). Other clients are answered meanwhile, and so is each dribbled request.
  const prefix = `GET ${AUTH} HTTP/1.1\r\nHost: x\r\n`;
  const socks = await Promise.all(
    Array.from(
      { length: 20 },
      () =>
        new Promise<Socket>((resolve) => {
          const sock = connect(gh.port, '127.0.0.1', () => resolve(sock));
          sock.setNoDelay(true);
          t.teardown(() => sock.destroy());
        }),
    ),
  );
  const received = socks.map((sock) => {
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    return { chunks, closed: new Promise<void>((r) => sock.on('close', () => r())) };
  });
  for (let i = 0; i < 15; i++) {
    for (const sock of socks) sock.write(prefix.slice(i, i + 1));
    t.ok((await canary(gh.port)).ok, `byte ${i}: another client is answered correctly`);
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const sock of socks) sock.write(`${prefix.slice(15)}Cookie: ${A}\r\nConnection: close\r\n\r\n`);
  await Promise.all(received.map((r) => r.closed));
  t.same(
    received.map((r) => parseAnswers(Buffer.concat(r.chunks), ['GET'], true).answers.map((a) => a.status)),
    Array.from({ length: 20 }, () => [202]),
    'each dribbled request is answered once, 202',
  );
});

/**
 * gatehouse sets none of node:http's timeouts (src/http/server.ts creates its server with maxHeaderSize
 * only; Fastify applies its own only to servers it creates): headersTimeout 60 s, requestTimeout 300 s,
 * keepAliveTimeout 5 s, checked every 30 s (connectionsCheckingInterval, fixed at creation). A short
 * headersTimeout is set on an in-process gatehouse's own server (a public node:http setting) and on a plain
 * node:http server; on each, a request dribbled a byte every 200 ms must be closed with node:http's 408 at
 * the next check, within 30 s of listening (a connection still open after 45 s counts as not closed).
 */
async function startSlowloris() {
  const one = await startGatehouse(s, ['--email-domain=example.com']);
  t.teardown(() => one.close());
  const ref = await startReference({ session: new Map(), authPath: AUTH, pingPath: '/ping' });
  t.teardown(() => closeServer(ref.server));
  const ghServer = one.app.server.server;
  const timeouts = (
    ['headersTimeout', 'requestTimeout', 'keepAliveTimeout', 'timeout', 'maxHeadersCount'] as const
  ).map((k) => [k, ghServer[k], ref.server[k]] as const);
  ghServer.headersTimeout = 1000;
  ref.server.headersTimeout = 1000;
  const dribble = (port: number) =>
    new Promise<{ statuses: number[]; closed: boolean }>((resolve) => {
      const chunks: Buffer[] = [];
      const sock = connect(port, '127.0.0.1');
      sock.setNoDelay(true);
      sock.on('data', (d: Buffer) => chunks.push(d));
      sock.on('error', () => undefined);
      const timer = setInterval(() => {
        if (!sock.destroyed) sock.write('X');
      }, 200);
      let closed = true;
      const deadline = setTimeout(() => {
        closed = false;
        sock.destroy();
      }, 45_000);
      sock.once('connect', () => sock.write(`GET ${AUTH} HTTP/1.1\r\nHost: x\r\nX-Slow: `));
      sock.on('close', () => {
        clearInterval(timer);
        clearTimeout(deadline);
        const statuses = parseAnswers(Buffer.concat(chunks), ['GET'], true).answers.map((a) => a.status);
        resolve({ statuses, closed });
      });
    });
  const [gatehouse, reference] = await Promise.all([dribble(one.port), dribble(ref.port)]);
  return { gatehouse, reference, timeouts };
}

t.test('slowloris: node:http’s headersTimeout closes it on gatehouse as on node:http', async (t) => {
  const { gatehouse, reference, timeouts } = await slowloris;
  for (const [k, g, r] of timeouts) t.equal(g, r, `${k}: node:http's default (${r})`);
  t.same(reference, { statuses: [408], closed: true }, 'node:http: 408, then the close');
  t.same(gatehouse, reference, 'gatehouse: the same');
});
