// GET/HEAD /oauth2/auth skip Fastify (src/http/server.ts fastAuth) and are answered on node:http's request
// and response objects (src/http/reply.ts). A proxy must not be able to tell: the same services behind the
// fast path and behind Fastify alone answer byte for byte alike (Date aside) and log the same lines; a
// failure inside the fast path is a logged 500, as through Fastify.
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import t, { type Test } from 'tap';
import { buildServices } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import { createHttpServer, type ServerOptions } from '../../src/http/server.js';
import type { Services } from '../../src/http/services.js';
import { TEST_ACCOUNTS } from '../helpers/idp.js';
import { gatehouseArgs, type Jar, type Stack, startStack } from '../helpers/stack.js';

/** Writes `request` as given on a fresh socket and resolves with every byte until the server closes. */
function exchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(port, '127.0.0.1', () => sock.end(request));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.on('error', reject);
  });
}

const withoutDate = (raw: string) => raw.replace(/\r\nDate: [^\r]*/g, '\r\nDate: -');

/** A request log line without the fields that differ between two runs of the same request. */
const stable = (line: string) => {
  const {
    time: _t,
    duration: _d,
    pid: _p,
    hostname: _h,
    ...rest
  } = JSON.parse(line) as Record<string, unknown>;
  return JSON.stringify(rest);
};

let s: Stack;
let alice: Jar;
let bob: Jar;
let kenji: Jar;
const FLAGS = ['--set-xauthrequest', '--pass-access-token', '--request-logging=true'];

t.before(async () => {
  s = await startStack({
    args: FLAGS,
    idp: {
      accounts: [
        ...TEST_ACCOUNTS,
        { id: 'kenji', email: 'kenji@example.com', email_verified: true, groups: ['日本', 'staff'] },
      ],
    },
  });
  alice = (await s.login('alice')).jar;
  bob = (await s.login('bob')).jar;
  kenji = (await s.login('kenji')).jar;
});
t.teardown(() => s?.close());

interface Pair {
  /** The fast path (the default). */
  readonly fast: FastifyInstance;
  /** Everything through Fastify (`fastPath: false`). */
  readonly slow: FastifyInstance;
  readonly fastLines: string[];
  readonly slowLines: string[];
  /** The requests each server's Fastify saw (`METHOD url`). */
  readonly fastSeen: string[];
  readonly slowSeen: string[];
  /** The requests node:http saw on the fast-path server. */
  readonly fastNodeSeen: string[];
  close(): Promise<void>;
}

/** Two servers over services built from the stack's flags: with the fast path, and Fastify alone. */
async function pair(change: (svc: Services) => Services = (x) => x): Promise<Pair> {
  const outcome = loadConfig([...gatehouseArgs(s.idp.issuer, 0), '--email-domain=example.com', ...FLAGS], {});
  if (outcome.kind !== 'run') throw new Error(`bad config: ${JSON.stringify(outcome)}`);
  const fastLines: string[] = [];
  const slowLines: string[] = [];
  const fastSeen: string[] = [];
  const slowSeen: string[] = [];
  const fastNodeSeen: string[] = [];
  const serverWith = async (lines: string[], seen: string[], o: ServerOptions, nodeSeen: string[] = []) => {
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const built = await buildServices(outcome.config, { log, observer: undefined, version: 'test' });
    built.oidc.start();
    await built.oidc.whenReady();
    const app = createHttpServer(change(built.services), undefined, o);
    app.addHook('onRequest', (r, _reply, done) => {
      seen.push(`${r.method} ${r.url}`);
      done();
    });
    app.server.on('request', (r: { method: string; url: string }) => nodeSeen.push(`${r.method} ${r.url}`));
    await app.listen({ host: '127.0.0.1', port: 0 });
    return { app, built };
  };
  const f = await serverWith(fastLines, fastSeen, {}, fastNodeSeen);
  const w = await serverWith(slowLines, slowSeen, { fastPath: false });
  return {
    fast: f.app,
    slow: w.app,
    fastLines,
    slowLines,
    fastSeen,
    slowSeen,
    fastNodeSeen,
    async close() {
      await Promise.all([f.app.close(), w.app.close()]);
      await Promise.all([f.built.close(), w.built.close()]);
    },
  };
}

const portOf = (app: FastifyInstance) => {
  const a = app.server.address();
  if (a === null || typeof a === 'string') throw new Error('not listening');
  return a.port;
};

/** Both servers' answers to `request`, Date removed; asserts they are equal and returns the answer. */
async function both(t: Test, p: Pair, request: string, what: string): Promise<string> {
  const [fast, slow] = await Promise.all([
    exchange(portOf(p.fast), request),
    exchange(portOf(p.slow), request),
  ]);
  t.equal(
    withoutDate(fast),
    withoutDate(slow),
    `${what}: the same bytes on the fast path as through Fastify`,
  );
  return withoutDate(fast);
}

const req = (
  method: string,
  path: string,
  headers: Record<string, string> = {},
  version = '1.1',
  body = '',
) =>
  `${method} ${path} HTTP/${version}\r\nHost: app.example.com\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n${body}`;

t.test('GET and HEAD /oauth2/auth answer the same bytes with and without the fast path', async (t) => {
  const p = await pair();
  t.teardown(() => p.close());
  const a = alice.header();
  const close = { connection: 'close' };
  const cases: [string, string, RegExp][] = [
    ['session', req('GET', '/oauth2/auth', { ...close, cookie: a }), /^HTTP\/1\.1 202 Accepted\r\n/],
    ['session, HEAD', req('HEAD', '/oauth2/auth', { ...close, cookie: a }), /^HTTP\/1\.1 202 /],
    [
      'identity headers',
      req('GET', '/oauth2/auth', { ...close, cookie: a, 'x-request-id': 'r-1' }),
      /\r\nx-auth-request-email: alice@example\.com\r\n/,
    ],
    [
      'spoofed identity',
      req('GET', '/oauth2/auth', { ...close, cookie: a, 'X-Auth-Request-User': 'root' }),
      /\r\nx-auth-request-user: alice\r\n/,
    ],
    [
      'group filter passes',
      req('GET', '/oauth2/auth?allowed_groups=admins', { ...close, cookie: a }),
      /^HTTP\/1\.1 202 /,
    ],
    [
      'group filter misses',
      req('GET', '/oauth2/auth?allowed_groups=admins', { ...close, cookie: bob.header() }),
      /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*\r\n\r\nForbidden\n$/,
    ],
    [
      'no session',
      req('GET', '/oauth2/auth', close),
      /^HTTP\/1\.1 401 Unauthorized\r\n[\s\S]*\r\n\r\nUnauthorized\n$/,
    ],
    ['no session, HEAD', req('HEAD', '/oauth2/auth', close), /^HTTP\/1\.1 401 [\s\S]*\r\n\r\n$/],
    [
      'tampered cookie',
      req('GET', '/oauth2/auth', { ...close, cookie: `${a.slice(0, -4)}AAAA` }),
      /\r\nset-cookie: _oauth2_proxy=; [\s\S]*Max-Age=0/i,
    ],
    [
      'invalid bearer',
      req('GET', '/oauth2/auth', { ...close, authorization: 'Bearer a.b.c' }),
      /^HTTP\/1\.1 401 /,
    ],
    [
      'HTTP/1.0',
      req('GET', '/oauth2/auth', { cookie: a }, '1.0'),
      /^HTTP\/1\.1 202 [\s\S]*\r\nConnection: close\r\n/,
    ],
    [
      'GET with a body',
      req('GET', '/oauth2/auth', { ...close, cookie: a, 'content-length': '5' }, '1.1', 'hello'),
      /^HTTP\/1\.1 202 /,
    ],
    [
      'keep-alive, then a second request on the same connection',
      req('GET', '/oauth2/auth', { cookie: a }) + req('HEAD', '/oauth2/auth?x=1', close),
      /^HTTP\/1\.1 202 [\s\S]*\r\nKeep-Alive: [\s\S]*HTTP\/1\.1 401 /,
    ],
    [
      'a longer path is not the auth path',
      req('GET', '/oauth2/authx', { ...close, cookie: a }),
      /^HTTP\/1\.1 404 /,
    ],
    [
      'claims outside Latin-1 (UTF-8 bytes, as oauth2-proxy sends them)',
      req('GET', '/oauth2/auth', { ...close, cookie: kenji.header() }),
      new RegExp(`\\r\\nx-auth-request-groups: ${Buffer.from('日本,staff').toString('latin1')}\\r\\n`),
    ],
  ];
  for (const [what, request, expect] of cases) t.match(await both(t, p, request, what), expect, what);

  // Same log lines, in the same order (the queued lines are written after this turn's responses).
  await new Promise((r) => setImmediate(r));
  const lines = (ls: string[]) => ls.filter((l) => l.includes('"path"')).map(stable);
  t.ok(lines(p.fastLines).length >= cases.length, 'one request line per request');
  // The servers did take different paths: the fast server's Fastify never saw a GET or HEAD /oauth2/auth;
  // the other one's saw every request. Every request came in through node:http.
  t.same(p.fastSeen, ['GET /oauth2/authx'], 'the fast path answered every GET/HEAD /oauth2/auth');
  t.equal(p.fastNodeSeen.length, cases.length + 1, 'node:http saw every request');
  t.equal(p.slowSeen.length, lines(p.slowLines).length, 'Fastify answered all of the other server');
  t.same(lines(p.fastLines), lines(p.slowLines), 'the same request log lines');
  t.match(
    p.fastLines.join('\n'),
    /"reqId":"r-1",[^\n]*"status":202,[^\n]*"user":"alice"/,
    'the proxy request id',
  );
});

t.test('a failure inside the auth check is a logged 500 on both paths, and the server goes on', async (t) => {
  // An observer that throws: the failure comes after the route's own error handling (which turns a store
  // failure into its own 500), the way an unforeseen bug would. Sync: the cookie session loads synchronously;
  // async: the same load behind a promise.
  const broken = (svc: Services, async: boolean): Services => ({
    ...svc,
    observer: {
      decision: () => {
        throw new Error('observer exploded');
      },
      response: () => undefined,
      inFlight: () => undefined,
    },
    loadSession: async ? (ctx, authz) => Promise.resolve(svc.loadSession(ctx, authz)) : svc.loadSession,
  });
  for (const [what, async] of [
    ['synchronous', false],
    ['asynchronous', true],
  ] as const) {
    const p = await pair((svc) => broken(svc, async));
    for (const method of ['GET', 'HEAD']) {
      const request = req(method, '/oauth2/auth', { connection: 'close', cookie: alice.header() });
      const answer = await both(t, p, request, `${what} ${method}`);
      t.match(
        answer,
        method === 'GET'
          ? /^HTTP\/1\.1 500 Internal Server Error\r\n[\s\S]*\r\n\r\nInternal Server Error\n$/
          : /^HTTP\/1\.1 500 Internal Server Error\r\n[\s\S]*\r\n\r\n$/,
        `${what} ${method}: 500`,
      );
      t.notMatch(
        answer,
        /exploded|x-auth-request|gap-auth/i,
        `${what} ${method}: no error text, no identity`,
      );
    }
    await new Promise((r) => setImmediate(r));
    for (const lines of [p.fastLines, p.slowLines]) {
      t.equal(
        lines.filter((l) => l.includes('"internal error"') && l.includes('"level":50')).length,
        2,
        `${what}: each failure is logged as an error`,
      );
    }
    t.match(
      await exchange(portOf(p.fast), req('GET', '/ping', { connection: 'close' })),
      /^HTTP\/1\.1 200 /,
      `${what}: still serving`,
    );
    await p.close();
  }
});

t.test(
  'a header Node refuses to write mid-answer: a clean 500, none of the half-built headers',
  async (t) => {
    const p = await pair((svc) => ({
      ...svc,
      decide: (i) => ({ ...svc.decide(i), headers: [['X-Broken', 'a\nb']] }),
    }));
    t.teardown(() => p.close());
    const request = req('GET', '/oauth2/auth', { connection: 'close', cookie: alice.header() });
    const fast = await exchange(portOf(p.fast), request);
    t.match(fast, /^HTTP\/1\.1 500 Internal Server Error\r\n[\s\S]*\r\n\r\nInternal Server Error\n$/);
    t.notMatch(fast, /x-broken|gap-auth/i, 'the success headers set before the failure are gone');
    // Fastify's own path answers 500 too (with its own, odder, framing).
    t.match(await exchange(portOf(p.slow), request), /^HTTP\/1\.1 500 /);
    await new Promise((r) => setImmediate(r));
    t.ok(
      p.fastLines.some((l) => l.includes('"internal error"') && l.includes('"level":50')),
      'logged',
    );
  },
);
