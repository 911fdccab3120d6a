// Request/auth log lines carry method, path, status, duration, user and reason — and never a secret (issue 3).
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { startStack, TEST_COOKIE_SECRET } from '../helpers/stack.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, log: pino({ level: 'debug' }, stream) };
}

t.test('one JSON line per request, secrets never logged', async (t) => {
  const { lines, log } = capture();
  const s = await startStack({
    log,
    args: [
      '--set-xauthrequest',
      '--pass-access-token',
      '--set-authorization-header',
      '--request-logging=true',
    ],
  });
  t.teardown(() => s.close());
  const { jar } = await s.login('alice');
  const ok = await s.request('/oauth2/auth?allowed_groups=admins', {
    jar,
    headers: { 'x-request-id': 'req-123' },
  });
  t.equal(ok.status, 202);
  const accessToken = ok.headers.get('x-auth-request-access-token') ?? '';
  const idToken = (ok.headers.get('authorization') ?? '').replace(/^Bearer /, '');
  t.ok(accessToken.length > 10 && idToken.length > 10, 'tokens were issued');
  const denied = await s.request('/oauth2/auth?allowed_groups=nobody', { jar });
  t.equal(denied.status, 403);
  const anon = await s.request('/oauth2/auth', { headers: { cookie: '_oauth2_proxy=v1.garbage-value-xyz' } });
  t.equal(anon.status, 401);

  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const requests = parsed.filter((l) => l.msg === 'request');
  const okLine = requests.find((l) => l.reqId === 'req-123');
  t.ok(okLine, 'the request id header is used');
  t.match(okLine, { method: 'GET', path: '/oauth2/auth', status: 202, user: 'alice', reason: 'ok' });
  t.type(okLine?.duration, 'number');
  t.match(
    requests.find((l) => l.status === 403),
    { reason: 'query_filter', user: 'alice' },
  );
  t.match(
    requests.find((l) => l.status === 401),
    { reason: 'malformed' },
  );
  t.notOk(
    requests.some((l) => typeof l.path === 'string' && l.path.includes('?')),
    'query strings (which may carry rd targets or filters) are not logged as part of the path',
  );

  const all = lines.join('\n');
  const sessionValues = [...jar.cookies.values()];
  for (const [what, secret] of [
    ['cookie secret', TEST_COOKIE_SECRET],
    ['client secret', TEST_CLIENT_SECRET],
    ['access token', accessToken],
    ['id token', idToken],
    ['garbage cookie value', 'garbage-value-xyz'],
    ...sessionValues.map((v, i) => [`session cookie ${i}`, v.slice(0, 40)] as const),
  ] as const) {
    t.notOk(all.includes(secret), `no ${what} in the log`);
  }
});

t.test('--request-logging=false: no request lines, one auth-decision line per decision', async (t) => {
  const { lines, log } = capture();
  const s = await startStack({ log, args: ['--request-logging=false', '--set-xauthrequest'] });
  t.teardown(() => s.close());
  const { jar } = await s.login('alice');
  lines.length = 0;
  t.equal((await s.request('/oauth2/auth', { headers: { 'x-request-id': 'id-1' } })).status, 401);
  t.equal((await s.request('/oauth2/auth?allowed_groups=nobody', { jar })).status, 403);
  t.equal((await s.request('/oauth2/auth', { jar, method: 'HEAD' })).status, 202);
  t.equal((await s.request('/ping')).status, 200, 'not a decision');
  await new Promise((r) => setImmediate(r));
  t.equal(lines.filter((l) => l.includes('"msg":"request"')).length, 0, 'no request lines');
  const decisions = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === 'auth decision');
  t.equal(decisions.length, 3, 'one line per decision');
  t.match(decisions[0], { reqId: 'id-1', status: 401, reason: 'no_session', path: '/oauth2/auth' });
  t.notOk('user' in (decisions[0] ?? {}), 'no user without a session');
  t.match(decisions[1], { status: 403, reason: 'query_filter', user: 'alice', path: '/oauth2/auth' });
  t.match(decisions[2], { status: 202, reason: 'ok', user: 'alice' });
  t.match(decisions[1]?.reqId, /^[0-9a-f-]{36}$/, 'a generated request id when the proxy sent none');
});

t.test('--request-logging=false --auth-logging=false: no per-request lines at all', async (t) => {
  const { lines, log } = capture();
  const s = await startStack({ log, args: ['--request-logging=false', '--auth-logging=false'] });
  t.teardown(() => s.close());
  lines.length = 0;
  t.equal((await s.request('/oauth2/auth')).status, 401);
  await new Promise((r) => setImmediate(r));
  t.same(
    lines.filter((l) => /"msg":"(request|auth decision)"/.test(l)),
    [],
  );
});
