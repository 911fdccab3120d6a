// The direct request-line writer writes exactly what pino's log.info(line, 'request') writes (src/http/request-log.ts).
import fc from 'fast-check';
import pino from 'pino';
import t from 'tap';
import type { Reason } from '../../src/authz/decide.js';
import {
  type AuthLine,
  authLogWriter,
  type RequestLine,
  requestLogWriter,
} from '../../src/http/request-log.js';

type Options = pino.LoggerOptions;
const FIXED_TIME: Options = { timestamp: () => ',"time":1796649474523' };

/** A logger with `opts` whose lines land in the returned array. */
function logger(opts: Options) {
  const lines: string[] = [];
  return { log: pino(opts, { write: (s: string) => void lines.push(s) }), lines };
}

/**
 * Two identical loggers: what pino writes for `line` and what the writer writes. The writer's logger has
 * `info` disabled, so a writer that fell back to pino could not produce anything.
 */
function both(opts: Options, line: RequestLine, child?: Record<string, unknown>) {
  const viaPino = logger(opts);
  const direct = logger(opts);
  const plog = child ? viaPino.log.child(child) : viaPino.log;
  const dlog = child ? direct.log.child(child) : direct.log;
  dlog.info = (() => {
    throw new Error('the direct writer must not call log.info');
  }) as typeof dlog.info;
  plog.info(line, 'request');
  requestLogWriter(dlog)(line);
  return { pino: viaPino.lines.join(''), direct: direct.lines.join('') };
}

const REASONS: Reason[] = ['ok', 'no_session', 'bad_mac', 'query_filter', 'skipped'];
const text = fc.string({ unit: 'binary', maxLength: 120 });
const lineArb: fc.Arbitrary<RequestLine> = fc.record({
  reqId: text,
  method: fc.constantFrom('GET', 'HEAD', 'POST'),
  path: text,
  status: fc.constantFrom(202, 401, 403, 500),
  duration: fc.oneof(fc.double({ min: 0, max: 10, noNaN: true }), fc.constant(0.000123)),
  user: fc.option(text, { nil: undefined }),
  reason: fc.option(fc.constantFrom(...REASONS), { nil: undefined }),
});

t.test('the same bytes as pino for any line (quotes, backslashes, controls, any Unicode)', async (t) => {
  const configs: [string, Options, Record<string, unknown> | undefined][] = [
    ['gatehouse (base pid)', { level: 'info', base: { pid: 4242 }, ...FIXED_TIME }, undefined],
    ['pino defaults (pid, hostname)', { level: 'info', ...FIXED_TIME }, undefined],
    ['a child logger', { level: 'info', base: { pid: 1 }, ...FIXED_TIME }, { worker: 2, name: 'a"b' }],
  ];
  for (const [what, opts, child] of configs) {
    fc.assert(
      fc.property(lineArb, (line) => {
        const r = both(opts, line, child);
        return r.pino === r.direct && r.direct.endsWith('\n');
      }),
      { numRuns: 300 },
    );
    t.pass(what);
  }
  const hostile: RequestLine = {
    reqId: 'a"b\\c\u0001\n',
    method: 'GET',
    path: '/oauth2/auth',
    status: 401,
    duration: Number.POSITIVE_INFINITY,
    user: 'ü\u2028𝄞',
    reason: 'no_session',
  };
  const r = both({ level: 'info', base: { pid: 7 }, ...FIXED_TIME }, hostile);
  t.equal(r.direct, r.pino, 'a hostile line');
  t.same(JSON.parse(r.direct), {
    level: 30,
    time: 1796649474523,
    pid: 7,
    reqId: 'a"b\\c\u0001\n',
    method: 'GET',
    path: '/oauth2/auth',
    status: 401,
    duration: null,
    user: 'ü\u2028𝄞',
    reason: 'no_session',
    msg: 'request',
  });
});

const LINE: RequestLine = {
  reqId: 'r1',
  method: 'GET',
  path: '/oauth2/auth',
  status: 202,
  duration: 0.0001,
  user: 'alice',
  reason: 'ok',
};

t.test('the auth-decision line: the same bytes as pino', async (t) => {
  const authArb: fc.Arbitrary<AuthLine> = fc.record({
    reqId: text,
    status: fc.constantFrom(202, 401, 403),
    reason: fc.option(fc.constantFrom(...REASONS), { nil: undefined }),
    user: fc.option(text, { nil: undefined }),
    path: text,
  });
  const opts: Options = { level: 'info', base: { pid: 4242 }, ...FIXED_TIME };
  fc.assert(
    fc.property(authArb, (line) => {
      const viaPino = logger(opts);
      const direct = logger(opts);
      direct.log.info = (() => {
        throw new Error('the direct writer must not call log.info');
      }) as typeof direct.log.info;
      viaPino.log.info(line, 'auth decision');
      authLogWriter(direct.log)(line);
      return viaPino.lines.join('') === direct.lines.join('');
    }),
    { numRuns: 300 },
  );
  t.pass('300 lines');
  const { log, lines } = logger({ level: 'info', redact: ['user'] });
  authLogWriter(log)({ reqId: 'r', status: 403, reason: 'query_filter', user: 'alice', path: '/' });
  t.match(lines.join(''), /"user":"\[Redacted\]"/, 'a redacting logger gets pino itself');
});

t.test('below info nothing is written', async (t) => {
  const { log, lines } = logger({ level: 'warn' });
  requestLogWriter(log)(LINE);
  t.same(lines, []);
  log.level = 'info';
  requestLogWriter(log)(LINE);
  t.equal(lines.length, 1, 'a level raised later is honoured');
});

t.test('a logger that changes lines (redaction, serializers, mixin, hooks) gets pino itself', async (t) => {
  const cases: [string, Options, RegExp][] = [
    ['redact', { redact: ['user'] }, /"user":"\[Redacted\]"/],
    ['serializer', { serializers: { path: () => 'SERIALIZED' } }, /"path":"SERIALIZED"/],
    ['mixin', { mixin: () => ({ extra: 1 }) }, /"extra":1/],
    ['log formatter', { formatters: { log: (o) => ({ ...o, fmt: true }) } }, /"fmt":true/],
    ['message key', { messageKey: 'message' }, /"message":"request"/],
    ['stream hook', { hooks: { streamWrite: (s) => s.replace('"request"', '"hooked"') } }, /"hooked"/],
  ];
  for (const [what, opts, expect] of cases) {
    const { log, lines } = logger({ level: 'info', ...opts });
    requestLogWriter(log)(LINE);
    t.match(lines.join(''), expect, what);
  }
});
